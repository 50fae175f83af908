//! `hvbox ssh [-- CMD…]`: a shell or a command in the machine; its exit status is ours.

use super::current_machine;
use crate::machine::RunState;
use anyhow::{bail, Result};
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

pub fn run(command: &[String]) -> Result<ExitCode> {
    let (_, machine) = current_machine()?;
    let info = match machine.run_state() {
        RunState::Running(info) => info,
        other => bail!("the machine is {}; run `hvbox up` first", other.label()),
    };
    let state = machine.load_state()?;
    let mut cmd = crate::ssh::command(&machine, &state, info.ssh_port);
    if command.is_empty() && std::io::stdin().is_terminal() {
        cmd.arg("-t");
    }
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    // exec: ssh's exit status, signals and terminal handling become ours.
    let err = cmd.exec();
    bail!("running ssh: {err} (is openssh-client installed?)")
}
