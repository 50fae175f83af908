//! A tarball holding the disk as [`TAR_DISK_NAME`] (Debian's `.tar.xz` cloud images,
//! made with `tar --create --sparse`: GNU sparse entries, whose holes read as zeros and
//! land as holes again through the sparse copy).

use std::fs::File;
use std::io::Read;

use super::{copy_sparse, FormatError, TAR_DISK_NAME};
use crate::spool::is_source_failure;

/// How many other entry names an error lists.
const LISTED: usize = 8;
/// Largest disk accepted: ext4's limit for one file (as for qcow2's virtual size).
pub(crate) const MAX_DISK_SIZE: u64 = 16 << 40;

/// Copy the disk entry into `out`. Its declared size is checked against `max_size`
/// before a byte is copied: a GNU sparse entry of a few KiB can declare terabytes of
/// holes, which read as zeros and would cost their full size in CPU.
pub(crate) fn extract_disk(
    stream: impl Read,
    out: &File,
    max_size: u64,
) -> Result<u64, FormatError> {
    let mut archive = tar::Archive::new(stream);
    let mut found = Vec::new();
    let mut others = 0usize;
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let path = entry.path().map_err(tar_error)?;
        let name = path.to_string_lossy();
        let name = name.trim_start_matches("./").to_string();
        let kind = entry.header().entry_type();
        let is_data = kind.is_file() || kind.is_gnu_sparse() || kind == tar::EntryType::Continuous;
        if name == TAR_DISK_NAME && is_data {
            let size = entry.size();
            if size > max_size {
                return Err(FormatError::Tar(format!(
                    "{TAR_DISK_NAME} declares {size} bytes, more than the {max_size} \
                     hvbox accepts"
                )));
            }
            return copy_sparse(&mut entry, out, "tar");
        }
        if found.len() < LISTED {
            found.push(name);
        } else {
            others += 1;
        }
    }
    let mut found = if found.is_empty() {
        "no entries".to_string()
    } else {
        found.join(", ")
    };
    if others > 0 {
        found.push_str(&format!(" and {others} more"));
    }
    Err(FormatError::TarWithoutDisk { found })
}

fn tar_error(e: std::io::Error) -> FormatError {
    if is_source_failure(&e) {
        FormatError::SourceFailed
    } else {
        FormatError::Tar(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A GNU sparse `disk.raw` of `size` bytes that are all hole: one 512-byte
    /// header and no data.
    fn sparse_tar(size: u64) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_path(TAR_DISK_NAME).unwrap();
        header.set_entry_type(tar::EntryType::GNUSparse);
        header.set_size(0);
        header.set_mode(0o644);
        let gnu = header.as_gnu_mut().unwrap();
        gnu.set_real_size(size);
        // One map entry: no data, ending at `size`; all before it is hole.
        gnu.sparse[0].set_offset(size);
        gnu.sparse[0].set_length(0);
        header.set_cksum();
        let mut archive = header.as_bytes().to_vec();
        archive.resize(512 * 3, 0);
        archive
    }

    #[test]
    fn a_sparse_disk_is_extracted_as_a_hole() {
        let out = tempfile::tempfile().unwrap();
        let size = extract_disk(&sparse_tar(1 << 20)[..], &out, MAX_DISK_SIZE).unwrap();
        assert_eq!(size, 1 << 20);
        assert_eq!(out.metadata().unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_sparse_disk_larger_than_the_bound_is_refused_before_copying() {
        let out = tempfile::tempfile().unwrap();
        let started = Instant::now();
        // 1 TiB of holes in a 1.5 KiB archive.
        let err = extract_disk(&sparse_tar(1 << 40)[..], &out, 1 << 30).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            err.to_string(),
            "the tarball is damaged: disk.raw declares 1099511627776 bytes, more than \
             the 1073741824 hvbox accepts"
        );
        assert_eq!(out.metadata().unwrap().len(), 0);
        let err = extract_disk(&sparse_tar(32 << 40)[..], &out, MAX_DISK_SIZE).unwrap_err();
        assert!(
            err.to_string().contains("declares 35184372088832 bytes"),
            "{err}"
        );
    }
}
