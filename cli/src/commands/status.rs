//! `hvbox status [--json]`.

use super::current_machine;
use crate::machine::RunState;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(json: bool) -> Result<ExitCode> {
    let (_, machine) = current_machine()?;
    let run_state = machine.run_state();
    let state = machine.load_state().ok();
    let info = match &run_state {
        RunState::Running(info) => Some(info),
        _ => None,
    };
    if json {
        let value = serde_json::json!({
            "name": machine.name,
            "state": run_state.label(),
            "hostname": state.as_ref().map(|s| &s.hostname),
            "user": state.as_ref().map(|s| &s.user),
            "box": state.as_ref().map(|s| &s.box_name),
            "engine": info.map(|i| &i.engine),
            "ssh_port": info.map(|i| i.ssh_port),
            "pid": info.map(|i| i.vm_pid),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "{:<12} {:<12} {:<8} {:<20} SSH",
            "MACHINE", "STATE", "ENGINE", "BOX"
        );
        println!(
            "{:<12} {:<12} {:<8} {:<20} {}",
            machine.name,
            run_state.label(),
            info.map(|i| i.engine.as_str()).unwrap_or("-"),
            state.as_ref().map(|s| s.box_name.as_str()).unwrap_or("-"),
            info.map(|i| format!("127.0.0.1:{}", i.ssh_port))
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(ExitCode::SUCCESS)
}
