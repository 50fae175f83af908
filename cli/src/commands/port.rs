//! `hvbox port [NAME] [--json]`: a machine's forwarded ports, those hvbox.yaml
//! declares (passt's) and those forwarded automatically because the guest listens
//! on them (see [`crate::auto_ports`]); `status` and `list` show the same.

use super::select::{Need, Selection, Target};
use super::table::print_table;
use crate::auto_ports::{self, AutoForward};
use crate::machine::RunState;
use crate::spec::{PortForward, Protocol};
use anyhow::Result;
use std::process::ExitCode;

/// A machine's forwards: while it runs, those its run was started with.
pub(super) struct Forwards {
    declared: Vec<PortForward>,
    auto: Vec<AutoForward>,
    /// Whether automatic forwarding is on (for the run, or per the spec).
    pub auto_on: bool,
}

impl Forwards {
    pub fn of(target: &Target, run_state: &RunState) -> Forwards {
        let spec = target.spec().ok();
        let mut forwards = Forwards {
            declared: spec.map(|s| s.forwards()).unwrap_or_default(),
            auto: Vec::new(),
            auto_on: spec.is_some_and(|s| s.auto_forward()),
        };
        if let RunState::Running(info) = run_state {
            // What passt was given, though the spec may have changed since.
            if let Ok(plan) = crate::supervisor::launch_plan(&target.machine) {
                if let Some(declared) = plan.forwards {
                    forwards.declared = declared;
                    forwards.auto_on = plan.auto_forward;
                }
            }
            forwards.auto = auto_ports::load(&info.runtime_dir);
        }
        forwards
    }

    /// Each forward as `status --json`, `list --json` and `port --json` show it.
    pub fn json(&self) -> Vec<serde_json::Value> {
        let declared = self.declared.iter().map(|p| {
            serde_json::json!({
                "address": p.address,
                "host": p.host.0,
                "guest": p.guest.0,
                "protocol": p.protocol,
                "kind": "declared",
            })
        });
        let auto = self.auto.iter().map(|f| {
            serde_json::json!({
                "address": "127.0.0.1",
                "host": f.host,
                "guest": f.guest,
                "protocol": "tcp",
                "kind": "auto",
                "guest_address": f.guest_address,
            })
        });
        declared.chain(auto).collect()
    }

    /// `[host, guest, kind]` of each.
    fn cells(&self) -> Vec<[String; 3]> {
        let declared = self.declared.iter().map(|p| {
            [
                format!("{}:{}", p.address, p.host.0),
                format!("{}/{}", p.guest.0, protocol(p.protocol)),
                "declared".to_string(),
            ]
        });
        let auto = self.auto.iter().map(|f| {
            let kind = match f.host == f.guest {
                true => "auto".to_string(),
                false => format!("auto ({} is taken on the host)", f.guest),
            };
            [
                format!("127.0.0.1:{}", f.host),
                format!("{}/tcp", f.guest),
                kind,
            ]
        });
        declared.chain(auto).collect()
    }

    /// "127.0.0.1:8080->80/tcp, 127.0.0.1:8000->8000/tcp (auto)", or "-".
    pub fn text(&self) -> String {
        let all: Vec<String> = self
            .cells()
            .into_iter()
            .map(|[host, guest, kind]| match kind.as_str() {
                "declared" => format!("{host}->{guest}"),
                _ => format!("{host}->{guest} (auto)"),
            })
            .collect();
        match all.is_empty() {
            true => "-".into(),
            false => all.join(", "),
        }
    }

    /// `up`'s lines about them, once the machine is up; `port` is the command
    /// that lists them (`hvbox port NAME` among several machines).
    pub fn announce(&self, port: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .declared
            .iter()
            .map(|p| {
                format!(
                    "forwarded port: {}:{} -> {}/{}",
                    p.address,
                    p.host.0,
                    p.guest.0,
                    protocol(p.protocol)
                )
            })
            .collect();
        lines.push(match self.auto_on {
            true => format!("TCP ports the guest listens on are forwarded to the same port on 127.0.0.1 as they open (another when it is taken): {port} lists them"),
            false => "automatic port forwarding is off (`auto: false` in hvbox.yaml's `ports`)".to_string(),
        });
        lines
    }
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

pub fn run(name: Option<&str>, json: bool) -> Result<ExitCode> {
    let target = Selection::load(Need::Names)?.one(name, "port")?;
    let run_state = target.machine.run_state();
    let forwards = Forwards::of(&target, &run_state);
    if json {
        let value = serde_json::json!({
            "name": target.name(),
            "state": run_state.label(),
            "auto_forward": forwards.auto_on,
            "forwards": forwards.json(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let cells = forwards.cells();
    if !cells.is_empty() {
        print_table(["HOST", "GUEST", "KIND"], &cells);
    }
    if !matches!(run_state, RunState::Running(_)) {
        eprintln!(
            "hvbox: {} is {}: its ports are forwarded while it runs ({} starts it)",
            target.subject(),
            run_state.label(),
            target.hint("up")
        );
    } else if cells.is_empty() {
        eprintln!("hvbox: no forwarded ports yet");
    }
    if !forwards.auto_on {
        eprintln!(
            "hvbox: automatic port forwarding is off (`auto: false` in hvbox.yaml's `ports`)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Port;

    #[test]
    fn list_and_up_show_both_kinds() {
        let forwards = Forwards {
            declared: vec![PortForward {
                host: Port(8080),
                guest: Port(80),
                protocol: Protocol::Tcp,
                address: "127.0.0.1".parse().unwrap(),
            }],
            auto: vec![AutoForward {
                host: 41234,
                guest: 3000,
                guest_address: "::1".parse().unwrap(),
            }],
            auto_on: true,
        };
        assert_eq!(
            forwards.text(),
            "127.0.0.1:8080->80/tcp, 127.0.0.1:41234->3000/tcp (auto)"
        );
        let lines = forwards.announce("`hvbox port web`");
        assert_eq!(lines[0], "forwarded port: 127.0.0.1:8080 -> 80/tcp");
        assert!(
            lines[1].ends_with(": `hvbox port web` lists them"),
            "{lines:?}"
        );
        let off = Forwards {
            declared: Vec::new(),
            auto: Vec::new(),
            auto_on: false,
        };
        assert_eq!(off.text(), "-");
        assert_eq!(
            off.announce("`hvbox port`"),
            ["automatic port forwarding is off (`auto: false` in hvbox.yaml's `ports`)"]
        );
    }
}
