//! `hvbox up`: create the machine on first use, then boot it and wait for ssh.

use super::current_machine;
use crate::args::UpArgs;
use crate::engine::{self, HostVirt};
use crate::keys;
use crate::machine::{state, Machine, MachineState, RunInfo, RunState};
use crate::process::pid_alive;
use crate::project::Project;
use crate::spec::{BoxSource, PortForward, Protocol, Spec};
use crate::ssh;
use crate::supervisor::{self, LaunchPlan};
use anyhow::{bail, Context, Result};
use hvbox_boxes::{catalog, BoxArtifacts, Progress, Store};
use hvbox_cloud_init::{HostKey, SeedConfig};
use hvbox_provisioner::{clone_disk, extract_boot_files};
use hvbox_vmm::{DiskConfig, MachineConfig, NetConfig};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USER_DEFAULT: &str = "dev";
/// Appended to the guest's own command line: the engines' first serial port.
const CONSOLE_ARG: &str = "console=ttyS0";

pub fn run(args: &UpArgs) -> Result<ExitCode> {
    let (project, machine) = current_machine()?;
    let spec = Spec::load(&project.spec_path)?;
    if let RunState::Running(info) = machine.run_state() {
        println!(
            "==> machine is already running (ssh on 127.0.0.1:{})",
            info.ssh_port
        );
        return Ok(ExitCode::SUCCESS);
    }
    let host = HostVirt::probe();
    let (engine, reason) = engine::select(spec.engine, &host)?;
    check_ports_free(&spec.ports)?;
    let extra_disks = extra_disks(&project, &spec)?;

    let progress = if args.quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    };
    if !machine.is_created() {
        create(&project, &machine, &spec, progress)?;
    } else {
        println!("==> starting existing machine");
    }
    let state = machine.load_state()?;

    // Boot files always come from the disk, so a kernel the guest installed is the
    // one that boots.
    let boot = extract_boot_files(&machine.disk(), &machine.dir)
        .context("finding the guest's kernel in its disk")?;
    println!(
        "==> guest kernel {} (cmdline: {})",
        boot.kernel_version, boot.cmdline
    );

    let runtime_dir = prepare_runtime_dir(&machine.runtime_dir(&state.instance_id))?;
    // passt gets a folder of its own (see hand_to_passt_when_root).
    let passt_dir = runtime_dir.join("net");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&passt_dir)
        .with_context(|| format!("creating {}", passt_dir.display()))?;
    hand_to_passt_when_root(&passt_dir)?;
    let passt_socket = passt_dir.join("passt.sock");
    let control_socket = runtime_dir.join("control.sock");
    let console_socket = runtime_dir.join("console.sock");
    let ssh_port = free_local_port()?;

    let config = MachineConfig {
        cpus: spec.cpus.0,
        memory: spec.memory.bytes(),
        kernel: boot.kernel.clone(),
        initrd: boot.initrd.clone(),
        cmdline: format!("{} {CONSOLE_ARG}", boot.cmdline),
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
        .chain(extra_disks)
        .collect(),
        nested_virtualization: spec.nested_virtualization,
        nics: vec![NetConfig {
            mac: state.mac.clone(),
            passt_socket: passt_socket.clone(),
        }],
        serial_log: Some(machine.serial_log()),
    };
    let plan = LaunchPlan {
        engine: engine.name().to_string(),
        vm_command: engine.vm_command(&config, &control_socket, &console_socket),
        passt_command: passt_command(&passt_socket, ssh_port, &spec.ports),
        passt_socket,
        control_socket,
        console_socket,
        runtime_dir,
        ssh_port,
    };
    println!("==> booting on {reason}");
    // Only this boot's serial output explains a failure of this boot.
    let boot_log_start = std::fs::metadata(machine.serial_log()).map_or(0, |m| m.len());
    let vm_log_start = std::fs::metadata(machine.file("vm.log")).map_or(0, |m| m.len());
    let supervisor_pid = supervisor::spawn(&machine, &plan)?;
    let info = wait_for_start(&machine, supervisor_pid)?;
    println!(
        "==> waiting for ssh on 127.0.0.1:{} (serial log: {})",
        info.ssh_port,
        machine.serial_log().display()
    );
    wait_for_ssh(
        &machine,
        &state,
        &info,
        Duration::from_secs(args.timeout),
        (boot_log_start, vm_log_start),
    )?;
    println!("==> machine is up: `hvbox ssh` opens a shell");
    Ok(ExitCode::SUCCESS)
}

/// First `up`: fetch the box, clone its disk, make keys and the seed. A failure
/// removes the half-made machine so the next `up` starts clean.
fn create(project: &Project, machine: &Machine, spec: &Spec, progress: Progress) -> Result<()> {
    let artifacts = resolve_box(spec)?;
    println!("==> creating machine from box {}", artifacts.name);
    let store = Store::open_default()?;
    let disk_blob = store.fetch(&artifacts.disk, "box disk", progress)?;
    std::fs::create_dir_all(&machine.dir)
        .with_context(|| format!("creating {}", machine.dir.display()))?;
    let result = populate(project, machine, spec, &artifacts, &disk_blob);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&machine.dir);
        project.prune_state_dir();
    }
    result
}

fn populate(
    project: &Project,
    machine: &Machine,
    spec: &Spec,
    artifacts: &BoxArtifacts,
    disk_blob: &Path,
) -> Result<()> {
    let size = spec.disk.map(|s| s.bytes());
    clone_disk(disk_blob, &machine.disk(), size).context("cloning the box disk")?;

    let hostname = spec
        .hostname
        .as_ref()
        .map(|h| h.0.clone())
        .unwrap_or_else(|| project.default_hostname());
    let user = spec
        .ssh
        .user
        .as_ref()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| USER_DEFAULT.to_string());
    let state = MachineState {
        instance_id: state::new_instance_id()?,
        mac: state::new_mac()?,
        hostname: hostname.clone(),
        user: user.clone(),
        box_name: artifacts.name.clone(),
        box_disk_digest: artifacts.disk.digest.to_string(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };

    let login = keys::generate_ed25519(&format!("hvbox@{hostname}"))?;
    keys::write_private(&machine.ssh_key(), &login.private_openssh)?;
    std::fs::write(machine.file("id_ed25519.pub"), &login.public_openssh)?;
    let host_key = keys::generate_ed25519(&format!("root@{hostname}"))?;
    keys::write_private(&machine.host_key(), &host_key.private_openssh)?;
    std::fs::write(
        machine.known_hosts(),
        ssh::known_hosts_line(&state, &host_key.public_openssh),
    )?;

    let seed = SeedConfig {
        instance_id: state.instance_id.clone(),
        hostname,
        user,
        authorized_keys: vec![login.public_openssh],
        host_key: HostKey {
            private_openssh: host_key.private_openssh,
            public_openssh: host_key.public_openssh,
        },
        mac: state.mac.clone(),
    };
    hvbox_cloud_init::write_seed(&seed, &machine.seed()).context("writing the cloud-init seed")?;
    // state.json last: its presence marks a finished machine.
    state.save(&machine.state_path())
}

fn resolve_box(spec: &Spec) -> Result<BoxArtifacts> {
    match &spec.box_source {
        BoxSource::Name(name) => catalog::resolve(name).map_err(Into::into),
        BoxSource::Artifacts(a) => {
            if a.kernel.is_some() || a.initrd.is_some() {
                bail!("boxes with a separate kernel or initrd are not supported yet: hvbox boots the kernel installed in the box's disk; remove `kernel`/`initrd` from the box in hvbox.yaml");
            }
            let name = a
                .disk
                .url
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("disk")
                .to_string();
            Ok(BoxArtifacts {
                name,
                disk: a.disk.to_artifact(),
                kernel: None,
                initrd: None,
            })
        }
    }
}

/// The spec's extra disks, resolved against the spec's folder; each must exist.
fn extra_disks(project: &Project, spec: &Spec) -> Result<Vec<DiskConfig>> {
    spec.disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let path = project.root.join(&d.path);
            if !path.is_file() {
                bail!(
                    "disks[{i}].path in {}: {} is not a file",
                    project.spec_path.display(),
                    path.display()
                );
            }
            Ok(DiskConfig {
                path,
                read_only: d.read_only,
            })
        })
        .collect()
}

fn passt_command(socket: &Path, ssh_port: u16, ports: &[PortForward]) -> Vec<String> {
    let mut argv = vec![
        "passt".to_string(),
        "--foreground".into(),
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
fn check_ports_free(ports: &[PortForward]) -> Result<()> {
    for (i, p) in ports.iter().enumerate() {
        let addr = SocketAddr::new(p.address, p.host.0);
        let free = match p.protocol {
            Protocol::Tcp => TcpListener::bind(addr).is_ok(),
            Protocol::Udp => UdpSocket::bind(addr).is_ok(),
        };
        if !free {
            bail!(
                "host port {} ({:?} on {}) is already in use by another program; change ports[{i}].host in hvbox.yaml or stop that program",
                p.host.0,
                p.protocol,
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
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_ssh(
    machine: &Machine,
    state: &MachineState,
    info: &RunInfo,
    timeout: Duration,
    (serial_start, vm_log_start): (u64, u64),
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ssh::probe(machine, state, info.ssh_port) {
            // sshd answers before first-boot setup ends, and cloud-init restarts it
            // midway; the machine is ready once cloud-init says it is done.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(5));
            match ssh::wait_for_cloud_init(machine, state, info.ssh_port, left) {
                ssh::CloudInit::Done => return Ok(()),
                ssh::CloudInit::Failed(detail) => {
                    eprintln!("hvbox: warning: cloud-init reported errors in the guest:\n{detail}\n(see `hvbox ssh -- sudo cloud-init status --long`)");
                    return Ok(());
                }
                ssh::CloudInit::Disconnected => {}
            }
        }
        if !pid_alive(info.vm_pid) {
            bail!(
                "the VM exited before ssh answered.\nThe engine said ({}):\n{}\nThe guest's serial console said ({}):\n{}",
                machine.file("vm.log").display(),
                tail_since(&machine.file("vm.log"), vm_log_start, 15),
                machine.serial_log().display(),
                tail_since(&machine.serial_log(), serial_start, 25)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "ssh did not answer within {} s; the machine is still running (`hvbox halt` or `hvbox destroy` stops it). Last lines of {}:\n{}",
                timeout.as_secs(),
                machine.serial_log().display(),
                tail_since(&machine.serial_log(), serial_start, 25)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The last `lines` lines of what was appended to `path` after byte `start`.
fn tail_since(path: &Path, start: u64, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(start as usize..).unwrap_or_default());
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
