//! A qcow2 download converted to a raw disk: header, L1 and L2 tables, compressed
//! and zero clusters, all from the input (seeds: small images made by qemu-img).
//!
//! Checks: nothing panics; a conversion that succeeds leaves a file of the size it
//! reports.
#![no_main]

use hvbox_boxes::fuzzing::qcow2_to_raw;
use hvbox_vmm_fuzz::scratch;
use libfuzzer_sys::fuzz_target;

/// Disks larger than this are refused (writing their zeros costs time, not bugs).
const MAX_DISK: u64 = 64 << 20;

fuzz_target!(|image: &[u8]| {
    let out = tempfile::tempfile_in(scratch()).unwrap();
    if let Ok(size) = qcow2_to_raw(image, scratch(), &out, MAX_DISK) {
        assert!(size <= MAX_DISK);
        assert_eq!(out.metadata().unwrap().len(), size);
    }
});
