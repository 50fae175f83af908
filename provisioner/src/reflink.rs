//! Whole-file reflink (FICLONE): on btrfs, xfs (reflink=1) or bcachefs the
//! clone shares the box's extents and costs nothing until the guest writes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOW(0x94, 9, int)`; libc does not export it. The direction bits sit
/// differently on the architectures with a 3-bit ioctl direction field.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
const FICLONE: u32 = 0x8004_9409;
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
const FICLONE: u32 = 0x4004_9409;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Cloned,
    /// The filesystems cannot share extents here; copy instead.
    Unsupported,
}

/// Make `dst` (empty, open for writing) share all of `src`'s data.
pub(crate) fn clone_file(src: &File, dst: &File) -> io::Result<Outcome> {
    // SAFETY: FICLONE reads the int source fd passed by value and acts on
    // the destination fd; both fds are valid for the duration of the call
    // because the files are borrowed.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as libc::Ioctl, src.as_raw_fd()) };
    if r == 0 {
        return Ok(Outcome::Cloned);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Not supported by this fs, different filesystems, or an fd type
        // the ioctl does not apply to: fall back to copying.
        Some(libc::EOPNOTSUPP | libc::EXDEV | libc::EINVAL | libc::ENOTTY | libc::ENOSYS) => {
            Ok(Outcome::Unsupported)
        }
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Whatever the temp dir's filesystem supports, the result is either a
    /// faithful clone or a clean "unsupported" that leaves `dst` empty.
    #[test]
    fn clones_or_reports_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let (src_path, dst_path) = (dir.path().join("src"), dir.path().join("dst"));
        File::create(&src_path)
            .unwrap()
            .write_all(&vec![7u8; 1 << 16])
            .unwrap();
        let src = File::open(&src_path).unwrap();
        let dst = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&dst_path)
            .unwrap();
        let outcome = clone_file(&src, &dst).unwrap();
        let mut copied = Vec::new();
        File::open(&dst_path)
            .unwrap()
            .read_to_end(&mut copied)
            .unwrap();
        match outcome {
            Outcome::Cloned => assert_eq!(copied, vec![7u8; 1 << 16]),
            Outcome::Unsupported => assert!(copied.is_empty()),
        }
    }

    #[test]
    fn pipe_is_unsupported_not_an_error() {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into the array we own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the fds were just created and are owned by these Files.
        let (r, w) = unsafe {
            use std::os::fd::FromRawFd;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        assert_eq!(clone_file(&r, &w).unwrap(), Outcome::Unsupported);
    }
}
