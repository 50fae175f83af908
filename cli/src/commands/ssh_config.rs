//! `hvbox ssh-config`: the machine as a Host block for ~/.ssh/config, with the same
//! options `hvbox ssh` uses (one list in crate::ssh), so `ssh hvbox-NAME` connects
//! with the machine's key and pinned host key.

use super::current_machine;
use crate::machine::RunState;
use anyhow::{bail, Result};
use std::process::ExitCode;

pub fn run() -> Result<ExitCode> {
    let (project, machine) = current_machine()?;
    let info = match machine.run_state() {
        RunState::Running(info) => info,
        other => bail!(
            "the machine is {}; `hvbox up` first (its ssh port is chosen at every boot)",
            other.label()
        ),
    };
    let state = machine.load_state()?;
    println!(
        "# hvbox machine `{}` of {}; the port changes at every `hvbox up`",
        machine.name,
        project.spec_path.display()
    );
    println!("Host {}", crate::ssh::host_alias(&machine));
    for (name, value) in crate::ssh::options(&machine, &state, info.ssh_port) {
        println!("  {name} {value}");
    }
    Ok(ExitCode::SUCCESS)
}
