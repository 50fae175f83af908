//! `hvbox reload [NAME…]`: halt each machine if it runs, then `up` it again. The boot
//! reads the kernel, initrd and command line from the disk anew and rewrites a
//! changed seed.

use super::in_parallel::{self, for_each_parallel};
use super::select::{Need, Selection};
use super::{halt, up};
use crate::args::UpArgs;
use crate::machine::lock::MachineLock;
use crate::machine::RunState;
use crate::progress::step;
use anyhow::Result;
use std::process::ExitCode;
use std::time::Duration;

/// As `hvbox halt`'s default: the guest's time to power off before a hard stop.
const HALT_GRACE: Duration = Duration::from_secs(90);

pub fn run(args: &UpArgs) -> Result<ExitCode> {
    // The whole spec is read first: one that would stop the `up` must not cost the
    // running machines first.
    let selection = Selection::load(Need::Settings)?;
    let targets = selection.many(&args.names, false)?;
    for_each_parallel(&targets, in_parallel::jobs(args.jobs), |target| {
        // One lock over both halves, so no other command slips in between.
        let _lock = MachineLock::acquire(&target.machine, "reload", true)?;
        match target.machine.run_state() {
            RunState::Running(info) => {
                step!("asking the guest to power off");
                halt::stop(&target.machine, &info, HALT_GRACE)?;
                step!("machine stopped");
            }
            // A reload boots the disk's boot files afresh, which a resume would not.
            RunState::Suspended => {
                step!("discarding the saved state: reload boots the machine fresh");
                target.machine.discard_state()?;
            }
            _ => {}
        }
        up::start(&selection, target, args)
    })?;
    Ok(ExitCode::SUCCESS)
}
