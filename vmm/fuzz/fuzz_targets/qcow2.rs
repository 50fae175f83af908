//! A qcow2 download converted to a raw disk: header, L1 and L2 tables, compressed
//! and zero clusters, all from the input (seeds: small images made by qemu-img).
//!
//! Checks: nothing panics; a conversion that succeeds leaves a file of the size it
//! reports.
#![no_main]

use hvbox_boxes::fuzzing::qcow2_to_raw;
use hvbox_vmm_fuzz::scratch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|image: &[u8]| {
    let out = tempfile::tempfile_in(scratch()).unwrap();
    if let Ok(size) = qcow2_to_raw(image, scratch(), &out) {
        assert_eq!(out.metadata().unwrap().len(), size);
    }
});
