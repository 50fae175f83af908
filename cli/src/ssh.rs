//! Talking to the guest with the system's OpenSSH client, always with the machine's
//! own key and its pinned host key: no trust on first use.

use crate::machine::{Machine, MachineState};
use std::process::{Command, Stdio};

/// The name the pinned host key is filed under in the machine's known_hosts, so the
/// entry holds whatever port the machine gets on each boot.
pub fn host_key_alias(state: &MachineState) -> String {
    format!("hvbox-{}", state.instance_id)
}

pub fn known_hosts_line(state: &MachineState, host_public_key: &str) -> String {
    format!("{} {}\n", host_key_alias(state), host_public_key.trim())
}

/// `ssh` with everything but the remote command.
pub fn command(machine: &Machine, state: &MachineState, port: u16) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-i")
        .arg(machine.ssh_key())
        .arg("-p")
        .arg(port.to_string())
        .args(option("IdentitiesOnly", "yes"))
        .args(option("IdentityAgent", "none"))
        .args(option("StrictHostKeyChecking", "yes"))
        .args(option("UserKnownHostsFile", machine.known_hosts()))
        .args(option("HostKeyAlias", host_key_alias(state)))
        .args(option("PasswordAuthentication", "no"))
        // A machine that dies mid-session ends the session within a minute
        // instead of leaving ssh waiting forever.
        .args(option("ServerAliveInterval", "15"))
        .args(option("ServerAliveCountMax", "4"))
        .args(option("LogLevel", "ERROR"))
        .arg(format!("{}@127.0.0.1", state.user));
    cmd
}

fn option(name: &str, value: impl AsRef<std::ffi::OsStr>) -> [std::ffi::OsString; 2] {
    let mut v = std::ffi::OsString::from(format!("{name}="));
    v.push(value.as_ref());
    ["-o".into(), v]
}

/// `ssh` for hvbox's own checks: never prompts, gives up on a dead port quickly.
fn batch_command(machine: &Machine, state: &MachineState, port: u16) -> Command {
    let mut cmd = command(machine, state, port);
    cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]);
    cmd
}

/// One quiet, non-interactive attempt to log in; true when the guest answered.
pub fn probe(machine: &Machine, state: &MachineState, port: u16) -> bool {
    batch_command(machine, state, port)
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when ssh refuses the guest because its host key is not the pinned one.
pub fn host_key_refused(machine: &Machine, state: &MachineState, port: u16) -> bool {
    batch_command(machine, state, port)
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .is_ok_and(|out| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            stderr.contains("Host key verification failed")
                || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        })
}

pub enum CloudInit {
    Done,
    /// cloud-init finished with errors; its status output.
    Failed(String),
    /// The connection dropped (sshd restarting); ask again.
    Disconnected,
}

/// Block until cloud-init's first-boot stages are over. A guest without cloud-init
/// counts as done.
pub fn wait_for_cloud_init(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    limit: std::time::Duration,
) -> CloudInit {
    // `timeout` in the guest keeps `hvbox up --timeout` honest if cloud-init hangs.
    // Older cloud-init (Debian 12's 22.4) ends `status --wait` as soon as one module
    // failed, while later stages still run; systemd's own wait covers the rest of
    // the boot, cloud-final included. The last `status` gives the verdict.
    let secs = limit.as_secs();
    let output = batch_command(machine, state, port)
        .arg(format!(
            "if command -v cloud-init >/dev/null; then timeout {secs} cloud-init status --wait >/dev/null 2>&1; timeout {secs} systemctl is-system-running --wait >/dev/null 2>&1; cloud-init status --long; fi"
        ))
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) => match out.status.code() {
            Some(0) => CloudInit::Done,
            // ssh's own failure, e.g. the connection reset by sshd's restart.
            Some(255) | None => CloudInit::Disconnected,
            Some(_) => CloudInit::Failed(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        },
        Err(_) => CloudInit::Disconnected,
    }
}

/// Run `script` in the guest (through its login shell) and return its standard
/// output; a non-zero exit is an error carrying standard error.
pub fn capture(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    script: &str,
) -> anyhow::Result<String> {
    let out = batch_command(machine, state, port)
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("running ssh: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{script}` in the guest failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run `script` in the guest with the terminal's output streams and `stdin` as its
/// input; returns its exit status.
pub fn run_streaming(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    script: &str,
    stdin: Stdio,
) -> anyhow::Result<std::process::ExitStatus> {
    batch_command(machine, state, port)
        .arg(script)
        .stdin(stdin)
        .status()
        .map_err(|e| anyhow::anyhow!("running ssh: {e}"))
}
