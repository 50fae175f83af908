//! `hvbox reload`: halt the machine if it runs, then `up` it again. The boot reads
//! the kernel, initrd and command line from the disk anew and rewrites a changed seed.

use super::{current_machine, halt, up};
use crate::args::UpArgs;
use crate::machine::lock::MachineLock;
use crate::machine::RunState;
use crate::spec::Spec;
use anyhow::Result;
use std::process::ExitCode;
use std::time::Duration;

/// As `hvbox halt`'s default: the guest's time to power off before a hard stop.
const HALT_GRACE: Duration = Duration::from_secs(90);

pub fn run(args: &UpArgs) -> Result<ExitCode> {
    let (project, machine) = current_machine()?;
    // One lock over both halves, so no other command slips in between.
    let _lock = MachineLock::acquire(&machine, "reload", true)?;
    // A spec that would stop the `up` must not cost the running machine first.
    Spec::load_checked(&project.spec_path)?;
    if let RunState::Running(info) = machine.run_state() {
        println!("==> asking the guest to power off");
        halt::stop(&machine, &info, HALT_GRACE)?;
        println!("==> machine stopped");
    }
    up::start(&project, &machine, args)
}
