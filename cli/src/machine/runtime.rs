//! A running machine: the supervisor's processes and ports, in `run.json`.

use super::Machine;
use crate::engine::EngineKind;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const RUN_FILE: &str = "run.json";
/// Held (flock) by the supervisor for its whole life: a lock that is held means a
/// live supervisor, whatever became of the pids in run.json.
pub const SUPERVISOR_LOCK: &str = "supervisor.lock";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub supervisor_pid: u32,
    pub vm_pid: u32,
    pub passt_pid: u32,
    /// One per mounted folder, while it runs.
    #[serde(default)]
    pub virtiofsd_pids: Vec<u32>,
    /// The host folders the guest mounts, and where.
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// Mounts whose virtiofsd ended while the VM ran (`host -> guest`).
    #[serde(default)]
    pub lost_mounts: Vec<String>,
    pub engine: EngineKind,
    pub ssh_port: u16,
    pub control_socket: PathBuf,
    pub console_socket: PathBuf,
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    pub host: PathBuf,
    pub guest: PathBuf,
}

impl RunInfo {
    pub fn load(machine: &Machine) -> Result<RunInfo> {
        let path = machine.file(RUN_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    pub fn save(&self, machine: &Machine) -> Result<()> {
        super::write_atomic(
            &machine.file(RUN_FILE),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }
}

#[derive(Debug, Clone)]
pub enum RunState {
    NotCreated,
    Stopped,
    /// Stopped with its state saved (`hvbox suspend`): `up` continues it.
    Suspended,
    Running(RunInfo),
}

impl RunState {
    pub fn label(&self) -> &'static str {
        match self {
            RunState::NotCreated => "not created",
            RunState::Stopped => "stopped",
            RunState::Suspended => "suspended",
            RunState::Running(_) => "running",
        }
    }
}

pub(super) fn run_state(machine: &Machine) -> RunState {
    if !machine.is_created() {
        return RunState::NotCreated;
    }
    // A supervisor that was killed leaves run.json behind (and its pids may since
    // belong to other programs): without a live supervisor the machine is stopped.
    if let Some(info) = live_run(machine) {
        RunState::Running(info)
    } else if machine.is_suspended() {
        RunState::Suspended
    } else {
        RunState::Stopped
    }
}

/// How long a supervisor may hold its lock without a run file before it counts as
/// not running: it is starting its helpers or in its last steps.
const SETTLE: Duration = Duration::from_secs(3);

/// The run file of a live supervisor. A supervisor removes run.json before it
/// exits, so one that holds its lock without the file is ending (or starting): wait
/// for it to settle, so that "stopped" means no process of the machine is left and
/// a new `up` can take the lock.
fn live_run(machine: &Machine) -> Option<RunInfo> {
    let deadline = Instant::now() + SETTLE;
    loop {
        if !supervisor_alive(machine) {
            return None;
        }
        if let Ok(info) = RunInfo::load(machine) {
            return Some(info);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Take the supervisor lock for this process's lifetime (the fd is leaked on
/// purpose and closed on exec, so children do not hold it).
pub fn hold_supervisor_lock(machine: &Machine) -> Result<()> {
    let path = machine.file(SUPERVISOR_LOCK);
    let file = super::private::create_file(
        &path,
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true),
    )?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!("another supervisor already runs this machine");
    }
    std::mem::forget(file);
    Ok(())
}

/// True while some process holds the supervisor lock.
pub fn supervisor_alive(machine: &Machine) -> bool {
    let Ok(file) = std::fs::File::open(machine.file(SUPERVISOR_LOCK)) else {
        return false;
    };
    // SAFETY: flock on a file descriptor we own; released when `file` drops.
    let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    !free
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created_machine(dir: &std::path::Path) -> Machine {
        let machine = Machine::new("m", dir.to_path_buf());
        std::fs::write(machine.state_path(), "{}").unwrap();
        machine
    }

    /// Holds the supervisor lock as a supervisor does (flock locks belong to an open
    /// file, so this conflicts with the check's own open) until the file drops.
    fn hold_lock(machine: &Machine) -> std::fs::File {
        let file = std::fs::File::create(machine.file(SUPERVISOR_LOCK)).unwrap();
        // SAFETY: flock on a file descriptor we own.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        file
    }

    #[test]
    fn a_supervisor_in_its_last_steps_is_not_yet_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let machine = created_machine(dir.path());
        let lock = hold_lock(&machine);
        let ender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(lock);
        });
        let asked = Instant::now();
        let state = machine.run_state();
        let waited = asked.elapsed();
        ender.join().unwrap();
        assert_eq!(state.label(), "stopped");
        assert!(
            waited >= Duration::from_millis(250),
            "stopped after {waited:?}, while the lock was still held"
        );
        assert!(
            waited < SETTLE,
            "waited {waited:?} for a lock that was let go"
        );
    }

    #[test]
    fn a_lock_without_a_run_file_counts_as_stopped_after_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let machine = created_machine(dir.path());
        let _lock = hold_lock(&machine);
        assert!(supervisor_alive(&machine));
        assert_eq!(machine.run_state().label(), "stopped");
    }

    #[test]
    fn a_run_file_without_a_live_supervisor_is_stopped_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let machine = created_machine(dir.path());
        std::fs::write(machine.file(RUN_FILE), "{}").unwrap();
        let asked = Instant::now();
        assert_eq!(machine.run_state().label(), "stopped");
        assert!(asked.elapsed() < Duration::from_millis(100));
    }
}
