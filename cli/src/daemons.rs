//! The daemons a VM needs beside it, as the supervisor runs them: passt for its
//! network and one virtiofsd per mounted folder. Each listens on a UNIX socket the
//! engine connects to, so each is started and its socket awaited before the VM.
//! Each serves one VM connection and quits when it closes, so a VM started again
//! (after a reboot of the builtin engine) gets fresh ones.

use crate::supervisor::{start_child, stop_child, LaunchPlan};
use crate::virtiofs::FsDaemon;
use anyhow::Result;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long a daemon gets to open its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// The longest pause between looks at a socket: a daemon is usually ready within
/// tens of milliseconds, and a longer pause would be time `up` waits for nothing.
const POLL_CAP: Duration = Duration::from_millis(4);

pub struct Daemons {
    pub passt: Child,
    /// Each virtiofsd with the mount it serves; `None` once it was seen gone.
    fs: Vec<(FsDaemon, Option<Child>)>,
}

impl Daemons {
    /// passt and a virtiofsd per mount, each listening. All are started at once and
    /// their sockets awaited after, so their start-ups overlap.
    pub fn start(plan: &LaunchPlan, passt_log: &Path) -> Result<Daemons> {
        let passt = spawn(&plan.passt_command, passt_log, &plan.passt_socket)?;
        let mut started = vec![passt];
        for fs in &plan.filesystems {
            match spawn(&fs.argv, &fs.log, &fs.socket) {
                Ok(child) => started.push(child),
                Err(e) => {
                    started.iter_mut().for_each(stop_child);
                    return Err(e);
                }
            }
        }
        let mut started = started.into_iter();
        let passt = started.next().expect("passt was started first");
        let passt = match await_listening("passt", passt, passt_log, &plan.passt_socket) {
            Ok(passt) => passt,
            Err(e) => {
                started.for_each(|mut child| stop_child(&mut child));
                return Err(e.error);
            }
        };
        let mut daemons = Daemons {
            passt,
            fs: Vec::new(),
        };
        for fs in &plan.filesystems {
            let child = started.next().expect("one virtiofsd per mount was started");
            match await_virtiofsd(fs, child) {
                Ok(child) => daemons.fs.push((fs.clone(), Some(child))),
                Err(e) => {
                    daemons.stop();
                    started.for_each(|mut child| stop_child(&mut child));
                    return Err(e);
                }
            }
        }
        Ok(daemons)
    }

    pub fn virtiofsd_pids(&self) -> Vec<u32> {
        self.fs
            .iter()
            .filter_map(|(_, child)| child.as_ref().map(Child::id))
            .collect()
    }

    /// The mounts whose virtiofsd ended since the last call, each with its index
    /// and how.
    pub fn newly_lost(&mut self) -> Vec<(usize, String, ExitStatus)> {
        let mut lost = Vec::new();
        for (i, (fs, slot)) in self.fs.iter_mut().enumerate() {
            if let Some(child) = slot {
                if let Ok(Some(status)) = child.try_wait() {
                    lost.push((i, fs.describe(), status));
                    *slot = None;
                }
            }
        }
        lost
    }

    /// A fresh virtiofsd for each of `indexes`, listening; one still running (its
    /// connection closed a moment ago) is stopped first.
    pub fn restart(&mut self, indexes: &[usize]) -> Result<()> {
        for &i in indexes {
            let Some((fs, slot)) = self.fs.get_mut(i) else {
                anyhow::bail!("this machine has no share number {i}");
            };
            if let Some(mut old) = slot.take() {
                stop_child(&mut old);
            }
            *slot = Some(start_virtiofsd(fs)?);
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        for (_, child) in &mut self.fs {
            if let Some(child) = child {
                stop_child(child);
            }
        }
        stop_child(&mut self.passt);
    }
}

/// A virtiofsd, in its namespace sandbox where the host allows one, else without
/// (said in the machine's log).
fn start_virtiofsd(fs: &FsDaemon) -> Result<Child> {
    await_virtiofsd(fs, spawn(&fs.argv, &fs.log, &fs.socket)?)
}

/// Wait for a started virtiofsd to listen; one that ended at once (no user
/// namespaces here?) is started again without its namespace sandbox.
fn await_virtiofsd(fs: &FsDaemon, child: Child) -> Result<Child> {
    let what = format!("virtiofsd for {}", fs.describe());
    match await_listening(&what, child, &fs.log, &fs.socket) {
        Ok(child) => Ok(child),
        Err(e) if e.exited => match fs.without_namespace() {
            Some(plain) => {
                eprintln!(
                    "supervisor: {what} could not start in its namespace sandbox (user namespaces are off here?); running it with --sandbox none (see {})",
                    fs.log.display()
                );
                let child = spawn(&plain.argv, &plain.log, &plain.socket)?;
                await_listening(&what, child, &plain.log, &plain.socket).map_err(|e| e.error)
            }
            None => Err(e.error),
        },
        Err(e) => Err(e.error),
    }
}

struct StartError {
    /// The daemon ended before it listened (rather than being too slow).
    exited: bool,
    error: anyhow::Error,
}

/// Start `argv` (logging to `log`), which is to listen on `socket`.
fn spawn(argv: &[String], log: &Path, socket: &Path) -> Result<Child> {
    // A socket file left from an earlier run would pass for this one's.
    let _ = std::fs::remove_file(socket);
    start_child(argv, log)
}

/// Wait until `child` listens on `socket`; one that fails to is stopped.
fn await_listening(
    what: &str,
    mut child: Child,
    log: &Path,
    socket: &Path,
) -> Result<Child, StartError> {
    let failed = |exited, error| StartError { exited, error };
    let deadline = Instant::now() + SOCKET_WAIT;
    let mut pause = crate::process::Backoff::up_to(POLL_CAP);
    // bind() makes the file, listen() comes after: a connect in between is refused.
    while !listening(socket) {
        match child.try_wait() {
            Ok(Some(status)) => {
                let error = anyhow::anyhow!(
                    "{what} exited ({status}) before opening its socket; see {}",
                    log.display()
                );
                return Err(failed(true, error));
            }
            Ok(None) => {}
            Err(e) => {
                stop_child(&mut child);
                return Err(failed(false, e.into()));
            }
        }
        if Instant::now() > deadline {
            stop_child(&mut child);
            let error = anyhow::anyhow!(
                "{what} did not open {} within {} s",
                socket.display(),
                SOCKET_WAIT.as_secs()
            );
            return Err(failed(false, error));
        }
        pause.sleep();
    }
    Ok(child)
}

/// Whether a UNIX stream socket bound at `path` accepts connections, from the
/// kernel's table (`__SO_ACCEPTCON` in its flags).
fn listening(path: &Path) -> bool {
    const ACCEPTING: u32 = 0x10000;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return path.exists();
    };
    let path = path.as_os_str().as_encoded_bytes();
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let flags = fields.nth(3).and_then(|f| u32::from_str_radix(f, 16).ok());
        fields.nth(3).is_some_and(|p| p.as_bytes() == path)
            && flags.is_some_and(|f| f & ACCEPTING != 0)
    })
}

/// Stop the passt of a run whose supervisor was killed before its VM connected:
/// passt had dropped root for `nobody`, which clears its parent-death signal, and
/// `--one-off` ends it only after a connection. Its command line must name the
/// run's folder, so that a pid used again by another process is left alone.
pub fn stop_leftover_passt(machine: &crate::machine::Machine) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(info) = crate::machine::RunInfo::load(machine) else {
        return;
    };
    if crate::process::pid_alive(info.supervisor_pid) {
        return;
    }
    let pid = info.passt_pid;
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let folder = info.runtime_dir.as_os_str().as_bytes();
    let names_run = !folder.is_empty() && cmdline.windows(folder.len()).any(|w| w == folder);
    if names_run && crate::process::signal(pid, libc::SIGKILL).is_ok() {
        crate::process::wait_gone(pid, Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::listening;
    use std::os::unix::net::{UnixDatagram, UnixListener};

    /// A socket file alone (bound, not listening) is not ready; a listener is.
    #[test]
    fn only_a_listening_socket_counts_as_ready() {
        let dir = tempfile::tempdir().unwrap();
        let bound = dir.path().join("bound.sock");
        let _datagram = UnixDatagram::bind(&bound).unwrap();
        assert!(bound.exists() && !listening(&bound));
        let ready = dir.path().join("ready.sock");
        assert!(!listening(&ready));
        let _listener = UnixListener::bind(&ready).unwrap();
        assert!(listening(&ready));
    }
}
