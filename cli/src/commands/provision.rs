//! `hvbox provision`: run the spec's provision steps again on the running machine.

use super::current_machine;
use crate::machine::lock::MachineLock;
use crate::machine::RunState;
use crate::provision;
use crate::spec::Spec;
use anyhow::{bail, Result};
use std::process::ExitCode;

pub fn run() -> Result<ExitCode> {
    let (project, machine) = current_machine()?;
    // Held while the steps run: no `halt` or `destroy` pulls the machine away
    // mid-step, and no second run interleaves with this one.
    let _lock = MachineLock::acquire(&machine, "provision", false)?;
    let spec = Spec::load_checked(&project.spec_path)?;
    let info = match machine.run_state() {
        RunState::Running(info) => info,
        RunState::NotCreated => {
            bail!("the machine is not created yet; `hvbox up` creates it and runs the provision steps")
        }
        RunState::Stopped => bail!(
            "the machine is stopped; `hvbox up` starts it (and runs the provision steps unless they completed before; `hvbox up --provision` runs them anyway)"
        ),
    };
    if spec.provision.is_empty() {
        println!("==> {} has no provision steps", project.spec_path.display());
        return Ok(ExitCode::SUCCESS);
    }
    provision::run_all(&project, &machine, &spec.provision, info.ssh_port)?;
    Ok(ExitCode::SUCCESS)
}
