//! Locks on disk images, as QEMU takes them by default: a shared lock for a
//! read-only disk, an exclusive one for a writable disk, over the whole file. Two
//! VMMs writing one image corrupt its filesystem; one writing under a reader
//! changes what the reader's guest already cached. So a second writer, or a writer
//! and a reader, are refused at open.
//!
//! Open file description (OFD) locks: they belong to the open file, so they go
//! with its last descriptor (or the VMM's death), and two opens in one process
//! contend, unlike classic POSIX locks. QEMU takes the same kind, so hvbox and QEMU
//! on one image see each other. Advisory only: a process that takes no lock is
//! not stopped.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Lock the whole of `file` (shared if `read_only`, else exclusive) without
/// waiting; a conflict is an error saying who holds what, as far as can be told.
pub fn lock(file: &File, read_only: bool) -> io::Result<()> {
    let wanted = if read_only {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    };
    let mut request = whole_file(wanted);
    // SAFETY: fcntl on a descriptor we own with a valid, initialized flock that
    // outlives the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut request) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
        return Err(io::Error::new(
            err.kind(),
            format!("locking the image: {err}"),
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        conflict_message(read_only, holder(file, wanted)),
    ))
}

/// The lock in the way of `wanted`, if it is still there: its type and pid.
fn holder(file: &File, wanted: libc::c_int) -> Option<(libc::c_int, libc::pid_t)> {
    let mut probe = whole_file(wanted);
    // SAFETY: as above; F_OFD_GETLK only writes into `probe`.
    let asked = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) };
    let held = libc::c_int::from(probe.l_type);
    (asked == 0 && held != libc::F_UNLCK).then_some((held, probe.l_pid))
}

fn conflict_message(read_only: bool, holder: Option<(libc::c_int, libc::pid_t)>) -> String {
    let use_ = if read_only {
        "read-only use"
    } else {
        "writing"
    };
    let who = match holder {
        // OFD locks (hvbox's VMM, QEMU) report no pid; classic POSIX locks do.
        Some((kind, pid)) => {
            let kind = if kind == libc::F_WRLCK {
                "writing it (an exclusive lock)"
            } else {
                "reading it (a shared lock)"
            };
            if pid > 0 {
                format!("process {pid} is {kind}")
            } else {
                format!("another process (another VMM or QEMU, say) is {kind}")
            }
        }
        // Released between the two calls.
        None => "another process had it locked a moment ago".to_string(),
    };
    format!(
        "the image is in use, so it cannot be locked for {use_}: {who}; stop that machine first"
    )
}

fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        // 0: to the end of the file, however it grows.
        l_len: 0,
        // F_OFD_* require 0 here.
        l_pid: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    /// A separate open file description of `path` each time, as another VMM has.
    fn open(path: &std::path::Path, read_only: bool) -> File {
        OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .unwrap()
    }

    #[test]
    fn writers_exclude_everyone_and_readers_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        std::fs::write(&path, [0u8; 4096]).unwrap();

        let writer = open(&path, false);
        lock(&writer, false).unwrap();
        let second = open(&path, false);
        let err = lock(&second, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the image is in use, so it cannot be locked for writing: another process (another VMM or QEMU, say) is writing it (an exclusive lock); stop that machine first"
        );
        let reader = open(&path, true);
        let err = lock(&reader, true).unwrap_err().to_string();
        assert!(err.contains("cannot be locked for read-only use"), "{err}");
        assert!(err.contains("is writing it"), "{err}");

        // Closing the writer's file releases its lock.
        drop(writer);
        let first_reader = open(&path, true);
        lock(&first_reader, true).unwrap();
        lock(&reader, true).unwrap();
        let err = lock(&second, false).unwrap_err().to_string();
        assert!(err.contains("is reading it (a shared lock)"), "{err}");
    }

    #[test]
    fn a_classic_posix_lock_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        std::fs::write(&path, [0u8; 4096]).unwrap();
        // Classic record locks conflict with OFD locks even within one process, so
        // this process can stand in for another tool holding one.
        let classic = open(&path, false);
        let mut request = whole_file(libc::F_WRLCK);
        // SAFETY: fcntl on a descriptor we own with a valid flock.
        let taken = unsafe { libc::fcntl(classic.as_raw_fd(), libc::F_SETLK, &mut request) };
        assert_eq!(taken, 0, "{}", io::Error::last_os_error());
        let err = lock(&open(&path, true), true).unwrap_err().to_string();
        assert!(
            err.contains(&format!("process {} is writing it", std::process::id())),
            "{err}"
        );
    }
}
