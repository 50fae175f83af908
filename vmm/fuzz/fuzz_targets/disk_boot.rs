//! What `hvbox up` reads from a guest's disk on the host: partition table (GPT,
//! else MBR, else a whole-disk filesystem), ext4, grub.cfg / BLS entries / grubenv,
//! the kernel's bzImage header, then the kernel and initrd copied out.
//!
//! The input is a sparse disk image, so that seeds made from real (mostly empty)
//! images stay small: a little-endian u32 disk size in 512-byte sectors (at most
//! `MAX_SECTORS`), then records of u32 sector, u16 length and that many bytes,
//! written at that sector (records past the end of the disk are cut there).
//! `scripts/fuzz-seeds` turns disk images into this form.
//!
//! Checks: nothing panics; extracted files are within the memory bound given.
#![no_main]

use hvbox_provisioner::{boot_menu, extract_boot_files, KernelSelection};
use hvbox_vmm_fuzz::scratch;
use libfuzzer_sys::fuzz_target;
use std::os::unix::fs::FileExt;

/// 16 MiB: room for a partition table and a small ext4 filesystem.
const MAX_SECTORS: u32 = 32 * 1024;
/// Kernel and initrd together must fit in this "guest memory".
const GUEST_MEMORY: u64 = 4 << 20;

fuzz_target!(|input: &[u8]| {
    let Some((size, mut rest)) = input.split_first_chunk::<4>() else {
        return;
    };
    let disk_len = u64::from(u32::from_le_bytes(*size) % (MAX_SECTORS + 1)) * 512;
    let disk = tempfile::NamedTempFile::new_in(scratch()).unwrap();
    disk.as_file().set_len(disk_len).unwrap();
    while let Some((sector, tail)) = rest.split_first_chunk::<4>() {
        let Some((len, tail)) = tail.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let at = u64::from(u32::from_le_bytes(*sector)) * 512;
        let room = disk_len.saturating_sub(at).min(len as u64) as usize;
        disk.as_file().write_all_at(&tail[..room], at).unwrap();
        rest = &tail[len..];
    }

    let _ = boot_menu(disk.path());
    let out = tempfile::tempdir_in(scratch()).unwrap();
    if let Ok(files) = extract_boot_files(
        disk.path(),
        out.path(),
        &KernelSelection::Default,
        GUEST_MEMORY,
    ) {
        let len = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
        let initrd = files.initrd.as_deref().map_or(0, len);
        assert!(len(&files.kernel) + initrd <= GUEST_MEMORY);
    }
});
