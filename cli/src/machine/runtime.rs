//! A running machine: the supervisor's processes and ports, in `run.json`.

use super::Machine;
use crate::process::pid_alive;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const RUN_FILE: &str = "run.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub supervisor_pid: u32,
    pub vm_pid: u32,
    pub passt_pid: u32,
    pub engine: String,
    pub ssh_port: u16,
    pub control_socket: PathBuf,
    pub console_socket: PathBuf,
    pub runtime_dir: PathBuf,
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
    Running(RunInfo),
}

impl RunState {
    pub fn label(&self) -> &'static str {
        match self {
            RunState::NotCreated => "not created",
            RunState::Stopped => "stopped",
            RunState::Running(_) => "running",
        }
    }
}

pub(super) fn run_state(machine: &Machine) -> RunState {
    if !machine.is_created() {
        return RunState::NotCreated;
    }
    match RunInfo::load(machine) {
        Ok(info) if pid_alive(info.supervisor_pid) => RunState::Running(info),
        // A supervisor that was killed leaves run.json behind: the machine is stopped.
        _ => RunState::Stopped,
    }
}
