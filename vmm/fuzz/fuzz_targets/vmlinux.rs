//! vmlinux extraction from a bzImage: the setup header's payload fields, then every
//! payload framing the VMM decodes (gzip, xz, zstd, bzip2, lzma, LZ4 legacy frames,
//! uncompressed ELF) and the kernel version string. All decoders run in-process.
//!
//! The first input byte chooses: odd, the rest is a whole bzImage; even, the rest is
//! a payload placed in a minimal bzImage, so the fuzzer spends its time in the
//! decoders rather than on finding the header.
//!
//! Checks: nothing panics; a vmlinux is an ELF image within the bound.
#![no_main]

use hvbox_vmm::boot::{bzimage_version, extract_vmlinux_within};
use libfuzzer_sys::fuzz_target;

/// Far below the VMM's 512 MiB: large enough for any framing's corner cases,
/// small enough that a decompression bomb costs milliseconds.
const LIMIT: usize = 8 << 20;

/// A bzImage with one setup sector, boot protocol 2.15 and `payload` at the start
/// of the protected-mode code.
fn bzimage(payload: &[u8]) -> Vec<u8> {
    let pm_start = 2 * 512;
    let mut image = vec![0u8; pm_start];
    image[0x1f1] = 1; // setup_sects
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    image[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes()); // payload_offset
    image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    image.extend_from_slice(payload);
    image
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let image = if selector & 1 == 1 {
        rest.to_vec()
    } else {
        bzimage(rest)
    };
    let _ = bzimage_version(&image);
    if let Ok(vmlinux) = extract_vmlinux_within(&image, LIMIT) {
        assert!(vmlinux.starts_with(b"\x7fELF"));
        assert!(vmlinux.len() <= LIMIT);
    }
});
