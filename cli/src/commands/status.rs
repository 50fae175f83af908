//! `hvbox status [NAME…] [--json]`: a table of the machines (or a JSON array), in the
//! spec's order, then machine folders the spec no longer names.

use super::box_fetch;
use super::port::Forwards;
use super::select::{Need, Selection, Target};
use super::table::print_table;
use crate::engine;
use crate::machine::suspended::Suspended;
use crate::machine::{MachineState, RunInfo, RunState};
use crate::spec::SPEC_FILE;
use anyhow::Result;
use std::process::ExitCode;

/// What `status` (and `list`) shows of one machine.
pub(super) struct Row {
    pub name: String,
    run_state: RunState,
    orphaned: bool,
    state: Option<MachineState>,
    hostname: Option<String>,
    box_name: Option<String>,
    /// What holds the guest's disk I/O (a disk full), as the engine says.
    paused: Vec<String>,
    /// The saved state of a suspended machine.
    suspended: Option<Suspended>,
    /// Declared and automatic forwards.
    forwards: Forwards,
}

impl Row {
    pub fn new(selection: &Selection, target: &Target) -> Row {
        let state = target.machine.load_state().ok();
        let spec = target.spec().ok();
        // A machine not created yet shows what it will be created with.
        let hostname = state.as_ref().map(|s| s.hostname.clone()).or_else(|| {
            spec.map(|s| match &s.hostname {
                Some(h) => h.0.clone(),
                None => selection.project.default_hostname(),
            })
        });
        let box_name = state
            .as_ref()
            .map(|s| s.box_name.clone())
            .or_else(|| spec.map(|s| box_fetch::label(&s.box_source)));
        let run_state = target.machine.run_state();
        let paused = match &run_state {
            RunState::Running(info) => io_paused(info),
            _ => Vec::new(),
        };
        let suspended = match &run_state {
            RunState::Suspended => target.machine.suspended().ok().flatten(),
            _ => None,
        };
        let forwards = Forwards::of(target, &run_state);
        Row {
            name: target.name().to_string(),
            run_state,
            paused,
            suspended,
            orphaned: target.orphaned,
            state,
            hostname,
            box_name,
            forwards,
        }
    }

    /// "127.0.0.1:8080->80/tcp, 127.0.0.1:8000->8000/tcp (auto)", or "-".
    pub fn forwards_text(&self) -> String {
        self.forwards.text()
    }

    fn info(&self) -> Option<&RunInfo> {
        match &self.run_state {
            RunState::Running(info) => Some(info),
            _ => None,
        }
    }

    fn state_text(&self) -> String {
        let orphaned = format!("orphaned (not in {SPEC_FILE})");
        let mut text = match (&self.run_state, self.orphaned) {
            (_, false) => self.run_state.label().to_string(),
            (RunState::Running(_), true) => format!("running, {orphaned}"),
            (_, true) => orphaned,
        };
        // A mount whose virtiofsd ended fails in the guest until a reload.
        if let Some(lost) = self
            .info()
            .map(|i| &i.lost_mounts)
            .filter(|l| !l.is_empty())
        {
            text.push_str(&format!(", mount lost: {}", lost.join(", ")));
        }
        for paused in &self.paused {
            text.push_str(&format!(", paused: {paused}"));
        }
        text
    }

    pub fn json(&self) -> serde_json::Value {
        let info = self.info();
        serde_json::json!({
            "name": self.name,
            "state": self.run_state.label(),
            "orphaned": self.orphaned,
            "hostname": self.hostname,
            "user": self.state.as_ref().map(|s| &s.user),
            "box": self.box_name,
            "engine": info.map(|i| &i.engine),
            "ssh_port": info.map(|i| i.ssh_port),
            "pid": info.map(|i| i.vm_pid),
            "mounts": info.map(|i| &i.mounts),
            "lost_mounts": info.map(|i| &i.lost_mounts),
            "paused": info.map(|_| &self.paused),
            "forwards": self.forwards.json(),
            "saved_state": self.suspended.as_ref().map(|s| serde_json::json!({
                "engine": s.engine,
                "bytes": s.state_bytes,
                "saved_unix": s.saved_unix,
            })),
        })
    }

    pub fn cells(&self) -> [String; 5] {
        let info = self.info();
        [
            self.name.clone(),
            self.state_text(),
            info.map_or("-".into(), |i| i.engine.to_string()),
            self.box_name.clone().unwrap_or_else(|| "-".into()),
            info.map_or("-".into(), |i| format!("127.0.0.1:{}", i.ssh_port)),
        ]
    }
}

/// Asked of the engine over its control socket; an engine that does not answer
/// (busy, or ending) holds nothing as far as `status` can tell.
fn io_paused(info: &RunInfo) -> Vec<String> {
    engine::of_kind(info.engine)
        .and_then(|e| e.io_paused(&info.control_socket))
        .unwrap_or_default()
}

pub fn run(names: &[String], json: bool) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let rows: Vec<Row> = selection
        .many(names, true)?
        .iter()
        .map(|t| Row::new(&selection, t))
        .collect();
    if json {
        let list: Vec<serde_json::Value> = rows.iter().map(Row::json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let cells: Vec<[String; 5]> = rows.iter().map(Row::cells).collect();
        print_table(["NAME", "STATE", "ENGINE", "BOX", "SSH"], &cells);
    }
    Ok(ExitCode::SUCCESS)
}
