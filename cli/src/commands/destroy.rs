//! `hvbox destroy [NAME…] [--force]`: stop machines and delete everything they own
//! but the box cache. Without names: every machine of the project, orphaned ones
//! included. On a terminal it first asks, naming what goes; without one it needs
//! `--force`.

use super::select::{for_each, Need, Selection, Target};
use crate::machine::lock::MachineLock;
use crate::machine::{snapshots, Machine, RunState};
use crate::progress::step;
use crate::spec::Size;
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(names: &[String], force: bool) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let targets = selection.many(names, true)?;
    let doomed: Vec<&Target> = targets.iter().filter(|t| t.machine.dir.exists()).collect();
    if !force && !doomed.is_empty() {
        let (what, goes) = describe(&selection, &doomed);
        let question = format!("Destroy {what}? This deletes {goes}; the box cache stays.");
        let refusal = format!("not destroying {what} without asking");
        if !super::confirm::ask(&question, &refusal, "--force (-f)")? {
            eprintln!("hvbox: nothing destroyed");
            return Ok(ExitCode::FAILURE);
        }
    }
    let result = for_each(&targets, |target| destroy(&target.machine));
    selection.project.prune_state_dir();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// "the machine `web` (running, 1 snapshot) in /p" and "its disk, keys, logs and
/// snapshots (1.2 GiB on disk)": each machine with its state and snapshots, and the
/// space the whole frees.
fn describe(selection: &Selection, doomed: &[&Target]) -> (String, String) {
    let mut bytes = 0;
    let machines: Vec<String> = doomed
        .iter()
        .map(|t| {
            let kept = snapshots::list(&t.machine).unwrap_or_default();
            bytes +=
                snapshots::allocated(&t.machine.dir) + kept.iter().map(|(_, b)| b).sum::<u64>();
            let mut about = t.machine.run_state().label().to_string();
            match kept.len() {
                0 => {}
                1 => about.push_str(", 1 snapshot"),
                n => about.push_str(&format!(", {n} snapshots")),
            }
            format!("`{}` ({about})", t.name())
        })
        .collect();
    let (what, its) = match machines.as_slice() {
        [one] => (format!("the machine {one}"), "its"),
        all => (
            format!("{} machines: {}", all.len(), all.join(", ")),
            "their",
        ),
    };
    (
        format!("{what} in {}", selection.project.root.display()),
        format!(
            "{its} disk, keys, logs and snapshots ({} on disk)",
            hvbox_boxes::format_bytes(bytes)
        ),
    )
}

fn destroy(machine: &Machine) -> Result<()> {
    let _lock = MachineLock::acquire(machine, "destroy", false)?;
    let state = machine.load_state().ok();
    if let RunState::Running(info) = machine.run_state() {
        step!("stopping the machine");
        // The disk is about to be deleted: no need to wait for a clean shutdown.
        super::halt::stop(machine, &info, Duration::ZERO)?;
    }
    crate::daemons::stop_leftover_passt(machine);
    if let Some(state) = state {
        // A machine whose supervisor was killed leaves its shared ssh connection
        // (and socket) behind: no halt closed it.
        crate::ssh::close_master(machine, &state);
        let _ = std::fs::remove_dir_all(machine.runtime_dir(&state.instance_id));
    }
    let snapshots = snapshots::list(machine).unwrap_or_default();
    if !snapshots.is_empty() {
        let bytes: u64 = snapshots.iter().map(|(_, b)| b).sum();
        step!(
            "deleting its {} snapshot(s) ({} on disk)",
            snapshots.len(),
            Size::from_bytes(bytes)
        );
    }
    crate::ssh_config_file::forget(machine);
    if machine.dir.exists() {
        std::fs::remove_dir_all(&machine.dir)
            .with_context(|| format!("removing {}", machine.dir.display()))?;
        step!("machine destroyed");
    } else {
        step!("machine is not created");
    }
    Ok(())
}
