//! Bounds on what a guest disk can make the host read, allocate or copy.
//! Root in the guest writes the partition table, the bootloader config and
//! the boot files; each case fails fast with an error naming the disk and
//! what is out of bounds, and leaves nothing in the output folder.
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use hvbox_provisioner::{extract_boot_files, Error, KernelSelection};

const DEFAULT: &KernelSelection = &KernelSelection::Default;
/// Generous for checks that read a few sectors and inodes; the unbounded
/// reads and allocations these tests guard against take minutes or abort.
const FAST: Duration = Duration::from_secs(10);

/// A kernel and initrd each `extra` bytes longer than their real contents
/// (a hole at the end, so the test disk stays small).
fn disk_with_large_boot_files(dir: &Path, extra: u64) -> PathBuf {
    let tree = Tree::new(dir, "root");
    tree.kernel("boot", K9);
    fstab(&tree);
    for name in [format!("vmlinuz-{K9}"), format!("initrd.img-{K9}")] {
        let path = tree.root.join("boot").join(name);
        let len = fs::metadata(&path).unwrap().len();
        truncate(&path, len + extra);
    }
    disk_from(dir, &tree)
}

#[test]
fn kernel_and_initrd_over_one_gib_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Each well under the cap, together over it.
    let disk = disk_with_large_boot_files(dir.path(), 600 * MIB);
    let out = dir.path().join("out");
    let started = Instant::now();
    let err = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(matches!(err, Error::BootFilesTooLarge { .. }), "{err:?}");
    let kernel = 600 * MIB + kernel_image(K9).len() as u64;
    let initrd = 600 * MIB + initrd_image(K9).len() as u64;
    assert_eq!(
        err.to_string(),
        format!(
            "the kernel and initrd of {} are too large to boot: /boot/vmlinuz-{K9} (601 MiB) + \
             /boot/initrd.img-{K9} (601 MiB) on partition 1 come to {} bytes, more than the \
             1073741824 bytes hvbox boots at most (1024 MiB); is the file damaged, or the \
             initrd built with every module?",
            disk.display(),
            kernel + initrd
        )
    );
    assert!(!out.exists(), "output folder written");
}

#[test]
fn kernel_and_initrd_must_fit_in_guest_memory() {
    let dir = tempfile::tempdir().unwrap();
    let disk = disk_with_large_boot_files(dir.path(), 300 * MIB);
    let out = dir.path().join("out");
    let memory = 512 * MIB;
    let err = extract_boot_files(&disk, &out, DEFAULT, memory).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "/boot/vmlinuz-{K9} (301 MiB) + /boot/initrd.img-{K9} (301 MiB)"
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "more than the 536870912 bytes of the guest's memory (512 MiB); give the machine \
             more `memory:` or a smaller initrd"
        ),
        "{msg}"
    );
    assert!(!out.exists(), "output folder written");
}
