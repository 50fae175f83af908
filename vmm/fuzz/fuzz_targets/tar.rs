//! A tarball download's disk extracted: GNU sparse maps (with their extension
//! headers), PAX and long-name entries, all from the input (seeds: small sparse
//! archives made by GNU tar).
//!
//! Checks: nothing panics; an extraction that succeeds leaves a file of the size
//! it reports, within the bound it was given.
#![no_main]

use hvbox_boxes::fuzzing::tar_to_raw;
use hvbox_vmm_fuzz::scratch;
use libfuzzer_sys::fuzz_target;

/// Disks larger than this are refused before any copying (holes cost CPU to skip).
const MAX_DISK: u64 = 64 << 20;

fuzz_target!(|archive: &[u8]| {
    let out = tempfile::tempfile_in(scratch()).unwrap();
    if let Ok(size) = tar_to_raw(archive, scratch(), &out, MAX_DISK) {
        assert!(size <= MAX_DISK);
        assert_eq!(out.metadata().unwrap().len(), size);
    }
});
