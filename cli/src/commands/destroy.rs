//! `hvbox destroy [NAME…]`: stop machines and delete everything they own but the box
//! cache. Without names: every machine of the project, orphaned ones included.

use super::select::{for_each, Need, Selection};
use crate::machine::lock::MachineLock;
use crate::machine::{Machine, RunState};
use crate::progress::step;
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(names: &[String]) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let targets = selection.many(names, true)?;
    let result = for_each(&targets, |target| destroy(&target.machine));
    selection.project.prune_state_dir();
    result?;
    Ok(ExitCode::SUCCESS)
}

fn destroy(machine: &Machine) -> Result<()> {
    let _lock = MachineLock::acquire(machine, "destroy", false)?;
    let state = machine.load_state().ok();
    if let RunState::Running(info) = machine.run_state() {
        step!("stopping the machine");
        // The disk is about to be deleted: no need to wait for a clean shutdown.
        super::halt::stop(machine, &info, Duration::ZERO)?;
    }
    if let Some(state) = state {
        let _ = std::fs::remove_dir_all(machine.runtime_dir(&state.instance_id));
    }
    let snapshots = crate::machine::snapshots::list(machine).unwrap_or_default();
    if !snapshots.is_empty() {
        let bytes: u64 = snapshots.iter().map(|(_, b)| b).sum();
        step!(
            "deleting its {} snapshot(s) ({} on disk)",
            snapshots.len(),
            crate::spec::Size::from_bytes(bytes)
        );
    }
    if machine.dir.exists() {
        std::fs::remove_dir_all(&machine.dir)
            .with_context(|| format!("removing {}", machine.dir.display()))?;
        step!("machine destroyed");
    } else {
        step!("machine is not created");
    }
    Ok(())
}
