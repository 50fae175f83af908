//! Where the filesystems of a disk image live: GPT, else MBR, else the
//! whole disk as one filesystem.

use std::fs::File;
use std::path::Path;

use crate::Error;

const SECTOR: u64 = 512;
const MBR_PROTECTIVE: u8 = 0xEE;

/// One byte range of the disk that may hold a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Partition {
    /// Partition number as Linux counts it (`vda<N>`); `None` for a
    /// filesystem on the whole disk.
    pub number: Option<u32>,
    pub start: u64,
    pub len: u64,
    /// What the kernel accepts as `root=PARTUUID=…` for this partition.
    pub partuuid: Option<String>,
}

impl Partition {
    /// Human-readable name for error messages.
    pub fn describe(&self) -> String {
        match self.number {
            Some(n) => format!("partition {n}"),
            None => "the whole disk".to_string(),
        }
    }
}

/// List the partitions of `disk`, in partition-number order.
pub(crate) fn list(disk: &Path, file: &mut File) -> Result<Vec<Partition>, Error> {
    let disk_len = file
        .metadata()
        .map_err(|source| Error::ReadDisk {
            path: disk.to_path_buf(),
            source,
        })?
        .len();
    let table_err = |reason: String| Error::PartitionTable {
        path: disk.to_path_buf(),
        reason,
    };

    match crate::gpt_header::check(file).map_err(table_err)? {
        Some(b) if b.entry_size == 128 => return list_gpt(disk, disk_len).map_err(table_err),
        // Valid for UEFI, but the gpt crate asserts (panics) on it.
        Some(b) => {
            return Err(table_err(format!(
                "GPT partition entries of {} bytes are not supported (expected 128)",
                b.entry_size
            )))
        }
        None => {}
    }
    crate::mbr_bounds::check(file).map_err(table_err)?;
    if let Ok(mbr) = mbrman::MBR::read_from(file, SECTOR as u32) {
        if mbr.iter().any(|(_, p)| p.sys == MBR_PROTECTIVE) {
            // A protective MBR without a readable GPT header.
            return Err(table_err(
                "protective MBR found but the GPT header is missing or corrupt".into(),
            ));
        }
        let parts = list_mbr(&mbr, disk_len).map_err(table_err)?;
        if !parts.is_empty() {
            return Ok(parts);
        }
    }
    Ok(vec![Partition {
        number: None,
        start: 0,
        len: disk_len,
        partuuid: None,
    }])
}

fn list_gpt(disk: &Path, disk_len: u64) -> Result<Vec<Partition>, String> {
    // Backup header errors are tolerated: a primary header is enough to read.
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open(disk)
        .map_err(|e| format!("cannot read GPT: {e}"))?;
    let lb = *gpt.logical_block_size();
    let mut out = Vec::new();
    for (&number, part) in gpt.partitions() {
        if !part.is_used() {
            continue;
        }
        let start = part.bytes_start(lb).map_err(|e| e.to_string())?;
        let len = part.bytes_len(lb).map_err(|e| e.to_string())?;
        check_within(number, start, len, disk_len)?;
        out.push(Partition {
            number: Some(number),
            start,
            len,
            partuuid: Some(part.part_guid.to_string()),
        });
    }
    Ok(out)
}

fn list_mbr(mbr: &mbrman::MBR, disk_len: u64) -> Result<Vec<Partition>, String> {
    // Linux's MBR PARTUUID: <disk signature as hex u32>-<2-digit number>.
    let signature = u32::from_le_bytes(mbr.header.disk_signature);
    mbr.iter()
        .filter(|(_, p)| p.is_used() && !p.is_extended())
        .map(|(i, p)| {
            let number = u32::try_from(i).unwrap_or(u32::MAX);
            let start = u64::from(p.starting_lba) * SECTOR;
            let len = u64::from(p.sectors) * SECTOR;
            check_within(number, start, len, disk_len)?;
            Ok(Partition {
                number: Some(number),
                start,
                len,
                partuuid: Some(format!("{signature:08x}-{i:02}")),
            })
        })
        .collect()
}

/// A partition past the end of the file means a truncated or damaged
/// image; reading it would only produce confusing filesystem errors.
fn check_within(number: u32, start: u64, len: u64, disk_len: u64) -> Result<(), String> {
    let end = start.saturating_add(len);
    if end > disk_len {
        return Err(format!(
            "partition {number} (bytes {start}..{end}) runs past the end of the disk \
             ({disk_len} bytes); is the image truncated?"
        ));
    }
    Ok(())
}
