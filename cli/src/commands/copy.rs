//! `hvbox copy [MACHINE:]SRC… [MACHINE:]DST`: files and folders (recursively) between
//! the host and a machine, over its ssh with the pinned host key (`scp -r`, as
//! `limactl copy` does). `:PATH` names a path in the project's only machine; a
//! relative guest path is relative to the login user's home.

use super::select::{Need, Selection, Target};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// One operand: a host path, or a path in a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Host(String),
    /// The machine's name (`None`: the project's only machine) and the path in it.
    Guest(Option<String>, String),
}

/// `NAME:PATH` is in machine NAME when the project has a machine of that name, and
/// `:PATH` in its only machine; anything else is a host path (write `./a:b` for a
/// host file whose name has a colon).
fn place(operand: &str, machines: &[String]) -> Place {
    match operand.split_once(':') {
        Some(("", path)) => Place::Guest(None, path.to_string()),
        Some((name, path)) if !name.contains('/') && machines.iter().any(|m| m == name) => {
            Place::Guest(Some(name.to_string()), path.to_string())
        }
        _ => Place::Host(operand.to_string()),
    }
}

pub fn run(operands: &[String]) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let names: Vec<String> = selection
        .many(&[], false)?
        .iter()
        .map(|t| t.machine.name.clone())
        .collect();
    let places: Vec<Place> = operands.iter().map(|o| place(o, &names)).collect();
    let mut guests = places.iter().filter_map(|p| match p {
        Place::Guest(name, _) => Some(name.as_deref()),
        Place::Host(_) => None,
    });
    let Some(first) = guests.next() else {
        bail!("none of the paths is in a machine: write MACHINE:PATH (or :PATH for the project's only machine) for the machine's side");
    };
    if guests.any(|other| other != first) {
        bail!("every machine path must be in the same machine; copy between two machines through the host");
    }
    let target = selection.one(first, "copy")?;
    let machine = &target.machine;
    let info = target.running()?;
    let (sources, dest) = places.split_at(places.len() - 1);
    for source in sources {
        if let Place::Host(path) = source {
            if std::fs::symlink_metadata(path).is_err() {
                bail!("{path} does not exist on the host");
            }
        }
    }
    let state = machine.load_state()?;
    let status = scp(&target, &state, info.ssh_port, sources, &dest[0])?;
    if !status.success() {
        bail!(
            "copying failed ({status}); scp said why above{}",
            if matches!(dest[0], Place::Guest(..)) {
                ""
            } else {
                " (a guest path that does not exist, say)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn scp(
    target: &Target,
    state: &crate::machine::MachineState,
    port: u16,
    sources: &[Place],
    dest: &Place,
) -> Result<std::process::ExitStatus> {
    let mut cmd = std::process::Command::new("scp");
    cmd.arg("-r");
    for (name, value) in crate::ssh::options(&target.machine, state, port) {
        cmd.arg("-o").arg(format!("{name}={value}"));
    }
    for place in sources.iter().chain([dest]) {
        match place {
            // HostName in the options says where; this only marks the side.
            Place::Guest(_, path) => cmd.arg(format!("127.0.0.1:{path}")),
            // `--` cannot go between operands: a host path that starts with `-`
            // becomes `./-…`.
            Place::Host(path) if path.starts_with('-') => cmd.arg(Path::new(".").join(path)),
            Place::Host(path) => cmd.arg(path),
        };
    }
    cmd.status()
        .context("running scp (is openssh-client installed?)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_are_machine_paths_only_where_a_machine_has_that_name() {
        let machines = vec!["web".to_string(), "db".to_string()];
        let p = |o: &str| place(o, &machines);
        assert_eq!(
            p("web:/etc/hosts"),
            Place::Guest(Some("web".into()), "/etc/hosts".into())
        );
        assert_eq!(p(":notes.txt"), Place::Guest(None, "notes.txt".into()));
        assert_eq!(p("db:"), Place::Guest(Some("db".into()), String::new()));
        assert_eq!(p("cache:x"), Place::Host("cache:x".into()));
        assert_eq!(p("./web:x"), Place::Host("./web:x".into()));
        assert_eq!(p("src/main.rs"), Place::Host("src/main.rs".into()));
    }
}
