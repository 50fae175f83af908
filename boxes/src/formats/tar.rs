//! A tarball holding the disk as [`TAR_DISK_NAME`] (Debian's `.tar.xz` cloud images,
//! made with `tar --create --sparse`: GNU sparse entries, whose holes read as zeros and
//! land as holes again through the sparse copy).

use std::fs::File;
use std::io::Read;

use super::{copy_sparse, FormatError, TAR_DISK_NAME};
use crate::bounds::Bounds;
use crate::spool::is_source_failure;

/// How many other entry names an error lists.
const LISTED: usize = 8;

pub(crate) fn extract_disk(
    stream: impl Read,
    out: &File,
    bounds: &Bounds,
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
            // The disk's size and the bytes it holds (a sparse entry stores its
            // data only) are declared up front: check them before writing any.
            let size = entry.size();
            bounds.check_size(size, || {
                format!("{TAR_DISK_NAME} in the tarball declares {size} bytes, which")
            })?;
            bounds.check_space(entry.header().entry_size().map_err(tar_error)?)?;
            return copy_sparse(&mut entry, out, "tar", bounds);
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
    use crate::bounds::CapSource;
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
        let size = extract_disk(&sparse_tar(1 << 20)[..], &out, &bounds(1 << 30)).unwrap();
        assert_eq!(size, 1 << 20);
        assert_eq!(out.metadata().unwrap().len(), 1 << 20);
    }

    #[test]
    fn a_sparse_disk_larger_than_the_bound_is_refused_before_copying() {
        let out = tempfile::tempfile().unwrap();
        let started = Instant::now();
        // 1 TiB of holes in a 1.5 KiB archive.
        let err = extract_disk(&sparse_tar(1 << 40)[..], &out, &bounds(1 << 30)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            err.to_string()
                .contains("disk.raw in the tarball declares 1099511627776 bytes"),
            "{err}"
        );
        assert_eq!(out.metadata().unwrap().len(), 0);
    }

    fn bounds(cap: u64) -> Bounds {
        Bounds::new(cap, CapSource::Global, &std::env::temp_dir())
    }
}
