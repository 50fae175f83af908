//! The bootloader files a guest writes, parsed on the host: grub.cfg, BLS entries
//! (`/boot/loader/entries/*.conf`) and grubenv, as the disk inventory reads them.
//! The `disk_boot` target reaches them through an ext4 image; here the fuzzer works
//! on the text alone, thousands of times faster.
//!
//! The input is text split at NUL bytes: grubenv, then grub.cfg (first byte even)
//! or BLS entries, each "id\ntext".
//!
//! Checks: nothing panics; the default entry is one of the entries.
#![no_main]

use hvbox_provisioner::fuzzing::{bls_entries, grub_cfg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split('\0');
    let grubenv = parts.next().unwrap_or("");
    let parsed = if selector & 1 == 0 {
        grub_cfg(grubenv, parts.next().unwrap_or(""))
    } else {
        let files: Vec<(&str, &str)> = parts
            .take(64)
            .map(|p| p.split_once('\n').unwrap_or((p, "")))
            .collect();
        bls_entries(grubenv, &files)
    };
    if parsed.kernel.is_some() {
        assert!(parsed.entries > 0);
    }
});
