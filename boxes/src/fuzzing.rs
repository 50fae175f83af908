//! Entry points for the fuzz targets (`vmm/fuzz`): the converters a download meets,
//! fed from memory. Not an API: hidden from the docs, kept to what the targets need.

use std::fs::File;
use std::path::Path;

use crate::bounds::{Bounds, CapSource};
use crate::formats::{self, FormatError};
use crate::spool::Spool;

/// Convert the qcow2 image `image` into `out`, as if it had just been downloaded
/// (a complete spool in `scratch`), its disk capped at `max_size`. Returns the
/// disk's size.
pub fn qcow2_to_raw(
    image: &[u8],
    scratch: &Path,
    out: &File,
    max_size: u64,
) -> Result<u64, FormatError> {
    let spool =
        Spool::open(&scratch.join("download.qcow2"), 0, true).map_err(FormatError::Write)?;
    spool.append(image).map_err(FormatError::Write)?;
    spool.finish();
    let bounds = Bounds::new(max_size, CapSource::Global, scratch);
    formats::qcow2::convert(&spool.reader(), out, &bounds)
}

/// Extract the disk from the tarball `archive` into `out` (in `scratch`), refusing a
/// disk entry that declares more than `max_size` bytes (a sparse entry's holes read
/// as zeros, so its declared size, not the archive's, is what the copy costs).
pub fn tar_to_raw(
    archive: &[u8],
    scratch: &Path,
    out: &File,
    max_size: u64,
) -> Result<u64, FormatError> {
    let bounds = Bounds::new(max_size, CapSource::Global, scratch);
    formats::tar::extract_disk(archive, out, &bounds)
}
