//! Growing a GPT disk: after the file is extended the backup header and
//! partition array must sit at the new last LBAs, or the guest kernel
//! reports a corrupt table (and may refuse to use it).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use gpt::disk::LogicalBlockSize;
use gpt::header::{Header, HeaderBuilder};

use crate::Error;

const LB: LogicalBlockSize = LogicalBlockSize::Lb512;
const LB_BYTES: u64 = 512;

/// Extend `file` from `old_len` to `new_len` bytes and, if it carries a GPT,
/// rewrite the backup GPT at the new end and widen the protective MBR.
/// Non-GPT disks are just extended.
pub(crate) fn grow(file: &mut File, path: &Path, old_len: u64, new_len: u64) -> Result<(), Error> {
    let fail = |reason: String| Error::GptGrow {
        path: path.to_path_buf(),
        reason,
    };
    // Read the table before growing, while both headers are where the gpt
    // crate expects them; a header out of bounds stops us before any change.
    let primary = read_primary_header(file).map_err(fail)?;
    file.set_len(new_len).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let Some(primary) = primary else {
        return Ok(());
    };
    let moved = relocate_backup(file, &primary, old_len, new_len)
        .and_then(|()| update_protective_mbr(file, new_len));
    if let Err(e) = moved {
        // Back to the old size, with its table where it was (writes past the old
        // end go with the truncation), so the next grow tries again.
        let _ = file.set_len(old_len);
        return Err(fail(e.to_string()));
    }
    Ok(())
}

fn read_primary_header(file: &mut File) -> Result<Option<Header>, String> {
    match crate::gpt_header::check(file)? {
        Some(b) if b.entry_size == 128 => {}
        // No GPT (or an entry size the gpt crate cannot handle): plain grow.
        _ => return Ok(None),
    }
    let Ok(disk) = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(LB)
        .open_from_device(&mut *file)
    else {
        return Ok(None);
    };
    Ok(disk.primary_header().ok().cloned())
}

fn relocate_backup(
    file: &mut File,
    primary: &Header,
    old_len: u64,
    new_len: u64,
) -> io::Result<()> {
    let array_bytes = u64::from(primary.num_parts) * u64::from(primary.part_size);
    let array_lbs = array_bytes.div_ceil(LB_BYTES);
    let new_backup_lba = new_len / LB_BYTES - 1;

    // Copy the raw entry array: it is identical for both copies, and copying
    // bytes (instead of re-serialising entries) keeps partition numbers and
    // every unknown field exactly as they were.
    let mut array = vec![0u8; usize::try_from(array_bytes).map_err(io::Error::other)?];
    file.read_exact_at(&mut array, primary.part_start * LB_BYTES)?;
    let new_array_lba = new_backup_lba - array_lbs;
    file.write_all_at(&array, new_array_lba * LB_BYTES)?;

    // The builder recomputes last_usable from the new backup LBA.
    let mut new_primary = HeaderBuilder::from_header(primary)
        .backup_lba(new_backup_lba)
        .build(LB)
        .map_err(io::Error::other)?;
    let mut backup = HeaderBuilder::from_header(&new_primary)
        .primary(false)
        .build(LB)
        .map_err(io::Error::other)?;
    debug_assert_eq!(backup.part_start, new_array_lba);
    // Header writes compute the entry-array CRC from the disk, so the array
    // must be in place first (done above).
    backup.write_backup(file, LB).map_err(io::Error::other)?;
    new_primary
        .write_primary(file, LB)
        .map_err(io::Error::other)?;

    // A stale backup header in the middle of the disk would only confuse
    // recovery tools; wipe it.
    let old_backup = (old_len / LB_BYTES).saturating_sub(1) * LB_BYTES;
    let mut sig = [0u8; 8];
    let untouched = old_backup > 0 && old_backup < new_array_lba * LB_BYTES;
    if untouched && file.read_exact_at(&mut sig, old_backup).is_ok() && &sig == b"EFI PART" {
        file.write_all_at(&[0u8; LB_BYTES as usize], old_backup)?;
    }
    Ok(())
}

/// The protective MBR's 0xEE entry should cover the whole disk (capped at
/// 2^32-1 sectors) per the UEFI spec.
fn update_protective_mbr(file: &File, new_len: u64) -> io::Result<()> {
    let mut mbr = [0u8; 512];
    file.read_exact_at(&mut mbr, 0)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(());
    }
    let sectors = u32::try_from(new_len / LB_BYTES - 1).unwrap_or(u32::MAX);
    for entry in mbr[446..510].chunks_mut(16) {
        if entry[4] == 0xEE {
            entry[12..16].copy_from_slice(&sectors.to_le_bytes());
        }
    }
    file.write_all_at(&mbr, 0)
}
