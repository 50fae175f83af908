//! Advisory per-entry lock files, so concurrent hvbox processes (or threads)
//! fetching the same blob download it once.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::Error;

/// An exclusive `flock` held until drop. The lock file itself is never
/// deleted: removing it would let a waiter lock an unlinked inode while a
/// newcomer locks a fresh file, and both would proceed.
#[derive(Debug)]
pub(crate) struct EntryLock {
    _file: File,
}

impl EntryLock {
    /// Acquire the lock at `path`, blocking while another holder has it.
    /// `on_wait` runs once if we have to wait, so callers can explain the pause.
    pub(crate) fn acquire(path: &Path, on_wait: impl FnOnce()) -> Result<EntryLock, Error> {
        let file = open_lock_file(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                on_wait();
                flock(&file, libc::LOCK_EX).map_err(|e| Error::io(path, "locking", e))?;
            }
            Err(e) => return Err(Error::io(path, "locking", e)),
        }
        Ok(EntryLock { _file: file })
    }

    /// Take the lock only if nobody holds it.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<EntryLock>, Error> {
        let file = open_lock_file(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(EntryLock { _file: file })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(Error::io(path, "locking", e)),
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, "opening lock file", e))
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the fd is owned by `file` and stays open for the duration
        // of the call; flock has no memory-safety preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Path of the lock file for an entry; hex lengths differ per algorithm, so
/// the hex alone is unambiguous.
pub(crate) fn lock_path(locks_dir: &Path, hex: &str) -> PathBuf {
    locks_dir.join(format!("{hex}.lock"))
}
