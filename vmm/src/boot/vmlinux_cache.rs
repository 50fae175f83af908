//! The vmlinux of a bzImage kept on disk beside it, so that engines booting through PVH pay
//! for the decompression once per kernel rather than once per boot.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::{extract_vmlinux, BootError};

/// `<dir of bzimage>/vmlinux-<first 16 hex digits of sha256(bzimage)>`, extracted from the
/// bzImage unless it is already there. Other `vmlinux-*` files in that directory, the ones of
/// kernels replaced since, are removed: one bzImage per directory is assumed.
pub fn vmlinux_beside(bzimage: &Path) -> Result<PathBuf, BootError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BootError::Io { path, source }
    };
    // Hashed as a stream: the whole kernel is read into memory only when it
    // has to be decompressed, not on every boot.
    let mut hasher = Sha256::new();
    File::open(bzimage)
        .and_then(|mut f| io::copy(&mut f, &mut hasher))
        .map_err(io_err(bzimage))?;
    let mut name = vmlinux_name(hasher.finalize());
    let dir = match bzimage.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut target = dir.join(&name);
    if !target.exists() {
        let image = fs::read(bzimage).map_err(io_err(bzimage))?;
        // Named after the bytes decompressed, should the file have changed since.
        name = vmlinux_name(Sha256::digest(&image));
        target = dir.join(&name);
        let vmlinux = extract_vmlinux(&image)?;
        // A name unique to this call (process id, then a count for concurrent threads); a
        // crash leaves it hidden, not half-written under the final name, and a later call
        // removes it.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{}-{seq}.tmp", std::process::id()));
        write_synced(&temp, &vmlinux)
            .and_then(|()| fs::rename(&temp, &target))
            .inspect_err(|_| {
                let _ = fs::remove_file(&temp);
            })
            .map_err(io_err(&target))?;
        // Make the rename itself durable.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    remove_stale(dir, &name);
    Ok(target)
}

/// `vmlinux-<first 16 hex digits of the bzImage's sha256>`.
fn vmlinux_name(digest: impl AsRef<[u8]>) -> String {
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("vmlinux-{hex}")
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Best effort: a file that cannot be removed costs only disk space.
fn remove_stale(dir: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = if let Some(temp) = name.strip_prefix(".vmlinux-") {
            // Another process's temp file, unless that process is gone.
            temp.strip_suffix(".tmp")
                .and_then(|t| t.rsplit_once('.'))
                .and_then(|(_, id)| id.split('-').next()?.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        } else {
            name.starts_with("vmlinux-") && name != keep
        };
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::vmlinux::tests::{fake_elf, lz4_legacy, wrap};
    use std::os::unix::fs::MetadataExt;

    fn kernel(seed: u8) -> (Vec<u8>, Vec<u8>) {
        let mut elf = fake_elf(200_000);
        elf[100] = seed;
        let size = (elf.len() as u32).to_le_bytes();
        (wrap(&lz4_legacy(&elf), &size), elf)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn extracts_once_and_replaces_stale() {
        let dir = tempfile::tempdir().unwrap();
        let bz = dir.path().join("vmlinuz");
        let (image, elf) = kernel(1);
        fs::write(&bz, &image).unwrap();
        // Leftovers: an old kernel's vmlinux, and the temp file of a crashed process (no
        // process has a pid above pid_max, 2^22).
        fs::write(dir.path().join("vmlinux-0123456789abcdef"), b"old").unwrap();
        fs::write(
            dir.path().join(".vmlinux-0123456789abcdef.99999999-0.tmp"),
            b"x",
        )
        .unwrap();

        let first = vmlinux_beside(&bz).unwrap();
        let hash: String = Sha256::digest(&image)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(first, dir.path().join(format!("vmlinux-{hash}")));
        assert_eq!(fs::read(&first).unwrap(), elf);
        assert_eq!(
            names(dir.path()),
            [format!("vmlinux-{hash}"), "vmlinuz".into()]
        );

        // Unchanged bzImage: the same file, not rewritten.
        let before = fs::metadata(&first).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(vmlinux_beside(&bz).unwrap(), first);
        let after = fs::metadata(&first).unwrap();
        assert_eq!(
            (before.ino(), before.mtime(), before.mtime_nsec()),
            (after.ino(), after.mtime(), after.mtime_nsec())
        );

        // Replaced bzImage: a new name, and the old vmlinux is gone.
        let (image2, elf2) = kernel(2);
        fs::write(&bz, &image2).unwrap();
        let second = vmlinux_beside(&bz).unwrap();
        assert_ne!(second, first);
        assert_eq!(fs::read(&second).unwrap(), elf2);
        assert!(!first.exists());
        assert_eq!(names(dir.path()).len(), 2);
    }

    #[test]
    fn bad_bzimage_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            vmlinux_beside(&missing),
            Err(BootError::Io { .. })
        ));

        let garbage = dir.path().join("vmlinuz");
        fs::write(&garbage, vec![0x5a; 4096]).unwrap();
        assert!(matches!(
            vmlinux_beside(&garbage),
            Err(BootError::BadBzImage(_))
        ));
        // A bzImage whose payload decompresses to something other than a vmlinux.
        fs::write(&garbage, wrap(&lz4_legacy(&[0x55; 4096]), &[])).unwrap();
        assert!(matches!(vmlinux_beside(&garbage), Err(BootError::NotElf)));
        assert_eq!(names(dir.path()), ["vmlinuz"]);
    }
}
