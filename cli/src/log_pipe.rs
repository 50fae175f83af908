//! Children's output into bounded logs: a child writes to a pipe, and a thread of the
//! supervisor copies the pipe into a rotating log file (`hvbox_vmm::log_rotation`).
//! A file the child held itself could only grow; this one rotates at 8 MiB. The
//! thread ends when the child (and every other holder of the write end) is gone.

use anyhow::{Context, Result};
use hvbox_vmm::log_rotation::{copy_rotating, RotatingLog, LOG_LIMIT};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The write end of a pipe whose bytes land in the rotating log at `log_path`, and
/// the thread copying them (it ends at the pipe's end of file).
pub(crate) fn logging_pipe(log_path: &Path) -> Result<(OwnedFd, JoinHandle<()>)> {
    let log = RotatingLog::open(log_path, LOG_LIMIT)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let (read, write) = pipe().context("creating a pipe for a log")?;
    let name = log_path.display().to_string();
    let copier = std::thread::Builder::new()
        .name("log-copier".into())
        .spawn(move || {
            if let Err(e) = copy_rotating(File::from(read), log) {
                eprintln!("supervisor: writing {name}: {e}");
            }
        })
        .context("starting a log copier thread")?;
    Ok((write, copier))
}

/// Wait (up to `limit`) for copiers to write what their pipes still hold: the end
/// of a VM's output explains why it ended. A pipe someone else still holds open is
/// not waited for beyond the limit.
pub(crate) fn drain(copiers: Vec<JoinHandle<()>>, limit: Duration) {
    let deadline = Instant::now() + limit;
    for copier in copiers {
        while !copier.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if copier.is_finished() {
            let _ = copier.join();
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_childs_output_reaches_the_log_and_the_copier_ends_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passt.log");
        let (write, copier) = logging_pipe(&path).unwrap();
        let status = Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .stdout(Stdio::from(write.try_clone().unwrap()))
            .stderr(Stdio::from(write))
            .status()
            .unwrap();
        assert!(status.success());
        // The copier sees EOF once the child is gone and ends after writing all.
        drain(vec![copier], Duration::from_secs(5));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "out\nerr\n");
    }
}
