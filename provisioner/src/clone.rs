//! Clone of a raw box disk, optionally grown: a reflink where the
//! filesystem can share extents, else a sparse copy.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::atomic_file::TempFile;
use crate::reflink::{self, Outcome};
use crate::{gpt_grow, sparse, Error};

/// Copy granularity.
const CHUNK: usize = 1 << 20;

/// Clone a raw box disk to `dst`, then grow it to `size` bytes.
///
/// A whole-file reflink (FICLONE) is tried first: on btrfs, xfs with
/// reflink=1 or bcachefs it is instant and shares the box's blocks. Where
/// that is unsupported (ext4, tmpfs, different filesystems) the data is
/// copied sparsely: holes in `src` stay holes (SEEK_DATA/SEEK_HOLE), and
/// all-zero blocks inside data extents are not written either. The copy goes to a temp file
/// in `dst`'s directory and is renamed into place only when complete and
/// fsynced. When a GPT disk grows, its backup header and table move to the
/// new end of the disk.
pub fn clone_disk(src: &Path, dst: &Path, size: Option<u64>) -> Result<(), Error> {
    let read_err = |source| Error::ReadDisk {
        path: src.to_path_buf(),
        source,
    };
    let input = File::open(src).map_err(read_err)?;
    let src_len = input.metadata().map_err(read_err)?.len();
    if let Some(requested) = size {
        if requested < src_len {
            return Err(Error::SizeTooSmall {
                path: src.to_path_buf(),
                requested,
                actual: src_len,
            });
        }
    }

    if size.is_some_and(|s| s > src_len) {
        // Growing reads the GPT; a header out of bounds fails before the copy.
        crate::gpt_header::check(&input).map_err(|reason| Error::GptGrow {
            path: src.to_path_buf(),
            reason,
        })?;
    }

    let mut tmp = TempFile::new_for(dst)?;
    let tmp_path = tmp.path().to_path_buf();
    let write_err = |source| Error::Write {
        path: tmp_path.clone(),
        source,
    };
    if reflink::clone_file(&input, tmp.file()).map_err(write_err)? == Outcome::Unsupported {
        // A failed FICLONE leaves the target untouched, but make sure.
        tmp.file().set_len(0).map_err(write_err)?;
        // Setting the length first makes every region we skip a hole.
        tmp.file().set_len(src_len).map_err(write_err)?;
        copy_sparse(&input, tmp.file(), src_len).map_err(|e| match e {
            CopyError::Read(source) => read_err(source),
            CopyError::Write(source) => write_err(source),
        })?;
    }

    if let Some(new_len) = size.filter(|&s| s > src_len) {
        gpt_grow::grow(tmp.file(), &tmp_path, src_len, new_len)?;
    }
    tmp.commit(dst)
}

/// Grow a machine's disk in place to `size` bytes, its GPT backup moved to the new
/// end (the guest grows its root partition and filesystem at boot). Returns the old
/// size, or `None` when the disk already has `size` bytes; a smaller `size` is an
/// error, as shrinking would destroy data.
pub fn grow_disk(path: &Path, size: u64) -> Result<Option<u64>, Error> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| Error::ReadDisk {
            path: path.to_path_buf(),
            source,
        })?;
    let len = file.metadata().map_err(write_err)?.len();
    if size < len {
        return Err(Error::SizeTooSmall {
            path: path.to_path_buf(),
            requested: size,
            actual: len,
        });
    }
    if size == len {
        return Ok(None);
    }
    gpt_grow::grow(&mut file, path, len, size)?;
    file.sync_all().map_err(write_err)?;
    Ok(Some(len))
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_sparse(input: &File, output: &File, len: u64) -> Result<(), CopyError> {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0;
    while pos < len {
        let Some((start, end)) = next_data_extent(input, pos, len).map_err(CopyError::Read)? else {
            break;
        };
        let mut off = start;
        while off < end {
            let n = usize::try_from(end - off).map_or(CHUNK, |r| r.min(CHUNK));
            input
                .read_exact_at(&mut buf[..n], off)
                .map_err(CopyError::Read)?;
            sparse::write_nonzero(output, &buf[..n], off).map_err(CopyError::Write)?;
            off += n as u64;
        }
        pos = end;
    }
    Ok(())
}

/// The next `[start, end)` range at or after `pos` that may hold data, or
/// `None` when only holes remain. Filesystems without SEEK_DATA support get
/// the whole rest of the file (zero skipping still keeps the copy sparse).
fn next_data_extent(file: &File, pos: u64, len: u64) -> io::Result<Option<(u64, u64)>> {
    let start = match lseek(file, pos, libc::SEEK_DATA) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Some((pos, len))),
        Err(e) => return Err(e),
    };
    if start >= len {
        return Ok(None);
    }
    let end = lseek(file, start, libc::SEEK_HOLE)?.min(len);
    Ok(Some((start, end)))
}

fn lseek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<u64> {
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: lseek only reads its integer arguments; the fd is valid because
    // `file` is borrowed for the duration of the call. Moving the shared file
    // offset is harmless: all I/O here uses positional pread/pwrite.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}
