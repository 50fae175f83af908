//! `hvbox suspend [NAME…]`: save each running machine's whole state into its folder
//! and stop its processes; `up` (or `resume`) continues it where it was.

use super::select::{for_each, Need, Selection, Target};
use crate::engine;
use crate::guest_shares::GuestShares;
use crate::machine::lock::MachineLock;
use crate::machine::suspended::Suspended;
use crate::machine::{Machine, RunInfo, RunState};
use crate::process::{signal, wait_gone};
use crate::progress::step;
use anyhow::{bail, Context, Result};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub fn run(names: &[String]) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let targets = selection.many(names, false)?;
    for_each(&targets, |target| {
        let _lock = MachineLock::acquire(&target.machine, "suspend", false)?;
        match target.machine.run_state() {
            RunState::Running(info) => suspend(target, &info),
            RunState::Suspended => {
                step!("machine is already suspended");
                Ok(())
            }
            other => {
                step!("machine is {}; nothing to suspend", other.label());
                Ok(())
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn suspend(target: &Target, info: &RunInfo) -> Result<()> {
    let machine = &target.machine;
    let Some(config) = crate::supervisor::launch_config(machine)? else {
        bail!("{} was started by an older hvbox, which did not record what a suspend needs; `hvbox halt` it, or `hvbox reload` and suspend then", target.subject());
    };
    let engine = engine::of_kind(info.engine)?;
    let shares = GuestShares::new(machine, info, engine.as_ref(), config.filesystems.clone())?;
    let record = Suspended::new(info.engine, engine.state_version(), config);
    let started = Instant::now();
    if shares.needed() {
        step!("unmounting the shared folders in the guest and unplugging their devices");
        shares.detach()?;
    }
    // The shared ssh connection would hang on a frozen guest, its socket gone.
    if let Ok(state) = machine.load_state() {
        crate::ssh::close_master(machine, &state);
    }
    step!(
        "saving the machine's state ({} of guest memory at most) into {}",
        crate::spec::Size::from_bytes(record.config.memory),
        machine.saved_state().display()
    );
    let saved = machine.new_state_file().and_then(|(tmp, file)| {
        match engine.suspend(&info.control_socket, &file) {
            Ok(()) => Ok((tmp, file)),
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    });
    let (tmp, file) = match saved {
        Ok(saved) => saved,
        Err(e) if shares.needed() => {
            return Err(match shares.attach() {
                Ok(()) => e.context("the machine was not suspended and runs on, its shared folders mounted again"),
                Err(back) => e.context(format!("the machine was not suspended and runs on, but its shared folders could not be put back ({back:#}); `hvbox reload` mounts them again")),
            });
        }
        Err(e) => return Err(e.context("the machine was not suspended and runs on")),
    };
    machine.keep_state(&tmp, file, record)?;
    wait_for_end(machine, info)?;
    machine
        .suspended()?
        .context("the saved state's record is gone")?;
    // What the state takes on disk: the builtin engine leaves zero pages as holes.
    let on_disk = std::fs::metadata(machine.saved_state())
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .context("reading the saved state's size")?;
    step!(
        "machine suspended in {:.1} s: {} on disk",
        started.elapsed().as_secs_f64(),
        hvbox_boxes::format_bytes(on_disk)
    );
    Ok(())
}

/// The engine ends after the save; the supervisor then stops passt and virtiofsd.
fn wait_for_end(machine: &Machine, info: &RunInfo) -> Result<()> {
    if wait_gone(info.supervisor_pid, Duration::from_secs(30)) {
        return Ok(());
    }
    eprintln!("hvbox: the engine did not end after saving; stopping it");
    if crate::machine::runtime::supervisor_alive(machine) {
        signal(info.supervisor_pid, libc::SIGKILL)?;
    }
    if !wait_gone(info.supervisor_pid, Duration::from_secs(10)) {
        bail!(
            "the machine's supervisor (pid {}) is still running",
            info.supervisor_pid
        );
    }
    Ok(())
}
