//! The QEMU engine: `qemu-system-x86_64` with direct kernel boot, KVM where the host
//! has hardware virtualization and TCG otherwise.

use super::{Engine, EngineKind, HostVirt, VmFiles};
use anyhow::{bail, Context, Result};
use hvbox_vmm::{FsConfig, MachineConfig, NetBackend};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The `-sandbox` QEMU runs under.
pub(super) const SANDBOX: &str =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

pub struct Qemu {
    kvm: bool,
}

impl Qemu {
    pub fn new(kvm: bool) -> Qemu {
        Qemu { kvm }
    }

    pub fn accel_reason(&self, host: &HostVirt) -> String {
        if self.kvm {
            format!("running with KVM ({})", host.detail)
        } else {
            format!(
                "running with TCG software emulation, which is slow ({})",
                host.detail
            )
        }
    }
}

impl Engine for Qemu {
    fn kind(&self) -> EngineKind {
        EngineKind::Qemu
    }

    fn serial_through_pipe(&self) -> bool {
        true
    }

    fn vm_command(
        &self,
        c: &MachineConfig,
        files: &VmFiles,
        restore: Option<&Path>,
    ) -> Result<Vec<String>> {
        let mem = memory_arg(c.memory)?;
        let mut a: Vec<String> = vec!["qemu-system-x86_64".into()];
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        // QEMU's own seccomp filter, as strict as it comes: no obsolete syscalls, no
        // setuid, no fork/exec, no changing of priorities or CPU affinity.
        push(&["-sandbox", SANDBOX]);
        if c.filesystems.is_empty() {
            push(&["-machine", "q35"]);
        } else {
            // virtiofsd reads and writes guest memory itself: RAM must be a memfd
            // mapped shared, which QEMU hands the backend with the memory table.
            let backend = format!("memory-backend-memfd,id=mem,size={mem},share=on");
            push(&["-object", &backend, "-machine", "q35,memory-backend=mem"]);
        }
        // `max` under TCG offers SVM, `host` under KVM offers what the host has;
        // without nested virtualization both are switched off. Without SVM, TCG's
        // `max` also ends its extended CPUID at 0x80000001, before the address-size
        // leaf, yet offers 5-level paging: Linux then assumes 48-bit linear addresses
        // on 5-level page tables, rejects its own kernel pointers
        // (copy_from_kernel_nofault), and systemd's sandboxed services, udev among
        // them, fail to start.
        let accel = if self.kvm { "kvm" } else { "tcg,thread=multi" };
        let cpu = match (self.kvm, c.nested_virtualization) {
            (true, true) => "host",
            (true, false) => "host,svm=off,vmx=off",
            (false, true) => "max",
            (false, false) => "max,la57=off,svm=off,vmx=off",
        };
        push(&["-accel", accel, "-cpu", cpu]);
        let cpus = c.cpus.to_string();
        push(&["-smp", &cpus, "-m", &mem]);
        push(&["-kernel", &c.kernel.to_string_lossy()]);
        if let Some(initrd) = &c.initrd {
            push(&["-initrd", &initrd.to_string_lossy()]);
        }
        // Under TCG guest time runs only as fast as a busy host lets it, and Linux's
        // check that the timer interrupt comes through the IO-APIC gives up after a
        // few calibrated loops: "IO-APIC + timer doesn't work!", a panic at boot.
        // q35 wires that timer correctly, so the check can only fail spuriously.
        let tcg_time = !self.kvm && !c.cmdline.split_whitespace().any(|w| w == NO_TIMER_CHECK);
        let cmdline = if tcg_time {
            format!("{} {NO_TIMER_CHECK}", c.cmdline)
        } else {
            c.cmdline.clone()
        };
        push(&["-append", &cmdline]);
        for disk in &c.disks {
            let mut drive = format!(
                "file={},format=raw,if=virtio,discard=unmap",
                escape(&disk.path)
            );
            if disk.read_only {
                drive.push_str(",readonly=on");
            }
            push(&["-drive", &drive]);
        }
        for (i, nic) in c.nics.iter().enumerate() {
            let netdev = match &nic.backend {
                NetBackend::Passt(socket) => format!(
                    "stream,id=net{i},server=off,addr.type=unix,addr.path={}",
                    escape(socket)
                ),
                NetBackend::Tap(name) => {
                    format!("tap,id=net{i},ifname={name},script=no,downscript=no")
                }
            };
            let device = format!("virtio-net-pci,netdev=net{i},mac={}", nic.mac);
            push(&["-netdev", &netdev, "-device", &device]);
        }
        // Each share's device sits alone on a root port, so that it can be unplugged
        // before a save (QEMU cannot save a vhost-user-fs device) and plugged back
        // after. A restored machine gets the empty ports it was saved with: the
        // devices follow once it runs (`plug_shares`).
        for (i, fs) in c.filesystems.iter().enumerate() {
            push(&["-device", &super::qemu_shares::root_port(i)]);
            if restore.is_none() {
                let chardev = super::qemu_shares::chardev(i, &fs.socket);
                let device = super::qemu_shares::device(i, &fs.tag);
                push(&["-chardev", &chardev, "-device", &device]);
            }
        }
        push(&["-device", "virtio-rng-pci"]);
        // The console socket for `hvbox console`; the log keeps every boot's output.
        let mut serial = format!(
            "socket,id=serial0,path={},server=on,wait=off",
            escape(&files.console_socket)
        );
        // qemu's own log file would only grow: it writes to a pipe instead, which
        // the supervisor copies into the serial log with rotation.
        if c.serial_log.is_some() {
            let fd = crate::supervisor::SERIAL_FD;
            serial.push_str(&format!(",logfile=/dev/fd/{fd},logappend=on"));
        }
        push(&["-chardev", &serial, "-serial", "chardev:serial0"]);
        let qmp = format!("unix:{},server=on,wait=off", escape(&files.control_socket));
        push(&["-qmp", &qmp]);
        // The state comes over QMP (`finish_restore`): the seccomp sandbox forbids
        // the `exec:` channel, and this QEMU (7.2) has no `file:` one.
        if restore.is_some() {
            push(&["-incoming", "defer"]);
        }
        Ok(a)
    }

    fn request_poweroff(&self, control_socket: &Path) -> Result<()> {
        qmp_command(control_socket, "system_powerdown")
    }

    fn hard_stop(&self, control_socket: &Path) -> Result<()> {
        qmp_command(control_socket, "quit")
    }

    /// QEMU stops the guest itself when a write finds no space (`werror=enospc`, its
    /// default) and marks the disk `nospace` in `query-block`.
    fn io_paused(&self, control_socket: &Path) -> Result<Vec<String>> {
        let reply = qmp_query(control_socket, "query-block")?;
        Ok(disks_without_space(&reply))
    }

    fn resume_io(&self, control_socket: &Path) -> Result<()> {
        qmp_command(control_socket, "cont")
    }

    fn suspend(&self, control_socket: &Path, dest: &File) -> Result<()> {
        super::qemu_state::save(control_socket, dest)
    }

    fn save_paused(
        &self,
        control_socket: &Path,
        dest: &File,
        while_paused: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        super::qemu_state::save_paused(control_socket, dest, while_paused)
    }

    fn continue_if_paused(&self, control_socket: &Path) -> Result<bool> {
        super::qemu_state::continue_if_paused(control_socket)
    }

    fn unplugs_shares(&self) -> bool {
        true
    }

    fn check_shares_unpluggable(&self, control_socket: &Path, count: usize) -> Result<()> {
        super::qemu_shares::check_unpluggable(control_socket, count)
    }

    fn plugged_shares(&self, control_socket: &Path, count: usize) -> Result<Vec<usize>> {
        super::qemu_shares::plugged(control_socket, count)
    }

    fn unplug_shares(
        &self,
        control_socket: &Path,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<usize>> {
        super::qemu_shares::unplug(control_socket, count, wait)
    }

    fn release_shares(&self, control_socket: &Path, indexes: &[usize]) -> Result<()> {
        super::qemu_shares::remove_chardevs(control_socket, indexes)
    }

    fn plug_shares(&self, control_socket: &Path, shares: &[(usize, FsConfig)]) -> Result<()> {
        super::qemu_shares::plug(control_socket, shares)
    }

    fn finish_restore(
        &self,
        control_socket: &Path,
        state: &Path,
        vm_alive: &dyn Fn() -> bool,
    ) -> Result<()> {
        super::qemu_state::load(control_socket, state, vm_alive)
    }

    /// A migration stream loads into the QEMU that wrote it: `-machine q35` names
    /// the newest machine type of each QEMU release.
    fn state_version(&self) -> Option<String> {
        let out = std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().next().map(|l| l.trim().to_string())
    }
}

/// `disk full on PATH` for each disk in a `query-block` reply that QEMU marked
/// `nospace`.
fn disks_without_space(reply: &str) -> Vec<String> {
    let Ok(reply) = serde_json::from_str::<serde_json::Value>(reply) else {
        return Vec::new();
    };
    let Some(disks) = reply["return"].as_array() else {
        return Vec::new();
    };
    disks
        .iter()
        .filter(|d| d["io-status"] == "nospace")
        .map(|d| {
            let file = d["inserted"]["file"].as_str().unwrap_or("a disk");
            format!("disk full on {file}")
        })
        .collect()
}

/// QEMU sizes guest RAM in steps of 8 KiB, rounding anything between up.
/// The kernel parameter that skips Linux's boot-time check of the timer interrupt.
const NO_TIMER_CHECK: &str = "no_timer_check";

const QEMU_RAM_STEP: u64 = 8 << 10;

/// `-m` with the exact size (in MiB where it is whole MiB, else KiB), or an error
/// where QEMU would round it.
fn memory_arg(bytes: u64) -> Result<String> {
    if bytes % QEMU_RAM_STEP != 0 {
        let up = bytes.div_ceil(QEMU_RAM_STEP) * QEMU_RAM_STEP;
        bail!(
            "memory: QEMU sizes guest memory in steps of 8K and would round {bytes} bytes up to {}K; give the machine a multiple of 8K, such as {}K",
            up >> 10,
            up >> 10
        );
    }
    Ok(if bytes % (1 << 20) == 0 {
        format!("{}M", bytes >> 20)
    } else {
        format!("{}K", bytes >> 10)
    })
}

/// QEMU option values are comma-separated; a comma inside a path is written twice.
pub(super) fn escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// One command over QMP: greeting, capabilities handshake, then the command.
fn qmp_command(socket: &Path, command: &str) -> Result<()> {
    qmp_query(socket, command).map(|_| ())
}

/// [`qmp_command`], returning QEMU's answer line (empty when `quit` closed the socket).
fn qmp_query(socket: &Path, command: &str) -> Result<String> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to QEMU's control socket {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("reading QMP greeting")?;
    for cmd in ["qmp_capabilities", command] {
        writeln!(writer, "{{\"execute\":\"{cmd}\"}}")?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                // `quit` closes the socket before answering.
                if cmd == "quit" {
                    return Ok(String::new());
                }
                bail!("QEMU closed its control socket during {cmd}");
            }
            if line.contains("\"return\"") {
                break;
            }
            if line.contains("\"error\"") {
                bail!("QEMU refused {cmd}: {}", line.trim());
            }
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_block_names_the_disks_qemu_found_full() {
        let reply = r#"{"return": [{"io-status": "nospace", "device": "", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend", "inserted": {"file": "/p/.hvbox/machines/default/disk.raw", "ro": false}}, {"io-status": "ok", "inserted": {"file": "/p/seed.iso"}}]}"#;
        assert_eq!(
            disks_without_space(reply),
            ["disk full on /p/.hvbox/machines/default/disk.raw"]
        );
        assert!(disks_without_space(r#"{"return": []}"#).is_empty());
    }
    use hvbox_vmm::FsConfig;

    #[test]
    fn command_line_boots_the_kernel_with_disks_seed_and_passt() {
        let cfg = super::super::sample_config();
        let files = VmFiles {
            control_socket: "/run/x/qmp.sock".into(),
            ..super::super::sample_files(Path::new("/m"))
        };
        let args = Qemu::new(false).vm_command(&cfg, &files, None).unwrap();
        let joined = args.join(" ");
        assert!(joined.contains(
            "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        ));
        assert!(joined.contains("-accel tcg,thread=multi -cpu max,la57=off,svm=off,vmx=off"));
        assert!(joined.contains("-smp 2 -m 1024M"));
        assert!(joined.contains("-append root=PARTUUID=x ro console=ttyS0 no_timer_check -drive"));
        assert!(joined.contains("file=/m/seed.iso,format=raw,if=virtio,discard=unmap,readonly=on"));
        assert!(joined.contains("addr.path=/run/x/passt.sock"));
        assert!(joined.contains("mac=52:54:00:01:02:03"));
        assert!(joined.contains(
            "socket,id=serial0,path=/run/x/console.sock,server=on,wait=off,logfile=/dev/fd/3,logappend=on"
        ));
        let kvm = Qemu::new(true)
            .vm_command(&cfg, &files, None)
            .unwrap()
            .join(" ");
        assert!(kvm.contains("-accel kvm -cpu host,svm=off,vmx=off"));
        assert!(kvm.contains("-append root=PARTUUID=x ro console=ttyS0 -drive"));
        let nested = MachineConfig {
            nested_virtualization: true,
            ..cfg
        };
        let tcg = Qemu::new(false)
            .vm_command(&nested, &files, None)
            .unwrap()
            .join(" ");
        assert!(tcg.contains("-cpu max "));
    }

    #[test]
    fn filesystems_share_memory_with_their_vhost_user_backends() {
        let files = super::super::sample_files(Path::new("/m"));
        let plain = super::super::sample_config();
        let args = Qemu::new(false).vm_command(&plain, &files, None).unwrap();
        let joined = args.join(" ");
        // Without filesystems, RAM stays QEMU's own private memory.
        assert!(joined.contains("-machine q35 "), "{joined}");
        assert!(!joined.contains("memory-backend"), "{joined}");
        assert!(!joined.contains("vhost-user"), "{joined}");

        let shared = MachineConfig {
            memory: 1536 << 10,
            filesystems: vec![
                FsConfig {
                    tag: "project".into(),
                    socket: "/run/x/fs-0.sock".into(),
                },
                FsConfig {
                    tag: "a,b".into(),
                    socket: "/run/x,y/fs-1.sock".into(),
                },
            ],
            ..plain
        };
        let args = Qemu::new(false).vm_command(&shared, &files, None).unwrap();
        let pairs: Vec<(&str, &str)> = args
            .windows(2)
            .map(|w| (w[0].as_str(), w[1].as_str()))
            .collect();
        let has = |flag: &str, value: &str| pairs.contains(&(flag, value));
        assert!(
            has("-object", "memory-backend-memfd,id=mem,size=1536K,share=on"),
            "{args:?}"
        );
        assert!(has("-machine", "q35,memory-backend=mem"), "{args:?}");
        // The backend and -m agree on the size, or QEMU refuses to start.
        assert!(has("-m", "1536K"), "{args:?}");
        // Each device on a root port of its own, the port numbered by the share.
        let ports = [
            "pcie-root-port,id=rp-fs0,chassis=1,slot=0,port=1",
            "pcie-root-port,id=rp-fs1,chassis=2,slot=0,port=2",
        ];
        for port in ports {
            assert!(has("-device", port), "{args:?}");
        }
        assert!(
            has("-chardev", "socket,id=chr-fs0,path=/run/x/fs-0.sock"),
            "{args:?}"
        );
        assert!(
            has(
                "-device",
                "vhost-user-fs-pci,id=fs0,bus=rp-fs0,chardev=chr-fs0,tag=project"
            ),
            "{args:?}"
        );
        assert!(
            has("-chardev", "socket,id=chr-fs1,path=/run/x,,y/fs-1.sock"),
            "{args:?}"
        );
        assert!(
            has(
                "-device",
                "vhost-user-fs-pci,id=fs1,bus=rp-fs1,chardev=chr-fs1,tag=a,,b"
            ),
            "{args:?}"
        );
        assert_eq!(args.iter().filter(|a| *a == "-machine").count(), 1);

        // A restore gets the same machine with the ports empty, as it was saved:
        // everything else in the same order, so each device keeps its address.
        let restored = Qemu::new(false)
            .vm_command(&shared, &files, Some(Path::new("/m/state/vm.state")))
            .unwrap();
        // The booted command without each share's `-chardev`/`-device` pair.
        let mut without_shares: Vec<String> = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let value = args.get(i + 1).map_or("", String::as_str);
            if value.starts_with("vhost-user-fs-pci") || value.contains("id=chr-fs") {
                i += 2;
                continue;
            }
            without_shares.push(args[i].clone());
            i += 1;
        }
        assert_eq!(without_shares, restored[..restored.len() - 2]);
        assert_eq!(restored[restored.len() - 2..], ["-incoming", "defer"]);
        for port in ports {
            assert!(restored.iter().any(|a| a == port), "{restored:?}");
        }
        assert!(
            !restored.iter().any(|a| a.contains("vhost-user-fs")),
            "{restored:?}"
        );
    }

    #[test]
    fn memory_reaches_qemu_exactly_or_not_at_all() {
        let cfg = |memory| MachineConfig {
            memory,
            ..super::super::sample_config()
        };
        let files = super::super::sample_files(Path::new("/m"));
        let m = |memory| {
            let args = Qemu::new(false)
                .vm_command(&cfg(memory), &files, None)
                .unwrap();
            let at = args.iter().position(|a| a == "-m").unwrap();
            args[at + 1].clone()
        };
        assert_eq!(m(1 << 30), "1024M");
        assert_eq!(m(1536 << 10), "1536K");
        assert_eq!(m(512 << 10), "512K");
        assert_eq!(m((5 << 30) + (8 << 10)), "5242888K");
        let err = Qemu::new(false)
            .vm_command(&cfg(1540 << 10), &files, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("steps of 8K") && err.contains("such as 1544K"),
            "{err}"
        );
    }
}
