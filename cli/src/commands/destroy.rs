//! `hvbox destroy`: stop the machine and delete everything it owns but the box cache.

use super::current_machine;
use crate::machine::lock::MachineLock;
use crate::machine::RunState;
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Duration;

pub fn run() -> Result<ExitCode> {
    let (project, machine) = current_machine()?;
    let _lock = MachineLock::acquire(&machine, "destroy", false)?;
    let state = machine.load_state().ok();
    if let RunState::Running(info) = machine.run_state() {
        println!("==> stopping the machine");
        // The disk is about to be deleted: no need to wait for a clean shutdown.
        super::halt::stop(&machine, &info, Duration::ZERO)?;
    }
    if let Some(state) = state {
        let _ = std::fs::remove_dir_all(machine.runtime_dir(&state.instance_id));
    }
    if machine.dir.exists() {
        std::fs::remove_dir_all(&machine.dir)
            .with_context(|| format!("removing {}", machine.dir.display()))?;
        println!("==> machine destroyed");
    } else {
        println!("==> machine is not created");
    }
    project.prune_state_dir();
    Ok(ExitCode::SUCCESS)
}
