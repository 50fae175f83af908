//! `hvbox ssh [NAME] [-- CMD…]`: a shell or a command in a machine; its exit status
//! is ours.

use super::select::{Need, Selection};
use crate::machine::RunState;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::process::ExitCode;

/// ssh's own failure status (connection, authentication, host key).
const SSH_FAILED: i32 = 255;

pub fn run(name: Option<&str>, command: &[String]) -> Result<ExitCode> {
    let target = Selection::load(Need::Names)?.one(name, "ssh")?;
    let machine = &target.machine;
    let info = match machine.run_state() {
        RunState::Running(info) => info,
        other => bail!(
            "{} is {}; run {} first",
            target.subject(),
            other.label(),
            target.hint("up")
        ),
    };
    let state = machine.load_state()?;
    let mut cmd = crate::ssh::command(machine, &state, info.ssh_port);
    if command.is_empty() && std::io::stdin().is_terminal() {
        cmd.arg("-t");
    }
    if !command.is_empty() {
        cmd.arg("--").args(command);
    }
    // Not exec'd: a refused host key gets hvbox's explanation below. (An interactive
    // session's terminal is raw, so Ctrl-C reaches the guest, not us.)
    let status = cmd
        .status()
        .context("running ssh (is openssh-client installed?)")?;
    let code = status.code().unwrap_or(SSH_FAILED);
    if code == SSH_FAILED && crate::ssh::host_key_refused(machine, &state, info.ssh_port) {
        bail!(
            "the guest presented an ssh host key other than the one hvbox generated for it and pinned in {}; ssh refused to connect. The guest's host keys were replaced, or something else answers on 127.0.0.1:{}. If you replaced the keys yourself, `hvbox destroy` and `hvbox up` make a new machine with a new pinned key",
            machine.known_hosts().display(),
            info.ssh_port
        );
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
