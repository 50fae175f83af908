//! A running machine: the supervisor's processes and ports, in `run.json`.

use super::Machine;
use crate::engine::EngineKind;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

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
    match RunInfo::load(machine) {
        Ok(info) if supervisor_alive(machine) => RunState::Running(info),
        _ if machine.is_suspended() => RunState::Suspended,
        // A supervisor that was killed leaves run.json behind (and its pids may since
        // belong to other programs): the machine is stopped.
        _ => RunState::Stopped,
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
