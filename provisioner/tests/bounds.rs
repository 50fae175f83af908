//! Bounds on what a guest disk can make the host read, allocate or copy.
//! Root in the guest writes the partition table, the bootloader config and
//! the boot files; each case fails fast with an error naming the disk and
//! what is out of bounds, and leaves nothing in the output folder.
mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use hvbox_provisioner::{
    clone_disk, extract_boot_files, grow_disk, installed_kernels, Error, KernelSelection,
};

const DEFAULT: &KernelSelection = &KernelSelection::Default;
/// Generous for checks that read a few sectors and inodes; the unbounded
/// reads and allocations these tests guard against take minutes or abort.
const FAST: Duration = Duration::from_secs(10);

/// IEEE CRC-32, as GPT uses it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Set a u32 field of the GPT header at `lba` and fix the header's CRC, as
/// root in the guest could: the gpt crate would trust the result.
fn set_gpt_field(disk: &Path, lba: u64, offset: usize, value: u32) {
    let bytes = fs::read(disk).unwrap();
    let at = (lba * 512) as usize;
    let mut hdr = bytes[at..at + 92].to_vec();
    assert_eq!(&hdr[..8], b"EFI PART", "no GPT header at LBA {lba}");
    hdr[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    hdr[16..20].fill(0);
    let crc = crc32(&hdr);
    hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    overwrite(disk, lba * 512, &hdr);
}

fn last_lba(disk: &Path) -> u64 {
    fs::metadata(disk).unwrap().len() / 512 - 1
}

/// Extraction fails fast with a `PartitionTable` error naming the disk;
/// returns its message. Nothing is written to the output folder.
fn partition_table_error(dir: &Path, disk: &Path) -> String {
    let out = dir.join("out");
    let started = Instant::now();
    let err = extract_boot_files(disk, &out, DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(matches!(err, Error::PartitionTable { .. }), "{err:?}");
    assert!(!out.exists(), "output folder written");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "the partition table of {} is damaged or unsupported: ",
            disk.display()
        )),
        "{msg}"
    );
    assert_eq!(installed_kernels(disk).unwrap_err().to_string(), msg);
    msg
}

#[test]
fn gpt_with_4g_partition_entries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disk = debian_disk(dir.path());
    set_gpt_field(&disk, 1, 80, u32::MAX);
    let msg = partition_table_error(dir.path(), &disk);
    assert!(
        msg.ends_with(
            "the primary GPT header (LBA 1) declares 4294967295 partition entries \
             (offset 80); hvbox reads at most 256"
        ),
        "{msg}"
    );
}

#[test]
fn gpt_entry_size_must_be_128_times_a_power_of_two() {
    for size in [129, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let disk = debian_disk(dir.path());
        set_gpt_field(&disk, 1, 84, size);
        let msg = partition_table_error(dir.path(), &disk);
        assert!(
            msg.ends_with(&format!(
                "the primary GPT header (LBA 1) gives partition entries of {size} bytes \
                 (offset 84); UEFI requires 128 × 2^n (128, 256, 512, …) and hvbox reads \
                 at most 4096"
            )),
            "{msg}"
        );
    }
}

/// The gpt crate falls back to the backup header when the primary's CRC is
/// bad, so the backup is held to the same bounds.
#[test]
fn backup_gpt_header_is_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    let disk = debian_disk(dir.path());
    let last = last_lba(&disk);
    set_gpt_field(&disk, last, 80, u32::MAX);
    overwrite(&disk, 512 + 16, &[0xFF; 4]);
    let msg = partition_table_error(dir.path(), &disk);
    assert!(
        msg.ends_with(&format!(
            "the backup GPT header (LBA {last}, the last) declares 4294967295 partition \
             entries (offset 80); hvbox reads at most 256"
        )),
        "{msg}"
    );
}

/// Growing reads the table too: a machine's disk (written by its guest) and
/// a box disk being cloned are refused before anything changes.
#[test]
fn growing_a_disk_with_a_hostile_gpt_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = debian_disk(dir.path());
    set_gpt_field(&disk, 1, 80, u32::MAX);
    let before = fs::read(&disk).unwrap();
    let expected = "the primary GPT header (LBA 1) declares 4294967295 partition entries \
                    (offset 80); hvbox reads at most 256";

    let err = grow_disk(&disk, 1 << 30).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot move the backup GPT of {} to the new end of disk: {expected}",
            disk.display()
        )
    );
    assert!(fs::read(&disk).unwrap() == before, "disk changed");

    let dst = dir.path().join("machine.img");
    let err = clone_disk(&disk, &dst, Some(1 << 30)).unwrap_err();
    assert!(err.to_string().ends_with(expected), "{err}");
    assert!(!dst.exists());
    assert!(temp_leftovers(dir.path()).is_empty());
}

/// A kernel with a grub entry naming `initrds` (guest paths, each created).
fn disk_with_initrd_lines(dir: &Path, files: &[String], lines: &[String]) -> PathBuf {
    let tree = Tree::new(dir, "root");
    tree.kernel("boot", K9);
    for f in files {
        tree.file(f.trim_start_matches('/'), &contents(f));
    }
    tree.file(
        "boot/grub/grub.cfg",
        format!(
            "menuentry 'Debian' {{\n linux /boot/vmlinuz-{K9} root=PARTUUID={ROOT_UUID} ro\n \
             initrd {}\n}}\n",
            lines.join(" ")
        )
        .as_bytes(),
    );
    disk_from(dir, &tree)
}

#[test]
fn boot_entry_naming_20_initrds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = (0..20).map(|i| format!("/boot/early-{i}.img")).collect();
    let disk = disk_with_initrd_lines(dir.path(), &files, &files);
    let out = dir.path().join("out");
    let started = Instant::now();
    let err = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(matches!(err, Error::TooManyInitrds { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the boot entry for /boot/vmlinuz-{K9} in /boot/grub/grub.cfg on partition 1 of \
             {} names 20 initrds; hvbox loads at most 8. Remove the extra initrd lines from \
             the guest's bootloader configuration",
            disk.display()
        )
    );
    assert!(!out.exists(), "output folder written");
}

/// Repeats of one archive count once: grub would load the same bytes again.
#[test]
fn repeated_initrd_lines_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        "/boot/ucode.img".to_string(),
        format!("/boot/initrd.img-{K9}"),
    ];
    let lines: Vec<String> = files.iter().cycle().take(20).cloned().collect();
    let disk = disk_with_initrd_lines(dir.path(), &files[..1], &lines);
    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    let mut expected = contents("/boot/ucode.img");
    expected.extend(initrd_image(K9));
    assert!(fs::read(boot.initrd.unwrap()).unwrap() == expected);
}

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

    // With the memory to hold them they are extracted, the holes kept.
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(fs::metadata(&boot.kernel).unwrap().len(), kernel_len(300));
    assert!(
        allocated(&boot.kernel) < 8 * MIB,
        "{}",
        allocated(&boot.kernel)
    );
    let image = kernel_image(K9);
    let mut head = vec![0u8; image.len()];
    let kernel = fs::File::open(&boot.kernel).unwrap();
    kernel.read_exact_at(&mut head, 0).unwrap();
    assert!(head == image, "kernel bytes differ");
    assert!(temp_leftovers(&out).is_empty());
}

fn kernel_len(extra_mib: u64) -> u64 {
    extra_mib * MIB + kernel_image(K9).len() as u64
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks() * 512
}
