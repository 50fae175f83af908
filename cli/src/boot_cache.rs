//! The boot files of a box's own disk, kept beside the box in the cache. A new
//! machine's disk is a clone of the box's that nothing has written yet, so its first
//! boot links them from here instead of reading them out of the clone and hashing
//! them again: on a reflink clone that was most of `up`'s own time.
//!
//! Only a fresh clone booting its default kernel uses this; every later boot reads
//! the machine's own disk, where the guest may have installed another kernel.

use crate::machine::kernels::sha256_file;
use anyhow::Result;
use hvbox_boxes::{Digest, Store};
use hvbox_provisioner::{BootFiles, MAX_BOOT_BYTES};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The record's format. (Files kept by another hvbox build are not taken either.)
const REVISION: u32 = 1;
const RECORD: &str = "boot.json";
const KERNEL: &str = "vmlinuz";
const INITRD: &str = "initrd.img";
/// A record is a few hundred bytes; anything far larger is not one of ours.
const RECORD_LIMIT: u64 = 64 << 10;

/// Boot files in a machine folder, with their digests for the kernel history.
pub(crate) struct Extracted {
    pub boot: BootFiles,
    pub kernel_sha256: String,
    pub initrd_sha256: Option<String>,
}

impl Extracted {
    /// Hash files extracted from the disk.
    pub fn hashed(boot: BootFiles) -> Result<Extracted> {
        Ok(Extracted {
            kernel_sha256: sha256_file(&boot.kernel)?,
            initrd_sha256: boot.initrd.as_deref().map(sha256_file).transpose()?,
            boot,
        })
    }
}

/// What is kept for one box disk.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Record {
    revision: u32,
    /// The hvbox build whose extraction decided what is kept ([`this_build`]).
    hvbox: String,
    kernel_version: String,
    cmdline: String,
    kernel_guest_path: String,
    initrd_guest_path: Option<String>,
    kernel_sha256: String,
    kernel_bytes: u64,
    initrd_sha256: Option<String>,
    initrd_bytes: Option<u64>,
}

/// The kept boot files of one box disk.
pub(crate) struct BootCache {
    dir: PathBuf,
}

impl BootCache {
    /// For the box disk with this digest.
    pub fn of(store: &Store, disk: &Digest) -> BootCache {
        BootCache {
            dir: store.derived_dir(disk).join("boot"),
        }
    }

    /// The kept files placed in `out_dir` as extraction would place them, when there
    /// are any for this hvbox and they fit `guest_memory`; else `None`, and the caller
    /// extracts (which also says why files that do not fit cannot boot).
    pub fn take(&self, out_dir: &Path, guest_memory: u64) -> Option<Extracted> {
        let record = self.kept()?;
        let total = record
            .kernel_bytes
            .saturating_add(record.initrd_bytes.unwrap_or(0));
        if total > guest_memory.min(MAX_BOOT_BYTES) {
            return None;
        }
        let (kept_kernel, kept_initrd) = (self.dir.join(KERNEL), self.dir.join(INITRD));
        let kernel = out_dir.join(KERNEL);
        let initrd = out_dir.join(INITRD);
        place(&kept_kernel, &kernel).ok()?;
        match record.initrd_bytes {
            Some(_) => place(&kept_initrd, &initrd).ok()?,
            // As extraction does: a stale initrd must not boot with this kernel.
            None => match std::fs::remove_file(&initrd) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return None,
                _ => {}
            },
        }
        Some(Extracted {
            boot: BootFiles {
                kernel,
                initrd: record.initrd_bytes.map(|_| initrd),
                kernel_version: record.kernel_version,
                cmdline: record.cmdline,
                kernel_guest_path: record.kernel_guest_path,
                initrd_guest_path: record.initrd_guest_path,
            },
            kernel_sha256: record.kernel_sha256,
            initrd_sha256: record.initrd_sha256,
        })
    }

    /// Keep files just extracted from a fresh clone of this disk for the next new
    /// machine. Best effort: a cache that cannot be written costs only time.
    pub fn keep(&self, extracted: &Extracted) {
        if self.kept().is_some() {
            return;
        }
        let _ = self.write(extracted);
    }

    /// The record, when this hvbox build wrote it and the kept files are the sizes it
    /// says; anything else is not used, and the next keep replaces it.
    fn kept(&self) -> Option<Record> {
        let file = std::fs::File::open(self.dir.join(RECORD)).ok()?;
        let mut text = String::new();
        file.take(RECORD_LIMIT).read_to_string(&mut text).ok()?;
        let record: Record = serde_json::from_str(&text).ok()?;
        let whole = file_len(&self.dir.join(KERNEL)) == Some(record.kernel_bytes)
            && record.initrd_bytes.is_some() == record.initrd_sha256.is_some()
            && record
                .initrd_bytes
                .is_none_or(|n| file_len(&self.dir.join(INITRD)) == Some(n));
        (record.revision == REVISION && record.hvbox == this_build() && whole).then_some(record)
    }

    /// Into a folder of its own, renamed into place whole: a reader sees all of it or
    /// none, and of two machines keeping the same files at once, one wins.
    fn write(&self, extracted: &Extracted) -> std::io::Result<()> {
        let parent = self.dir.parent().expect("the cache folder has a parent");
        std::fs::create_dir_all(parent)?;
        // Machines of one `up` boot from threads of one process: pid and a count.
        static WRITES: AtomicU32 = AtomicU32::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(".boot.{}.{n}.tmp", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)?;
        let result = (|| {
            // Copies, never links: a kept file must not follow the machine's.
            let boot = &extracted.boot;
            let kernel_bytes = std::fs::copy(&boot.kernel, tmp.join(KERNEL))?;
            let initrd_bytes = match &boot.initrd {
                Some(initrd) => Some(std::fs::copy(initrd, tmp.join(INITRD))?),
                None => None,
            };
            let record = Record {
                revision: REVISION,
                hvbox: this_build(),
                kernel_version: boot.kernel_version.clone(),
                cmdline: boot.cmdline.clone(),
                kernel_guest_path: boot.kernel_guest_path.clone(),
                initrd_guest_path: boot.initrd_guest_path.clone(),
                kernel_sha256: extracted.kernel_sha256.clone(),
                kernel_bytes,
                initrd_sha256: extracted.initrd_sha256.clone(),
                initrd_bytes,
            };
            let json = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
            std::fs::write(tmp.join(RECORD), json)?;
            // Files kept by another hvbox make way; another machine's, just kept, stay.
            if self.kept().is_some() {
                return Ok(());
            }
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir)?;
            }
            std::fs::rename(&tmp, &self.dir)
        })();
        if result.is_err() || tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }
}

/// This hvbox: its version, and its program's size and time, so that files kept by
/// another build (whose extraction may differ) are not taken.
fn this_build() -> String {
    let program = std::env::current_exe().and_then(std::fs::metadata);
    match program
        .as_ref()
        .map(|m| (m.len(), m.mtime(), m.mtime_nsec()))
    {
        Ok((len, secs, nanos)) => {
            format!("{} {len} {secs}.{nanos:09}", env!("CARGO_PKG_VERSION"))
        }
        Err(_) => env!("CARGO_PKG_VERSION").to_string(),
    }
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// A kept file into the machine folder: a hard link where both are on one file
/// system (nothing writes boot files in place: extraction renames new ones over
/// them), else a copy, which shares extents on btrfs and XFS.
fn place(kept: &Path, dest: &Path) -> std::io::Result<()> {
    let tmp = dest.with_extension("cached.tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(kept, &tmp).is_err() {
        std::fs::copy(kept, &tmp)?;
    }
    std::fs::rename(&tmp, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_files(dir: &Path, initrd: bool) -> BootFiles {
        std::fs::write(dir.join(KERNEL), b"kernel bytes").unwrap();
        if initrd {
            std::fs::write(dir.join(INITRD), b"initrd bytes, longer").unwrap();
        }
        BootFiles {
            kernel: dir.join(KERNEL),
            initrd: initrd.then(|| dir.join(INITRD)),
            kernel_version: "6.1.0-9-cloud-amd64".into(),
            cmdline: "root=PARTUUID=1234 ro".into(),
            kernel_guest_path: "/boot/vmlinuz-6.1.0-9-cloud-amd64 on partition 1".into(),
            initrd_guest_path: initrd
                .then(|| "/boot/initrd.img-6.1.0-9-cloud-amd64 on partition 1".into()),
        }
    }

    /// Two machine folders and a cache, in a temporary folder.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, BootCache) {
        let tmp = tempfile::tempdir().unwrap();
        let (first, second) = (tmp.path().join("m1"), tmp.path().join("m2"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        let cache = BootCache {
            dir: tmp.path().join("derived/sha256/abcd/boot"),
        };
        (tmp, first, second, cache)
    }

    #[test]
    fn kept_files_come_back_into_another_machine_folder() {
        let (_tmp, first, second, cache) = setup();
        assert!(cache.take(&second, 1 << 30).is_none(), "nothing kept yet");

        let extracted = Extracted::hashed(boot_files(&first, true)).unwrap();
        cache.keep(&extracted);
        // A stale initrd in the way is replaced, and the first machine's files are
        // not the kept ones: changing them changes nothing kept.
        std::fs::write(second.join(INITRD), b"stale").unwrap();
        std::fs::write(first.join(KERNEL), b"the guest's new kernel").unwrap();

        let got = cache.take(&second, 1 << 30).expect("kept files");
        assert_eq!(got.boot.kernel, second.join(KERNEL));
        assert_eq!(std::fs::read(second.join(KERNEL)).unwrap(), b"kernel bytes");
        assert_eq!(
            std::fs::read(second.join(INITRD)).unwrap(),
            b"initrd bytes, longer"
        );
        assert_eq!(got.boot.cmdline, "root=PARTUUID=1234 ro");
        assert_eq!(got.kernel_sha256, extracted.kernel_sha256);
        assert_eq!(got.initrd_sha256, extracted.initrd_sha256);
        assert_eq!(got.boot.initrd_guest_path, extracted.boot.initrd_guest_path);
    }

    #[test]
    fn machines_keeping_the_same_files_at_once_leave_them_whole() {
        let (_tmp, first, second, cache) = setup();
        let extracted = Extracted::hashed(boot_files(&first, true)).unwrap();
        // As the threads of one `up` booting several machines of one box.
        std::thread::scope(|threads| {
            for _ in 0..8 {
                threads.spawn(|| cache.keep(&extracted));
            }
        });
        let got = cache.take(&second, 1 << 30).expect("kept files");
        assert_eq!(std::fs::read(&got.boot.kernel).unwrap(), b"kernel bytes");
        let parent = cache.dir.parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["boot"], "only the kept folder is left");
    }

    #[test]
    fn without_an_initrd_a_stale_one_is_removed() {
        let (_tmp, first, second, cache) = setup();
        cache.keep(&Extracted::hashed(boot_files(&first, false)).unwrap());
        std::fs::write(second.join(INITRD), b"stale").unwrap();
        let got = cache.take(&second, 1 << 30).expect("kept files");
        assert_eq!(got.boot.initrd, None);
        assert!(!second.join(INITRD).exists());
    }

    #[test]
    fn files_that_do_not_fit_or_do_not_match_their_record_are_not_used() {
        let (_tmp, first, second, cache) = setup();
        cache.keep(&Extracted::hashed(boot_files(&first, true)).unwrap());
        // 12 + 20 bytes of boot files in 16 bytes of memory: extraction says why.
        assert!(cache.take(&second, 16).is_none());
        assert!(!second.join(KERNEL).exists(), "nothing placed");
        // A kept file cut short is not trusted, and keeping again mends it.
        std::fs::write(cache.dir.join(INITRD), b"cut").unwrap();
        assert!(cache.take(&second, 1 << 30).is_none());
        cache.keep(&Extracted::hashed(boot_files(&first, true)).unwrap());
        let mended = cache.take(&second, 1 << 30).expect("kept again");
        assert_eq!(
            std::fs::read(mended.boot.initrd.unwrap()).unwrap(),
            b"initrd bytes, longer"
        );
        // A record of another revision is not read; keeping replaces it.
        let record = cache.dir.join(RECORD);
        let text = std::fs::read_to_string(&record).unwrap();
        std::fs::write(&record, text.replace("\"revision\": 1", "\"revision\": 0")).unwrap();
        assert!(cache.take(&second, 1 << 30).is_none());
        cache.keep(&Extracted::hashed(boot_files(&first, true)).unwrap());
        assert!(cache.take(&second, 1 << 30).is_some());
    }
}
