//! `hvbox ssh-config [NAME…]`: machines as Host blocks for ~/.ssh/config, with the same
//! options `hvbox ssh` uses (one list in crate::ssh), so `ssh hvbox-PROJECT-NAME`
//! connects with the machine's key and pinned host key. `--include`: the one line
//! that reads the ssh_config every boot writes, for every machine of every project.

use super::select::{Need, Selection, Target};
use crate::machine::RunState;
use anyhow::{bail, Result};
use std::io::IsTerminal;
use std::process::ExitCode;

/// A machine that is not running has no port: a named one is an error; without
/// names, the running machines are printed and the others noted in comments.
pub fn run(names: &[String]) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let targets = selection.many(names, false)?;
    let mut printed = 0;
    let mut skipped = Vec::new();
    for target in &targets {
        let RunState::Running(info) = target.machine.run_state() else {
            skipped.push(target);
            continue;
        };
        if printed > 0 {
            println!();
        }
        let machine = &target.machine;
        let state = machine.load_state()?;
        println!(
            "# hvbox machine `{}` of {}; the port changes at every `hvbox up`",
            machine.name,
            selection.project.spec_path.display()
        );
        // Its own file is refreshed too (a machine booted by an older hvbox has none).
        let alias = match crate::ssh_config_file::write(machine, &state, info.ssh_port) {
            Ok(alias) => alias,
            Err(e) => {
                eprintln!("hvbox: warning: {e:#}");
                crate::ssh_config_file::alias(machine)
            }
        };
        println!("Host {alias}");
        for (name, value) in crate::ssh::options(machine, &state, info.ssh_port) {
            println!("  {name} {value}");
        }
        printed += 1;
    }
    match (skipped.as_slice(), printed) {
        ([], _) => {}
        ([only], 0) if targets.len() == 1 => bail!(
            "{} is {}; {} first (its ssh port is chosen at every boot)",
            only.subject(),
            only.machine.run_state().label(),
            only.hint("up")
        ),
        (_, 0) => bail!(
            "no machine is running ({}); `hvbox up` first (ssh ports are chosen at every boot)",
            states(&skipped)
        ),
        _ if !names.is_empty() => bail!(
            "not running, so left out: {}; `hvbox up` them first",
            states(&skipped)
        ),
        _ => println!("\n# not running, so left out: {}", states(&skipped)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The `Include` line; on a terminal, where it goes.
pub fn include() -> Result<ExitCode> {
    println!("{}", crate::ssh_config_file::include_line());
    if std::io::stdout().is_terminal() {
        eprintln!("hvbox: put this line near the top of ~/.ssh/config, before any Host or Match line (ssh reads a line after one only for the hosts it matches); then `ssh HOST`, scp and rsync reach each machine under the Host name `hvbox ssh-config` prints, across boots");
    }
    Ok(ExitCode::SUCCESS)
}

/// "web: stopped, db: not created".
fn states(targets: &[&Target]) -> String {
    targets
        .iter()
        .map(|t| format!("{}: {}", t.name(), t.machine.run_state().label()))
        .collect::<Vec<_>>()
        .join(", ")
}
