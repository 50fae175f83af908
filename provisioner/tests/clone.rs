mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use hvbox_provisioner::{clone_disk, extract_boot_files, grow_disk, Error, KernelSelection};

/// A Debian-like GPT disk with a mostly empty (sparse) 64 MiB root.
fn box_disk(dir: &Path) -> std::path::PathBuf {
    let tree = Tree::new(dir, "root");
    tree.debian_root();
    let part = dir.join("part.img");
    tree.mkfs(&part, 64, &[]);
    let disk = dir.join("box.img");
    gpt_disk(&disk, &part, ROOT_UUID);
    disk
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

// clone_disk tries a reflink first; on ext4 and tmpfs that is unsupported
// and the sparse copy runs, which is what these tests exercise wherever
// /tmp is not btrfs/xfs.

#[test]
fn clone_keeps_holes_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = box_disk(dir.path());
    let dst = dir.path().join("machine.img");
    clone_disk(&src, &dst, None).unwrap();

    assert!(
        fs::read(&src).unwrap() == fs::read(&dst).unwrap(),
        "clone differs"
    );
    let (a_src, a_dst) = (allocated(&src), allocated(&dst));
    assert!(
        a_src < fs::metadata(&src).unwrap().len() / 2,
        "test source is not sparse"
    );
    assert!(
        a_dst <= a_src + 64 * 1024,
        "clone allocates {a_dst} bytes, source {a_src}"
    );
    assert!(temp_leftovers(dir.path()).is_empty());
}

#[test]
fn grown_gpt_clone_is_valid_and_bootable() {
    let dir = tempfile::tempdir().unwrap();
    let src = box_disk(dir.path());
    let src_len = fs::metadata(&src).unwrap().len();
    let dst = dir.path().join("machine.img");
    let size = 1 << 30;
    clone_disk(&src, &dst, Some(size)).unwrap();

    assert_eq!(fs::metadata(&dst).unwrap().len(), size);
    assert!(allocated(&dst) <= allocated(&src) + 256 * 1024);
    let verify = run("sgdisk", &["-v", dst.to_str().unwrap()], None);
    assert!(verify.contains("No problems found"), "{verify}");
    assert!(
        !verify.contains("Problem:") && !verify.contains("Caution"),
        "{verify}"
    );
    run("sfdisk", &["--verify", dst.to_str().unwrap()], None);
    // The partition itself is untouched.
    let dump = run("sfdisk", &["--dump", dst.to_str().unwrap()], None);
    assert!(
        dump.contains(&format!("uuid={}", ROOT_UUID.to_uppercase())),
        "{dump}"
    );
    assert!(dump.contains("last-lba: 2097118"), "{dump}");
    // Partition contents (1 MiB .. end of partition) are byte-identical;
    // only the GPT structures changed.
    let region = |p: &Path| {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; (src_len - 2 * MIB) as usize];
        fs::File::open(p)
            .unwrap()
            .read_exact_at(&mut buf, MIB)
            .unwrap();
        buf
    };
    assert!(region(&src) == region(&dst), "partition contents differ");

    let boot = extract_boot_files(
        &dst,
        &dir.path().join("out"),
        &KernelSelection::Default,
        GUEST_MEMORY,
    )
    .unwrap();
    assert_eq!(boot.kernel_version, K10);
}

/// A machine's disk grown in place (a larger `disk:` on an existing machine): a valid
/// GPT at the new size, the partition untouched; the same size is no change, and a
/// smaller one is refused with the disk as it was.
#[test]
fn a_machine_disk_grows_in_place_and_never_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let src = box_disk(dir.path());
    let disk = dir.path().join("machine.img");
    clone_disk(&src, &disk, Some(512 * MIB)).unwrap();
    let before = fs::read(&disk).unwrap();

    assert_eq!(grow_disk(&disk, 512 * MIB).unwrap(), None);
    assert_eq!(grow_disk(&disk, 1 << 30).unwrap(), Some(512 * MIB));
    assert_eq!(fs::metadata(&disk).unwrap().len(), 1 << 30);
    let verify = run("sgdisk", &["-v", disk.to_str().unwrap()], None);
    assert!(verify.contains("No problems found"), "{verify}");
    let dump = run("sfdisk", &["--dump", disk.to_str().unwrap()], None);
    assert!(dump.contains("last-lba: 2097118"), "{dump}");
    let after = fs::read(&disk).unwrap();
    let partition = MIB as usize..(2 * MIB) as usize;
    assert!(
        before[partition.clone()] == after[partition],
        "partition changed"
    );

    let err = grow_disk(&disk, 512 * MIB).unwrap_err();
    assert!(
        matches!(err, Error::SizeTooSmall { requested, actual, .. } if requested == 512 * MIB && actual == 1 << 30),
        "{err:?}"
    );
    assert_eq!(fs::metadata(&disk).unwrap().len(), 1 << 30);
    let boot = extract_boot_files(
        &disk,
        &dir.path().join("out"),
        &KernelSelection::Default,
        GUEST_MEMORY,
    )
    .unwrap();
    assert_eq!(boot.kernel_version, K10);
}

#[test]
fn grow_whole_disk_image_just_extends() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root();
    let src = dir.path().join("fs.img");
    tree.mkfs(&src, 32, &[]);
    let dst = dir.path().join("machine.img");
    clone_disk(&src, &dst, Some(48 * MIB)).unwrap();
    let (a, b) = (fs::read(&src).unwrap(), fs::read(&dst).unwrap());
    assert_eq!(b.len() as u64, 48 * MIB);
    assert!(a[..] == b[..a.len()], "clone differs");
    assert!(b[a.len()..].iter().all(|&x| x == 0));
}

#[test]
fn refuses_to_shrink_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = box_disk(dir.path());
    let src_len = fs::metadata(&src).unwrap().len();
    let dst = dir.path().join("machine.img");
    let err = clone_disk(&src, &dst, Some(src_len - MIB)).unwrap_err();
    assert!(
        matches!(err, Error::SizeTooSmall { requested, actual, .. } if requested == src_len - MIB && actual == src_len),
        "{err:?}"
    );
    assert!(err.to_string().contains("is smaller than the disk"));
    assert!(!dst.exists());
    assert!(temp_leftovers(dir.path()).is_empty());

    // Same size is fine.
    clone_disk(&src, &dst, Some(src_len)).unwrap();
    assert_eq!(fs::metadata(&dst).unwrap().len(), src_len);
}

#[test]
fn missing_source_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = clone_disk(
        &dir.path().join("nope.img"),
        &dir.path().join("x.img"),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, Error::ReadDisk { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.img"));
    assert!(!dir.path().join("x.img").exists());
}

/// tmpfs has neither FICLONE nor (on old kernels) SEEK_DATA: the fallback
/// copy must still be exact and sparse.
#[test]
fn clone_on_tmpfs_falls_back_to_a_sparse_copy() {
    let shm = Path::new("/dev/shm");
    let Ok(dir) = tempfile::tempdir_in(shm) else {
        return hvbox_test_support::skip("no writable /dev/shm");
    };
    let src = box_disk(dir.path());
    let dst = dir.path().join("machine.img");
    clone_disk(&src, &dst, Some(128 * MIB)).unwrap();
    let (a, b) = (fs::read(&src).unwrap(), fs::read(&dst).unwrap());
    assert_eq!(b.len() as u64, 128 * MIB);
    // Same partition contents; only the GPT structures changed.
    let region = MIB as usize..a.len() - MIB as usize;
    assert!(a[region.clone()] == b[region], "partition contents differ");
    assert!(allocated(&dst) <= allocated(&src) + 256 * 1024);
    let boot = extract_boot_files(
        &dst,
        &dir.path().join("out"),
        &KernelSelection::Default,
        GUEST_MEMORY,
    )
    .unwrap();
    assert_eq!(boot.kernel_version, K10);
}

/// A btrfs image mounted on a loop device for the test's life.
struct LoopBtrfs {
    mount: tempfile::TempDir,
    _image_dir: tempfile::TempDir,
}

impl LoopBtrfs {
    /// None (with the reason printed) where mkfs.btrfs or loop mounts are missing.
    fn new() -> Option<LoopBtrfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            hvbox_test_support::skip("mounting a loop device needs root");
            return None;
        }
        let image_dir = tempfile::tempdir().unwrap();
        let image = image_dir.path().join("btrfs.img");
        fs::File::create(&image)
            .unwrap()
            .set_len(256 * MIB)
            .unwrap();
        let mkfs = std::process::Command::new("mkfs.btrfs")
            .arg("-q")
            .arg(&image)
            .output();
        if !mkfs.is_ok_and(|o| o.status.success()) {
            hvbox_test_support::skip("mkfs.btrfs (btrfs-progs) is not installed");
            return None;
        }
        let mount = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(mount.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            hvbox_test_support::skip("cannot mount a loop device here");
            return None;
        }
        Some(LoopBtrfs {
            mount,
            _image_dir: image_dir,
        })
    }

    /// Free bytes on the filesystem, after committing pending writes.
    fn free(&self) -> u64 {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sync -f {0} && stat -f -c '%a %S' {0}",
                self.mount.path().display()
            ))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let mut f = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        f.next().unwrap() * f.next().unwrap()
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.mount.path())
            .status();
    }
}

#[test]
fn clone_on_btrfs_shares_extents() {
    let Some(btrfs) = LoopBtrfs::new() else {
        return;
    };
    let dir = btrfs.mount.path();
    let src = box_disk(dir);
    // 48 MiB of data the clone would have to copy without a reflink.
    let filler: Vec<u8> = (0..48 * MIB).map(|i| (i * 7 % 251) as u8 + 1).collect();
    let mut bytes = fs::read(&src).unwrap();
    let at = bytes.len() / 2 - filler.len() / 2;
    bytes[at..at + filler.len()].copy_from_slice(&filler);
    fs::write(&src, &bytes).unwrap();
    let before = btrfs.free();
    let dst = dir.join("machine.img");
    clone_disk(&src, &dst, None).unwrap();
    let used = before.saturating_sub(btrfs.free());
    assert!(
        fs::read(&dst).unwrap() == bytes,
        "the reflinked clone differs"
    );
    assert!(
        used < 8 * MIB,
        "cloning used {used} bytes: the extents were copied, not shared"
    );
}
