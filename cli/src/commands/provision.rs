//! `hvbox provision [NAME…]`: run the spec's provision steps again on running
//! machines, one after another.

use super::select::{for_each, Need, Selection};
use crate::machine::lock::MachineLock;
use crate::machine::RunState;
use crate::progress::step;
use crate::provision;
use anyhow::{bail, Result};
use std::process::ExitCode;

pub fn run(names: &[String]) -> Result<ExitCode> {
    let selection = Selection::load(Need::Settings)?;
    let targets = selection.many(names, false)?;
    for_each(&targets, |target| {
        let machine = &target.machine;
        // Held while the steps run: no `halt` or `destroy` pulls the machine away
        // mid-step, and no second run interleaves with this one.
        let _lock = MachineLock::acquire(machine, "provision", false)?;
        let spec = target.spec()?;
        let info = match machine.run_state() {
            RunState::Running(info) => info,
            RunState::NotCreated => bail!(
                "{} is not created yet; {} creates it and runs the provision steps",
                target.subject(),
                target.hint("up")
            ),
            RunState::Suspended => bail!(
                "{} is suspended; {} continues it and runs the provision steps unless they completed before",
                target.subject(),
                target.hint("up")
            ),
            RunState::Stopped => bail!(
                "{} is stopped; {} starts it (and runs the provision steps unless they completed before; `--provision` runs them anyway)",
                target.subject(),
                target.hint("up")
            ),
        };
        if spec.provision.is_empty() {
            step!(
                "no provision steps in {}",
                selection.project.spec_path.display()
            );
            return Ok(());
        }
        provision::run_all(&selection.project, machine, &spec.provision, info.ssh_port)
    })?;
    Ok(ExitCode::SUCCESS)
}
