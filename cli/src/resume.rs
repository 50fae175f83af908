//! Continuing a suspended machine: the engine runs the saved machine again from its
//! state file, with new passt and virtiofsd processes; then ssh, and the guest's
//! clock set to the host's (it stood still while the machine was suspended).

use crate::boot_status::BootWatch;
use crate::guest_shares::GuestShares;
use crate::launch::{self, Preflight};
use crate::machine::suspended::Suspended;
use crate::machine::{Machine, MachineState, RunInfo};
use crate::process::{pid_alive, signal, wait_gone};
use crate::progress::step;
use crate::spec::Spec;
use crate::ssh;
use anyhow::{bail, Context, Result};
use hvbox_vmm::{FsConfig, NetBackend};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub enum Resumed {
    Running(RunInfo),
    /// The saved state cannot be continued, for this reason; it is discarded.
    Refused(String),
}

/// Continue `machine` from its saved state and wait for ssh. A state this hvbox or
/// its engine cannot continue is [`Resumed::Refused`] (and gone): the caller boots
/// the machine cold.
pub fn resume(
    machine: &Machine,
    spec: &Spec,
    checked: &Preflight,
    record: Suspended,
    timeout: Duration,
) -> Result<Resumed> {
    if let Some(why) = refusal(&record, checked) {
        machine.discard_state()?;
        return Ok(Resumed::Refused(why));
    }
    let state = machine.load_state()?;
    let run = launch::prepare_run(machine, &state, checked)?;
    // The same machine, with this run's sockets (the same paths, made anew).
    let mut config = record.config.clone();
    for nic in &mut config.nics {
        if let NetBackend::Passt(socket) = &mut nic.backend {
            *socket = run.passt_socket.clone();
        }
    }
    config.filesystems = config
        .filesystems
        .iter()
        .zip(&run.daemons)
        .map(|(fs, daemon)| FsConfig {
            tag: fs.tag.clone(),
            socket: daemon.socket.clone(),
        })
        .collect();
    let saved = machine.saved_state();
    step!(
        "resuming on {} from the state saved {} ago",
        checked.reason,
        ago(record.saved_unix)
    );
    let started_at = Instant::now();
    let config_fs = config.filesystems.clone();
    let started = launch::spawn(machine, spec, checked, run, config, Some(&saved))?;
    let serial_start = started.serial_start;
    let info = started.info;
    let vm_pid = info.vm_pid;
    let loaded = checked
        .engine
        .finish_restore(&info.control_socket, &saved, &|| pid_alive(vm_pid));
    // Loaded or refused, the state is spent: the guest's disk moves on from here.
    machine.discard_state()?;
    if let Err(e) = loaded {
        let reason = engine_reason(machine, started.vm_log_start).unwrap_or(format!("{e:#}"));
        stop(machine, checked, &info);
        return Ok(Resumed::Refused(reason));
    }
    launch::write_ssh_config(machine, &state, info.ssh_port);
    step!(
        "guest continued after {:.1} s; waiting for ssh on 127.0.0.1:{}",
        started_at.elapsed().as_secs_f64(),
        info.ssh_port
    );
    // Saved without its shares' devices (see `GuestShares`): they go back in now,
    // onto the empty root ports the machine was saved with.
    let shares = GuestShares::new(machine, &info, checked.engine.as_ref(), config_fs)?;
    let plugged = match shares.needed() {
        true => shares.plug(&(0..checked.mounts.len()).collect::<Vec<_>>()),
        false => Ok(()),
    };
    wait_for_ssh(machine, &state, &info, serial_start, timeout)?;
    step!(
        "ssh answers {:.1} s after the resume began",
        started_at.elapsed().as_secs_f64()
    );
    match set_guest_clock(machine, &state, info.ssh_port) {
        Ok(()) => step!("guest clock set to the host's time"),
        Err(e) => eprintln!("hvbox: warning: could not set the guest's clock to the host's time ({e:#}); it is behind by the time the machine was suspended"),
    }
    if shares.needed() {
        plugged
            .and_then(|()| shares.mount())
            .context("the machine is resumed, but its shared folders are not back; `hvbox reload` mounts them again")?;
        crate::mount_check::verify(machine, &state, info.ssh_port, &checked.mounts)?;
        step!(
            "shared folders mounted again {:.1} s after the resume began",
            started_at.elapsed().as_secs_f64()
        );
    }
    Ok(Resumed::Running(info))
}

/// Why the saved state cannot run under this spec and engine, before anything starts.
fn refusal(record: &Suspended, checked: &Preflight) -> Option<String> {
    let engine = checked.engine.kind();
    if record.engine != engine {
        return Some(format!(
            "it was saved by the {} engine, and the machine now runs on the {engine} engine",
            record.engine
        ));
    }
    if let Some(why) = record.mismatch(checked.engine.state_version().as_deref()) {
        return Some(why);
    }
    if record.config.filesystems.len() != checked.mounts.len() {
        return Some(format!(
            "the machine was saved with {} shared folders, and hvbox.yaml's `mounts:` now has {}",
            record.config.filesystems.len(),
            checked.mounts.len()
        ));
    }
    None
}

fn ago(saved_unix: u64) -> String {
    let secs = crate::machine::kernels::now_unix().saturating_sub(saved_unix);
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// What the engine said when it gave up, from this run's part of vm.log: the
/// builtin VMM's `cannot resume:` line, QEMU's own error lines.
fn engine_reason(machine: &Machine, vm_log_start: u64) -> Option<String> {
    // The log is copied from a pipe; give the copier a moment.
    std::thread::sleep(Duration::from_millis(500));
    let log = crate::boot_failure::tail_since(&machine.file("vm.log"), vm_log_start, 40);
    if let Some(line) = log.lines().find(|l| l.contains("cannot resume:")) {
        let why = line.split_once("cannot resume:").map_or(line, |(_, w)| w);
        return Some(why.trim().to_string());
    }
    let qemu: Vec<&str> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("qemu-system-x86_64: "))
        .collect();
    (!qemu.is_empty()).then(|| format!("QEMU: {}", qemu.join("; ")))
}

/// End a VM that did not take its state, and its supervisor.
fn stop(machine: &Machine, checked: &Preflight, info: &RunInfo) {
    let _ = checked.engine.hard_stop(&info.control_socket);
    if !wait_gone(info.supervisor_pid, Duration::from_secs(10))
        && crate::machine::runtime::supervisor_alive(machine)
    {
        let _ = signal(info.supervisor_pid, libc::SIGKILL);
        wait_gone(info.supervisor_pid, Duration::from_secs(5));
    }
}

/// sshd was running when the machine was saved: it answers as soon as the guest's
/// network is back, which takes passt a moment to learn.
fn wait_for_ssh(
    machine: &Machine,
    state: &MachineState,
    info: &RunInfo,
    serial_start: u64,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    // Dropped on a failure: its status line goes before the error.
    let watch = BootWatch::start(&machine.serial_log(), serial_start, "resuming");
    let mut pause = crate::process::Backoff::up_to(Duration::from_millis(250));
    loop {
        if ssh::probe(machine, state, info.ssh_port) {
            // The next line says how long it took.
            drop(watch);
            return Ok(());
        }
        if !pid_alive(info.vm_pid) {
            drop(watch);
            bail!(
                "the machine ended after it was resumed (see {} and {})",
                machine.file("vm.log").display(),
                machine.serial_log().display()
            );
        }
        if Instant::now() > deadline {
            drop(watch);
            bail!(
                "the resumed machine did not answer ssh within {} s (serial log: {})",
                timeout.as_secs(),
                machine.serial_log().display()
            );
        }
        pause.sleep();
    }
}

/// Set the guest's clock over ssh. The host's time is sent only once the guest
/// asks for it, so the login's seconds (under emulation) do not make it stale.
fn set_guest_clock(machine: &Machine, state: &MachineState, port: u16) -> Result<()> {
    let mut child = ssh::batch_command(machine, state, port)
        .arg("echo ready; read t; sudo -n date -u -s \"@$t\" >/dev/null && date +%s.%N")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ssh")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    if line.trim() == "ready" {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        writeln!(stdin, "{}.{:09}", now.as_secs(), now.subsec_nanos())?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    line.clear();
    stdout.read_line(&mut line)?;
    if !out.status.success() {
        bail!(
            "`sudo date` in the guest failed: {}",
            crate::guest_text::sanitize(String::from_utf8_lossy(&out.stderr).trim())
        );
    }
    let guest: f64 = line
        .trim()
        .parse()
        .context("reading the guest's new time")?;
    let host = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    if (host - guest).abs() > 5.0 {
        bail!(
            "the guest's clock is {:.1} s off the host's after setting it",
            host - guest
        );
    }
    Ok(())
}
