//! Children's output into bounded logs: a child writes to a pipe, and a thread of the
//! supervisor copies the pipe into a rotating log file (`hvbox_vmm::log_rotation`).
//! A file the child held itself could only grow; this one rotates at 8 MiB. The
//! thread ends when the child (and every other holder of the write end) is gone.

use anyhow::{Context, Result};
use hvbox_vmm::log_rotation::{copy_rotating, RotatingLog, LOG_LIMIT};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// The write end of a pipe whose bytes land in the rotating log at `log_path`.
pub(crate) fn logging_pipe(log_path: &Path) -> Result<OwnedFd> {
    let log = RotatingLog::open(log_path, LOG_LIMIT)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let (read, write) = pipe().context("creating a pipe for a log")?;
    let name = log_path.display().to_string();
    std::thread::Builder::new()
        .name("log-copier".into())
        .spawn(move || {
            if let Err(e) = copy_rotating(File::from(read), log) {
                eprintln!("supervisor: writing {name}: {e}");
            }
        })
        .context("starting a log copier thread")?;
    Ok(write)
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
        let write = logging_pipe(&path).unwrap();
        let status = Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .stdout(Stdio::from(write.try_clone().unwrap()))
            .stderr(Stdio::from(write))
            .status()
            .unwrap();
        assert!(status.success());
        // The copier sees EOF once the child is gone and writes what it had.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text == "out\nerr\n" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "log holds {text:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
