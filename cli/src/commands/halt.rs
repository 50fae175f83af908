//! `hvbox halt [NAME…]`: each guest powers off (ACPI power button); a hard stop after
//! a timeout.

use super::select::{for_each, Need, Selection};
use crate::engine;
use crate::machine::lock::MachineLock;
use crate::machine::runtime::supervisor_alive;
use crate::machine::{Machine, RunInfo, RunState};
use crate::process::{signal, wait_gone};
use crate::progress::step;
use anyhow::{bail, Result};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(names: &[String], timeout: u64) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let targets = selection.many(names, true)?;
    for_each(&targets, |target| {
        let machine = &target.machine;
        let _lock = MachineLock::acquire(machine, "halt", false)?;
        match machine.run_state() {
            RunState::Running(info) => {
                step!("asking the guest to power off");
                stop(machine, &info, Duration::from_secs(timeout))?;
                step!("machine stopped");
            }
            RunState::Suspended => {
                machine.discard_state()?;
                step!("machine was suspended: its saved state is discarded; it is stopped");
            }
            other => step!("machine is {}", other.label()),
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Stop a running machine: graceful within `grace`, then forced. Returns once the
/// supervisor and its children are gone.
pub fn stop(machine: &Machine, info: &RunInfo, grace: Duration) -> Result<()> {
    let engine = engine::of_kind(info.engine)?;
    // Its socket goes with the machine's runtime folder: closed first, the shared
    // ssh connection is not left waiting on a guest that is gone.
    if let Ok(state) = machine.load_state() {
        crate::ssh::close_master(machine, &state);
    }
    if !grace.is_zero() {
        match engine.request_poweroff(&info.control_socket) {
            Ok(()) if wait_gone(info.supervisor_pid, grace) => return Ok(()),
            Ok(()) => eprintln!(
                "hvbox: the guest did not power off within {} s; stopping it",
                grace.as_secs()
            ),
            Err(e) => eprintln!("hvbox: could not ask the guest to power off ({e:#}); stopping it"),
        }
    }
    let _ = engine.hard_stop(&info.control_socket);
    if !wait_gone(info.supervisor_pid, Duration::from_secs(10)) {
        // Still held by the live supervisor, so these pids are still its own; its
        // children die with it (the VM by PDEATHSIG, passt when the VM is gone).
        if supervisor_alive(machine) {
            signal(info.supervisor_pid, libc::SIGKILL)?;
        }
        wait_gone(info.supervisor_pid, Duration::from_secs(5));
    }
    if supervisor_alive(machine) {
        bail!(
            "the machine's supervisor (pid {}) is still running; it may belong to another user (try with sudo)",
            info.supervisor_pid
        );
    }
    wait_gone(info.vm_pid, Duration::from_secs(5));
    wait_gone(info.passt_pid, Duration::from_secs(5));
    let _ = std::fs::remove_file(machine.file(crate::machine::runtime::RUN_FILE));
    Ok(())
}
