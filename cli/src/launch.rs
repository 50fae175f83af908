//! Booting a created machine: its boot files from its own disk, the supervisor with
//! passt and the engine, and the wait until ssh and first-boot setup answer. Shared by
//! `up`, `upgrade-kernel` and whatever else restarts a machine.

use crate::boot_cache::{BootCache, Extracted};
pub use crate::boot_failure::BootFailure;
use crate::boot_failure::{Ending, LogStarts};
use crate::boot_stage::Stage;
use crate::boot_status::BootWatch;
use crate::engine::{self, Engine, HostVirt, VmFiles};
use crate::log_tail::LogTail;
use crate::machine::kernels::{self, Change, KernelRecord};
use crate::machine::{Machine, MachineState, RunInfo};
use crate::process::pid_alive;
use crate::progress::step;
use crate::project::Project;
use crate::spec::mounts::{self, Mount};
use crate::spec::{PortEntry, PortForward, Protocol, Spec, DEFAULT_MACHINE};
use crate::ssh;
use crate::supervisor::{self, LaunchPlan};
use crate::virtiofs::{self, FsDaemon};
use anyhow::{bail, Context, Result};
use hvbox_provisioner::{extract_boot_files, BootFiles, KernelSelection};
use hvbox_vmm::{DiskConfig, FsConfig, MachineConfig, NetBackend, NetConfig};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Appended to the guest's own command line: the engines' first serial port, and the
/// kernel's name for the one NIC. The seed names it eth0 (cloud-init renames it); with
/// the kernel naming it so from the start, the name holds on boots where cloud-init
/// does not run, as on hvbox's own boxes once first-boot setup is done.
pub(crate) const GUEST_ARGS: &str = "console=ttyS0 net.ifnames=0";
/// The machine configuration an engine that reads one from a file gets, in the
/// machine folder (see [`hvbox_vmm::MachineConfig`] for its format).
const VM_CONFIG_FILE: &str = "vm.json";
/// What a guest kernel prints when it gives up; no ssh will come after it.
const KERNEL_PANIC: &str = "Kernel panic - not syncing";

/// What is checked before anything is created or started.
pub struct Preflight {
    pub(crate) engine: Box<dyn Engine>,
    pub(crate) reason: String,
    extra_disks: Vec<DiskConfig>,
    /// The host folders the guest sees, and the virtiofsd that serves them.
    pub(crate) mounts: Vec<Mount>,
    virtiofsd: Option<PathBuf>,
}

/// Pick the engine and check that the spec's host ports are free (the spec itself,
/// extra disks included, was checked when it was loaded).
pub fn preflight(project: &Project, spec: &Spec) -> Result<Preflight> {
    let host = HostVirt::probe();
    let (engine, reason) = engine::select(spec.engine, &host)?;
    if let Some(warning) = engine::emulation_warning(spec.engine, &host) {
        eprintln!("hvbox: warning: {warning}");
    }
    check_ports_free(&spec.ports)?;
    let extra_disks = extra_disks(project, spec);
    let mounts = mounts::resolve(spec.mounts.as_deref(), &project.root)
        .context("a folder in `mounts:` is gone since hvbox.yaml was checked")?;
    let virtiofsd = match mounts.is_empty() {
        true => None,
        false => Some(virtiofs::find()?),
    };
    Ok(Preflight {
        engine,
        reason,
        extra_disks,
        mounts,
        virtiofsd,
    })
}

/// A machine that booted and answers ssh.
pub struct Booted {
    pub info: RunInfo,
    pub kernel_version: String,
}

/// Extract the boot files the machine's state asks for (its pinned kernel, else the
/// disk's default), boot them and wait for ssh. The kernel history records the boot
/// once ssh answered, so it lists only kernels that came up.
///
/// `fresh_clone` is the box disk's kept boot files when the machine's disk is a clone
/// of it that has not booted yet (see [`BootCache`]).
pub fn boot(
    machine: &Machine,
    spec: &Spec,
    checked: Preflight,
    timeout: Duration,
    fresh_clone: Option<&BootCache>,
) -> Result<Booted> {
    // A cold boot moves the disk past any saved state: continuing it later would
    // corrupt the disk.
    if machine.is_suspended() {
        step!("discarding the machine's saved state (from `hvbox suspend`): it boots fresh");
        machine.discard_state()?;
    }
    let state = machine.load_state()?;
    let selection = match &state.pinned_kernel {
        Some(v) => KernelSelection::Version(v.clone()),
        None => KernelSelection::Default,
    };
    // Boot files always come from the disk, so a kernel the guest installed is the
    // one that boots. They load into guest memory, which bounds their size.
    let fresh_clone = fresh_clone.filter(|_| selection == KernelSelection::Default);
    let kept = fresh_clone.and_then(|cache| cache.take(&machine.dir, spec.memory.bytes()));
    let extracted = match kept {
        Some(kept) => kept,
        None => {
            let boot = extract_boot_files(
                &machine.disk(),
                &machine.dir,
                &selection,
                spec.memory.bytes(),
            )
            .context("finding the guest's kernel in its disk")?;
            let extracted = Extracted::hashed(boot)?;
            if let Some(cache) = fresh_clone {
                cache.keep(&extracted);
            }
            extracted
        }
    };
    let cmdline = spec.kernel.cmdline(&extracted.boot.cmdline, GUEST_ARGS);
    let record = kernel_record(&extracted, &cmdline);
    let boot = extracted.boot;
    announce_kernel(&state, &record);

    let mounts = checked.mounts.clone();
    let info = start(machine, spec, &state, &checked, &boot, cmdline)?;
    write_ssh_config(machine, &state, info.info.ssh_port);
    step!(
        "waiting for ssh on 127.0.0.1:{} (serial log: {})",
        info.info.ssh_port,
        machine.serial_log().display()
    );
    wait_for_ssh(machine, &state, &info, timeout)?;
    // Re-read: the boot took minutes, and the history is the only thing changed here.
    let mut state = machine.load_state()?;
    kernels::record_boot(&mut state.kernels, record);
    state.save(&machine.state_path())?;
    crate::mount_check::verify(machine, &state, info.info.ssh_port, &mounts)?;
    Ok(Booted {
        info: info.info,
        kernel_version: boot.kernel_version,
    })
}

/// The machine's ssh_config for this boot's port; one that cannot be written only
/// warns, as hvbox's own ssh does not read it.
pub(crate) fn write_ssh_config(machine: &Machine, state: &MachineState, port: u16) {
    if let Err(e) = crate::ssh_config_file::write(machine, state, port) {
        eprintln!("hvbox: warning: {e:#}");
    }
}

fn kernel_record(extracted: &Extracted, cmdline: &str) -> KernelRecord {
    let now = kernels::now_unix();
    KernelRecord {
        version: extracted.boot.kernel_version.clone(),
        kernel_sha256: extracted.kernel_sha256.clone(),
        initrd_sha256: extracted.initrd_sha256.clone(),
        cmdline: cmdline.to_string(),
        guest_path: extracted.boot.kernel_guest_path.clone(),
        first_booted_unix: now,
        last_booted_unix: now,
    }
}

fn announce_kernel(state: &MachineState, record: &KernelRecord) {
    let pinned = if state.pinned_kernel.is_some() {
        " (pinned)"
    } else {
        ""
    };
    let mut history = state.kernels.clone();
    match kernels::record_boot(&mut history, record.clone()) {
        Change::Changed { previous } if previous != record.version => step!(
            "guest kernel changed: {previous} -> {}{pinned}",
            record.version
        ),
        Change::Changed { .. } => step!(
            "guest kernel {} changed on disk or in its command line{pinned}",
            record.version
        ),
        Change::First | Change::Same => {
            step!("guest kernel {}{pinned}", record.version)
        }
    }
    println!("    cmdline: {}", record.cmdline);
}

/// A running boot: the supervisor's processes and where this boot's logs start.
pub(crate) struct Started {
    pub info: RunInfo,
    pub serial_start: u64,
    pub vm_log_start: u64,
}

/// A run's runtime folder, sockets, ssh port and file-system daemons, made ready
/// before the machine's configuration names them.
pub(crate) struct RunFiles {
    runtime_dir: PathBuf,
    pub passt_socket: PathBuf,
    files: VmFiles,
    ssh_port: u16,
    pub daemons: Vec<FsDaemon>,
}

/// What a run that ended without hvbox (a killed supervisor) leaves: its shared
/// ssh connection, and a passt that still holds the spec's host ports.
pub(crate) fn clear_leftovers(machine: &Machine, state: &MachineState) {
    ssh::close_master(machine, state);
    crate::daemons::stop_leftover_passt(machine);
}

pub(crate) fn prepare_run(
    machine: &Machine,
    state: &MachineState,
    checked: &Preflight,
) -> Result<RunFiles> {
    // The runtime folder is emptied below: nothing of an earlier run may use it.
    clear_leftovers(machine, state);
    let runtime_dir = prepare_runtime_dir(&machine.runtime_dir(&state.instance_id))?;
    // passt gets a folder of its own (see hand_to_passt_when_root).
    let passt_dir = runtime_dir.join("net");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&passt_dir)
        .with_context(|| format!("creating {}", passt_dir.display()))?;
    hand_to_passt_when_root(&passt_dir)?;
    let files = VmFiles {
        config: machine.file(VM_CONFIG_FILE),
        control_socket: runtime_dir.join("control.sock"),
        console_socket: runtime_dir.join("console.sock"),
    };
    Ok(RunFiles {
        passt_socket: passt_dir.join("passt.sock"),
        files,
        ssh_port: free_local_port()?,
        daemons: fs_daemons(machine, checked, &runtime_dir)?,
        runtime_dir,
    })
}

fn start(
    machine: &Machine,
    spec: &Spec,
    state: &MachineState,
    checked: &Preflight,
    boot: &BootFiles,
    cmdline: String,
) -> Result<Started> {
    let run = prepare_run(machine, state, checked)?;
    let config = MachineConfig {
        cpus: spec.cpus.0,
        memory: spec.memory.bytes(),
        kernel: checked.engine.boot_kernel(&boot.kernel),
        initrd: boot.initrd.clone(),
        cmdline,
        disks: [
            DiskConfig {
                path: machine.disk(),
                read_only: false,
            },
            DiskConfig {
                path: machine.seed(),
                read_only: true,
            },
        ]
        .into_iter()
        .chain(checked.extra_disks.iter().cloned())
        .collect(),
        nested_virtualization: spec.nested_virtualization,
        nics: vec![NetConfig {
            mac: state.mac,
            backend: NetBackend::Passt(run.passt_socket.clone()),
        }],
        // Each mount's virtio-fs device, with the tag the guest's fstab names.
        filesystems: run
            .daemons
            .iter()
            .enumerate()
            .map(|(i, d)| FsConfig {
                tag: mounts::tag(i),
                socket: d.socket.clone(),
            })
            .collect(),
        serial_log: Some(machine.serial_log()),
    };
    config
        .validate()
        .with_context(|| format!("machine `{}`", machine.name))?;
    step!("booting on {}", checked.reason);
    spawn(machine, spec, checked, run, config, None)
}

/// Start the supervisor with passt, the daemons and the engine running `config`
/// (from the saved state at `restore`, if given), and wait for its run file.
pub(crate) fn spawn(
    machine: &Machine,
    spec: &Spec,
    checked: &Preflight,
    run: RunFiles,
    config: MachineConfig,
    restore: Option<&Path>,
) -> Result<Started> {
    let plan = LaunchPlan {
        engine: checked.engine.kind(),
        vm_command: checked.engine.vm_command(&config, &run.files, restore)?,
        passt_command: passt_command(&run.passt_socket, run.ssh_port, &spec.forwards()),
        passt_socket: run.passt_socket,
        control_socket: run.files.control_socket,
        console_socket: run.files.console_socket,
        runtime_dir: run.runtime_dir,
        ssh_port: run.ssh_port,
        filesystems: run.daemons,
        serial_pipe: checked
            .engine
            .serial_through_pipe()
            .then(|| machine.serial_log()),
        config: Some(config),
        forwards: Some(spec.forwards()),
        auto_forward: spec.auto_forward(),
    };
    // Everything up to here (disk, seed, keys, boot files) is the owner's alone,
    // also in machines an older hvbox made.
    crate::machine::private::tighten(&machine.dir)?;
    // Only this boot's output explains a failure of this boot.
    let serial_start = std::fs::metadata(machine.serial_log()).map_or(0, |m| m.len());
    let vm_log_start = std::fs::metadata(machine.file("vm.log")).map_or(0, |m| m.len());
    let supervisor_pid = supervisor::spawn(machine, &plan)?;
    let info = wait_for_start(machine, supervisor_pid)?;
    Ok(Started {
        info,
        serial_start,
        vm_log_start,
    })
}

/// A virtiofsd per mount, each with its socket in the runtime folder and its log in
/// the machine folder.
fn fs_daemons(machine: &Machine, checked: &Preflight, runtime_dir: &Path) -> Result<Vec<FsDaemon>> {
    let Some(binary) = &checked.virtiofsd else {
        return Ok(Vec::new());
    };
    checked
        .mounts
        .iter()
        .enumerate()
        .map(|(i, mount)| {
            let socket = runtime_dir.join(format!("fs{i}.sock"));
            let log = machine.file(&format!("virtiofsd-{i}.log"));
            virtiofs::daemon(binary, mount, &socket, &log)
        })
        .collect()
}

/// The spec's extra disks, resolved against the spec's folder (the spec's check
/// found each to be a file).
fn extra_disks(project: &Project, spec: &Spec) -> Vec<DiskConfig> {
    spec.disks
        .iter()
        .map(|d| DiskConfig {
            path: project.root.join(&d.path),
            read_only: d.read_only,
        })
        .collect()
}

fn passt_command(socket: &Path, ssh_port: u16, ports: &[PortForward]) -> Vec<String> {
    let mut argv = vec![
        "passt".to_string(),
        "--foreground".into(),
        // Quit when the VM goes, however it goes (see the supervisor).
        "--one-off".into(),
        "--socket".into(),
        socket.display().to_string(),
        "-t".into(),
        format!("127.0.0.1/{ssh_port}:22"),
    ];
    for p in ports {
        let flag = match p.protocol {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        };
        argv.push(flag.into());
        argv.push(format!("{}/{}:{}", p.address, p.host.0, p.guest.0));
    }
    argv
}

/// A forwarded port that another program holds would make passt fail after boot;
/// say so before anything starts.
fn check_ports_free(ports: &[PortEntry]) -> Result<()> {
    for (i, p) in ports.iter().enumerate() {
        let PortEntry::Forward(p) = p else { continue };
        let addr = SocketAddr::new(p.address, p.host.0);
        let free = match p.protocol {
            Protocol::Tcp => TcpListener::bind(addr).is_ok(),
            Protocol::Udp => UdpSocket::bind(addr).is_ok(),
        };
        if !free {
            bail!(
                "host port {} ({} on {}) is already in use by another program; change ports[{i}].host in hvbox.yaml or stop that program",
                p.host.0,
                match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                },
                p.address
            );
        }
    }
    Ok(())
}

/// A fresh folder for the machine's sockets. Its parents must be ours and closed to
/// other users (a folder another user made in /tmp could hand us their sockets); they
/// may be traversed, so passt running as another user reaches its own subfolder.
fn prepare_runtime_dir(dir: &Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let _ = std::fs::remove_dir_all(dir);
    let parent = dir.parent().context("runtime folder has no parent")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(parent)
        .with_context(|| format!("creating {}", parent.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for ancestor in [parent, parent.parent().unwrap_or(parent)] {
        let meta = std::fs::metadata(ancestor)
            .with_context(|| format!("checking {}", ancestor.display()))?;
        let shared_tmp = ancestor == Path::new("/tmp") || ancestor.starts_with("/run/user");
        if !shared_tmp && (meta.uid() != me || meta.mode() & 0o022 != 0) {
            bail!(
                "{} belongs to another user or is writable by others; remove it or set XDG_RUNTIME_DIR",
                ancestor.display()
            );
        }
    }
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// passt refuses to keep root: started as root it switches to `nobody` before it binds
/// its socket, so the socket's folder must belong to `nobody` then.
fn hand_to_passt_when_root(dir: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let name = std::ffi::CString::new("nobody").expect("no NUL");
    // SAFETY: getpwnam gets a valid C string; the returned record is read at once,
    // before any other call could reuse its static storage.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            bail!(
                "passt runs as `nobody` when started by root, but this host has no user `nobody`"
            );
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .with_context(|| format!("handing {} to user nobody for passt", dir.display()))
}

fn free_local_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Wait until the supervisor has started the VM and written the run file.
fn wait_for_start(machine: &Machine, supervisor_pid: u32) -> Result<RunInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Short pauses: the supervisor is usually done in a few hundred milliseconds,
    // and a pause that grew long would keep `up` waiting after it.
    let mut pause = crate::process::Backoff::up_to(Duration::from_millis(5));
    loop {
        if let Ok(info) = RunInfo::load(machine) {
            if info.supervisor_pid == supervisor_pid {
                return Ok(info);
            }
        }
        if !pid_alive(supervisor_pid) || Instant::now() > deadline {
            let log = std::fs::read_to_string(machine.file("supervisor.log")).unwrap_or_default();
            bail!(
                "the machine did not start:\n{}\n(logs in {})",
                log.trim(),
                machine.dir.display()
            );
        }
        pause.sleep();
    }
}

/// Wait for ssh and cloud-init. A VM that exits, a guest kernel that panics or a
/// deadline that passes is a [`BootFailure`] carrying the logs that explain it.
fn wait_for_ssh(
    machine: &Machine,
    state: &MachineState,
    started: &Started,
    timeout: Duration,
) -> Result<()> {
    let info = &started.info;
    let deadline = Instant::now() + timeout;
    let starts = LogStarts {
        serial: started.serial_start,
        engine: started.vm_log_start,
    };
    let fail = |ending| -> Result<()> {
        Err(BootFailure::new(machine, info.engine, ending, starts).into())
    };
    // Each look reads only what the guest printed since the last one.
    let mut serial = LogTail::new(&machine.serial_log(), started.serial_start);
    // Dropped on the way out of a failure: its status line goes before the error.
    let watch = BootWatch::start(&machine.serial_log(), started.serial_start, "booting");
    // Short pauses: a look that finds sshd silent costs one TCP connection, not a login.
    let mut pause = crate::process::Backoff::up_to(Duration::from_millis(250));
    loop {
        let panicked = serial.saw(KERNEL_PANIC);
        if ssh::probe(machine, state, info.ssh_port) {
            watch.reach(Stage::Sshd);
            // sshd answers before first-boot setup ends, and cloud-init restarts it
            // midway; the machine is ready once cloud-init says it is done.
            watch.reach(Stage::CloudInit);
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(5));
            match ssh::wait_for_cloud_init(machine, state, info.ssh_port, left) {
                ssh::CloudInit::Done => {
                    watch.finish();
                    return Ok(());
                }
                ssh::CloudInit::Failed(detail) => {
                    watch.finish();
                    let (whose, ssh) = match machine.name.as_str() {
                        DEFAULT_MACHINE => (String::new(), "hvbox ssh".to_string()),
                        name => (format!(" of machine `{name}`"), format!("hvbox ssh {name}")),
                    };
                    eprintln!("hvbox: warning: cloud-init reported errors in the guest{whose}:\n{detail}\n(see `{ssh} -- sudo cloud-init status --long`)");
                    return Ok(());
                }
                ssh::CloudInit::Disconnected => {}
            }
        }
        if !pid_alive(info.vm_pid) {
            drop(watch);
            return fail(Ending::VmExited);
        }
        if panicked {
            drop(watch);
            return fail(Ending::KernelPanic);
        }
        if Instant::now() > deadline {
            drop(watch);
            return fail(Ending::Timeout(timeout));
        }
        pause.sleep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Port, Protocol};

    #[test]
    fn passt_forwards_ssh_and_the_spec_ports_and_quits_with_its_vm() {
        let udp = PortForward {
            host: Port(5353),
            guest: Port(53),
            protocol: Protocol::Udp,
            address: "0.0.0.0".parse().unwrap(),
        };
        let argv = passt_command(Path::new("/run/m/net/passt.sock"), 2222, &[udp]).join(" ");
        assert_eq!(
            argv,
            "passt --foreground --one-off --socket /run/m/net/passt.sock -t 127.0.0.1/2222:22 -u 0.0.0.0/5353:53"
        );
    }
}
