//! The per-machine supervisor: a detached `hvbox supervise DIR` process that starts
//! passt and the VM, records their pids, waits for the VM to end, then stops passt.
//!
//! Both children get PR_SET_PDEATHSIG, so killing the supervisor takes them down too:
//! a machine never leaves orphaned processes behind. passt loses that signal when it
//! drops root for `nobody`, so it runs with `--one-off` and quits when the VM's
//! connection closes.

use crate::auto_ports::watcher::{Guest, Watcher};
use crate::daemons::Daemons;
use crate::engine::EngineKind;
use crate::machine::runtime::MountPoint;
use crate::machine::{private, write_atomic, Machine, RunInfo};
use crate::process::{pid_alive, signal};
use crate::share_requests;
use crate::spec::{PortForward, Protocol};
use crate::virtiofs::FsDaemon;
use anyhow::{Context, Result};
use hvbox_vmm::ExitReason;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const LAUNCH_FILE: &str = "launch.json";
pub const EXIT_FILE: &str = "exit.json";
const SUPERVISOR_LOG: &str = "supervisor.log";

/// What the engine of `machine`'s run was given, from its launch plan; `None` for a
/// run started by an older hvbox, which did not record it.
pub fn launch_config(machine: &Machine) -> Result<Option<hvbox_vmm::MachineConfig>> {
    Ok(launch_plan(machine)?.config)
}

/// What `hvbox up` hands the supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub struct LaunchPlan {
    pub engine: EngineKind,
    pub vm_command: Vec<String>,
    pub passt_command: Vec<String>,
    pub passt_socket: PathBuf,
    pub control_socket: PathBuf,
    pub console_socket: PathBuf,
    pub runtime_dir: PathBuf,
    pub ssh_port: u16,
    /// One virtiofsd per mounted folder.
    #[serde(default)]
    pub filesystems: Vec<FsDaemon>,
    /// The serial log the VM writes to file descriptor [`SERIAL_FD`] (qemu's
    /// chardev logfile), copied there with rotation; the builtin engine's VMM
    /// rotates its own.
    #[serde(default)]
    pub serial_pipe: Option<PathBuf>,
    /// The machine as the engine runs it, kept for `hvbox suspend` to record.
    #[serde(default)]
    pub config: Option<hvbox_vmm::MachineConfig>,
    /// The spec's forwards passt was given, as `status` and `port` show them.
    /// `None` in a plan an older hvbox wrote.
    #[serde(default)]
    pub forwards: Option<Vec<PortForward>>,
    /// Forward each TCP port the guest listens on, through ssh, while it runs.
    #[serde(default)]
    pub auto_forward: bool,
}

/// `machine`'s launch plan, for what its run was given.
pub fn launch_plan(machine: &Machine) -> Result<LaunchPlan> {
    serde_json::from_str(
        &std::fs::read_to_string(machine.file(LAUNCH_FILE)).context("reading the launch plan")?,
    )
    .context("reading the launch plan")
}

/// Where a VM with a [`LaunchPlan::serial_pipe`] finds the pipe to its serial log.
pub const SERIAL_FD: i32 = 3;

#[derive(Debug, Serialize, Deserialize)]
pub struct ExitRecord {
    pub vm_exit_code: Option<i32>,
    pub vm_signal: Option<i32>,
}

/// Start the supervisor for `machine` in its own session and return its pid.
pub fn spawn(machine: &Machine, plan: &LaunchPlan) -> Result<u32> {
    write_atomic(
        &machine.file(LAUNCH_FILE),
        serde_json::to_string_pretty(plan)?.as_bytes(),
    )?;
    let _ = std::fs::remove_file(machine.file(EXIT_FILE));
    let log = private::create_file(
        &machine.file(SUPERVISOR_LOG),
        File::options().write(true).create(true).truncate(true),
    )?;
    let exe = std::env::current_exe().context("locating the hvbox executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("supervise")
        .arg(&machine.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the machine supervisor")?;
    Ok(child.id())
}

/// Body of `hvbox supervise DIR`.
pub fn run(machine_dir: &Path) -> Result<()> {
    // What the supervisor, the engine and passt create (logs, sockets) is the
    // owner's alone, whatever umask `hvbox up` ran with.
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(private::CHILD_UMASK as libc::mode_t) };
    let machine = Machine::new("", machine_dir.to_path_buf());
    let plan: LaunchPlan = serde_json::from_str(
        &std::fs::read_to_string(machine.file(LAUNCH_FILE)).context("reading the launch plan")?,
    )?;
    crate::machine::runtime::hold_supervisor_lock(&machine)?;
    let result = supervise(&machine, &plan);
    let _ = std::fs::remove_file(machine.file(crate::machine::runtime::RUN_FILE));
    let _ = std::fs::remove_dir_all(&plan.runtime_dir);
    if let Err(e) = &result {
        eprintln!("supervisor: {e:#}");
    }
    result
}

fn supervise(machine: &Machine, plan: &LaunchPlan) -> Result<()> {
    // Lives as long as this function: every way out stops it, and it outlives the
    // guest's reboots, logging in again after each.
    let _ports = port_watcher(machine, plan);
    let mut reboots = RebootGuard::default();
    let status = loop {
        let mut daemons = Daemons::start(plan, &machine.file("passt.log"))?;
        let vm = start_child_with_serial(
            &plan.vm_command,
            &machine.file("vm.log"),
            plan.serial_pipe.as_deref(),
        );
        let (mut vm, copiers) = match vm {
            Ok(vm) => vm,
            Err(e) => {
                daemons.stop();
                return Err(e);
            }
        };
        let mut info = RunInfo {
            supervisor_pid: std::process::id(),
            vm_pid: vm.id(),
            passt_pid: daemons.passt.id(),
            virtiofsd_pids: daemons.virtiofsd_pids(),
            mounts: plan
                .filesystems
                .iter()
                .map(|fs| MountPoint {
                    host: fs.host.clone(),
                    guest: fs.guest.clone(),
                })
                .collect(),
            lost_mounts: Vec::new(),
            engine: plan.engine,
            ssh_port: plan.ssh_port,
            control_socket: plan.control_socket.clone(),
            console_socket: plan.console_socket.clone(),
            runtime_dir: plan.runtime_dir.clone(),
        };
        let status = match info
            .save(machine)
            .and_then(|()| wait_for_vm(machine, &mut vm, &mut daemons, &mut info))
        {
            Ok(status) => status,
            Err(e) => {
                stop_child(&mut vm);
                daemons.stop();
                return Err(e);
            }
        };
        daemons.stop();
        // The VM's last words (a crash report, a panic) are in the logs before
        // anyone is told it ended.
        crate::log_pipe::drain(copiers, Duration::from_secs(2));
        // QEMU resets a rebooting guest in place; the embedded VMM exits with the
        // reboot code instead, and the machine starts again with the same boot files.
        if plan.engine == EngineKind::Builtin
            && status.code() == Some(i32::from(ExitReason::Reboot.exit_code()))
            && reboots.allow(Instant::now())
        {
            eprintln!("supervisor: the guest rebooted; starting it again");
            continue;
        }
        break status;
    };
    eprintln!("supervisor: VM exited: {status}");
    use std::os::unix::process::ExitStatusExt;
    let record = ExitRecord {
        vm_exit_code: status.code(),
        vm_signal: status.signal(),
    };
    write_atomic(
        &machine.file(EXIT_FILE),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )
}

/// The automatic port forwarding's watcher, when the spec leaves it on.
fn port_watcher(machine: &Machine, plan: &LaunchPlan) -> Option<Watcher> {
    if !plan.auto_forward {
        return None;
    }
    let state = match machine.load_state() {
        Ok(state) => state,
        Err(e) => {
            eprintln!("ports: no automatic forwarding: {e:#}");
            return None;
        }
    };
    Some(Watcher::start(Guest {
        machine: machine.clone(),
        state,
        ssh_port: plan.ssh_port,
        runtime_dir: plan.runtime_dir.clone(),
        declared: plan
            .forwards
            .iter()
            .flatten()
            .filter(|p| p.protocol == Protocol::Tcp)
            .map(|p| p.guest.0)
            .collect(),
    }))
}

/// Wait for the VM to end. A virtiofsd that ends before it is reported in the
/// machine's log and in the run file (`status` shows it): the guest's mount of its
/// folder fails from then on, and the VM runs on.
fn wait_for_vm(
    machine: &Machine,
    vm: &mut Child,
    daemons: &mut Daemons,
    info: &mut RunInfo,
) -> Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = vm.try_wait().context("waiting for the VM")? {
            return Ok(status);
        }
        let lost = daemons.newly_lost();
        let restart = share_requests::take_restart(&info.runtime_dir);
        if !lost.is_empty() || restart.is_some() {
            for (i, mount, status) in lost {
                // `hvbox suspend` or `snapshot save --live` unplugged its share.
                if share_requests::is_unplugged(&info.runtime_dir, i) {
                    eprintln!("supervisor: virtiofsd for {mount} ended ({status}): its share is unplugged while the machine is saved");
                    continue;
                }
                eprintln!("supervisor: virtiofsd for {mount} exited ({status}): the guest's mount of it fails from now on; `hvbox reload` starts it again");
                info.lost_mounts.push(mount);
            }
            if let Some(indexes) = restart {
                let result = daemons.restart(&indexes);
                if let Err(e) = &result {
                    eprintln!("supervisor: starting virtiofsd again: {e:#}");
                }
                share_requests::answer_restart(&info.runtime_dir, &result)?;
            }
            info.virtiofsd_pids = daemons.virtiofsd_pids();
            info.save(machine)?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start `argv` with its output copied into the rotating log at `log_path`.
pub(crate) fn start_child(argv: &[String], log_path: &Path) -> Result<Child> {
    start_child_with_serial(argv, log_path, None).map(|(child, _copiers)| child)
}

/// [`start_child`], and with `serial`, a second pipe at [`SERIAL_FD`] whose bytes
/// land in that rotating log; also returns the threads copying the pipes.
fn start_child_with_serial(
    argv: &[String],
    log_path: &Path,
    serial: Option<&Path>,
) -> Result<(Child, Vec<JoinHandle<()>>)> {
    use std::os::fd::AsRawFd;
    let (program, args) = argv.split_first().context("empty command")?;
    let (log, copier) = crate::log_pipe::logging_pipe(log_path)?;
    let mut copiers = vec![copier];
    let serial = match serial.map(crate::log_pipe::logging_pipe).transpose()? {
        Some((fd, copier)) => {
            copiers.push(copier);
            Some(fd)
        }
        None => None,
    };
    let serial_fd = serial.as_ref().map(|fd| fd.as_raw_fd());
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    let supervisor = std::process::id();
    // SAFETY: dup2, fcntl, prctl and getppid are async-signal-safe and only affect the
    // child; `serial` (the descriptor dup'ed) lives until after the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = serial_fd {
                // dup2 leaves the copy open across exec; the same number would keep
                // its close-on-exec flag, so clear that instead.
                let rc = if fd == SERIAL_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, SERIAL_FD)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor died before the death signal was armed.
            if libc::getppid() as u32 != supervisor {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| {
        format!("starting {program} (is it installed? see the README's requirements)")
    });
    // Only the child holds the write ends now: its exit ends the copiers.
    drop(serial);
    child.map(|c| (c, copiers))
}

pub(crate) fn stop_child(child: &mut Child) {
    if pid_alive(child.id()) {
        let _ = signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A guest that reboots again and again (a kernel that panics with `panic=N`) is
/// stopped rather than restarted for ever.
#[derive(Debug, Default)]
struct RebootGuard {
    recent: Vec<Instant>,
}

impl RebootGuard {
    const WINDOW: Duration = Duration::from_secs(60);
    const MAX_IN_WINDOW: usize = 5;

    fn allow(&mut self, now: Instant) -> bool {
        self.recent
            .retain(|t| now.duration_since(*t) < Self::WINDOW);
        self.recent.push(now);
        self.recent.len() <= Self::MAX_IN_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reboot_loop_is_stopped_but_an_occasional_reboot_is_not() {
        let mut guard = RebootGuard::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(guard.allow(t0 + Duration::from_secs(i)));
        }
        assert!(!guard.allow(t0 + Duration::from_secs(5)));
        // A minute later the old reboots no longer count.
        assert!(guard.allow(t0 + Duration::from_secs(70)));
    }
}
