//! Bounds on the GPT headers of a disk, checked before the gpt crate reads
//! them. Root in the guest writes these headers, and the crate trusts them:
//! it reads `num_parts` entries one by one and allocates `num_parts ×
//! entry size` bytes for the CRC (4 Gi entries, hundreds of GiB), and
//! asserts (panics) on entry sizes other than 128.

use std::fs::File;
use std::os::unix::fs::FileExt;

const SECTOR: u64 = 512;
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The UEFI header is 92 bytes; the spec allows up to one logical block.
const HEADER_SIZE: std::ops::RangeInclusive<u32> = 92..=SECTOR as u32;
/// Disks in the wild have 128 entries; 256 leaves room and bounds the
/// work at 256 reads of at most [`MAX_ENTRY_SIZE`] bytes.
pub(crate) const MAX_ENTRIES: u32 = 256;
/// UEFI allows 128 × 2^n; nothing uses more than 128.
const MAX_ENTRY_SIZE: u32 = 4096;

/// The fields of a GPT header that size what is read after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub entries: u32,
    pub entry_size: u32,
}

/// The primary GPT header's bounds, `Ok(None)` when LBA 1 carries no GPT
/// signature. Both headers the gpt crate may use (the primary at LBA 1,
/// and the backup in the last LBA, taken when the primary's CRC is bad)
/// are checked; the error names the header and the field that is out of
/// bounds.
pub(crate) fn check(file: &File) -> Result<Option<Bounds>, String> {
    let Some(primary) = read_at(file, SECTOR) else {
        return Ok(None);
    };
    let primary = validate(&primary).map_err(|e| format!("the primary GPT header (LBA 1) {e}"))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let last = (len / SECTOR).saturating_sub(1);
    if last > 1 {
        if let Some(backup) = read_at(file, last * SECTOR) {
            validate(&backup)
                .map_err(|e| format!("the backup GPT header (LBA {last}, the last) {e}"))?;
        }
    }
    Ok(Some(primary))
}

/// The 92 bytes of a header at `offset`, if they start with the signature.
fn read_at(file: &File, offset: u64) -> Option<[u8; 92]> {
    let mut hdr = [0u8; 92];
    file.read_exact_at(&mut hdr, offset).ok()?;
    (&hdr[..8] == SIGNATURE).then_some(hdr)
}

fn validate(hdr: &[u8; 92]) -> Result<Bounds, String> {
    let u32_at =
        |off: usize| u32::from_le_bytes([hdr[off], hdr[off + 1], hdr[off + 2], hdr[off + 3]]);
    let header_size = u32_at(12);
    let entries = u32_at(80);
    let entry_size = u32_at(84);
    if !HEADER_SIZE.contains(&header_size) {
        return Err(format!(
            "has a header size of {header_size} bytes (offset 12); UEFI allows {} to {}",
            HEADER_SIZE.start(),
            HEADER_SIZE.end()
        ));
    }
    if entries > MAX_ENTRIES {
        return Err(format!(
            "declares {entries} partition entries (offset 80); hvbox reads at most {MAX_ENTRIES}"
        ));
    }
    let power_of_two_multiple = entry_size % 128 == 0 && (entry_size / 128).is_power_of_two();
    if !power_of_two_multiple || entry_size > MAX_ENTRY_SIZE {
        return Err(format!(
            "gives partition entries of {entry_size} bytes (offset 84); UEFI requires \
             128 × 2^n (128, 256, 512, …) and hvbox reads at most {MAX_ENTRY_SIZE}"
        ));
    }
    Ok(Bounds {
        entries,
        entry_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(size: u32, entries: u32, entry_size: u32) -> [u8; 92] {
        let mut h = [0u8; 92];
        h[..8].copy_from_slice(SIGNATURE);
        h[12..16].copy_from_slice(&size.to_le_bytes());
        h[80..84].copy_from_slice(&entries.to_le_bytes());
        h[84..88].copy_from_slice(&entry_size.to_le_bytes());
        h
    }

    #[test]
    fn accepts_uefi_shapes() {
        for (entries, size) in [(128, 128), (0, 128), (256, 256), (4, 4096)] {
            assert_eq!(
                validate(&header(92, entries, size)),
                Ok(Bounds {
                    entries,
                    entry_size: size
                })
            );
        }
    }

    #[test]
    fn rejects_out_of_bounds_fields() {
        let err = |h| validate(&h).unwrap_err();
        assert!(err(header(92, u32::MAX, 128)).contains("4294967295 partition entries"));
        assert!(err(header(92, 257, 128)).contains("at most 256"));
        for size in [0, 64, 129, 384, 8192, 1 << 20] {
            assert!(
                err(header(92, 128, size)).contains(&format!("entries of {size} bytes")),
                "{size}"
            );
        }
        assert!(err(header(91, 128, 128)).contains("header size of 91 bytes"));
        assert!(err(header(513, 128, 128)).contains("header size of 513 bytes"));
    }
}
