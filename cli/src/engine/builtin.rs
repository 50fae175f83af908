//! The builtin engine: hvbox's own VMM (`hvbox vmm run`), one process per machine,
//! booting the guest's kernel through its PVH entry where it can.

use super::Engine;
use anyhow::{bail, Context, Result};
use hvbox_vmm::{MachineConfig, NetBackend};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the VMM itself waits after the power button before stopping the guest
/// hard. `hvbox halt` keeps its own, shorter timeout and sends `kill` when it
/// passes; this only bounds a guest whose halt was abandoned half-way.
const VMM_STOP_GRACE_SECS: u64 = 3600;

pub struct Builtin {
    /// This hvbox binary: the VMM runs as `hvbox vmm run` in its own process.
    exe: PathBuf,
}

impl Builtin {
    pub fn new() -> Result<Builtin> {
        let exe = std::env::current_exe().context("finding the hvbox binary to run the VMM")?;
        Ok(Builtin { exe })
    }
}

impl Engine for Builtin {
    fn name(&self) -> &'static str {
        "builtin"
    }

    /// The vmlinux inside the bzImage boots through PVH: no decompression in the
    /// guest at every boot, and it is cached beside the bzImage. A kernel it cannot
    /// be taken out of still boots, as a bzImage.
    fn boot_kernel(&self, bzimage: &Path) -> PathBuf {
        match hvbox_vmm::boot::vmlinux_beside(bzimage) {
            Ok(vmlinux) => vmlinux,
            Err(e) => {
                eprintln!("hvbox: note: booting the bzImage, not its vmlinux through PVH ({e})");
                bzimage.to_path_buf()
            }
        }
    }

    fn vm_command(
        &self,
        c: &MachineConfig,
        control_socket: &Path,
        console_socket: &Path,
    ) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut a = vec![
            path(&self.exe),
            "vmm".into(),
            "run".into(),
            "--kernel".into(),
            path(&c.kernel),
        ];
        if let Some(initrd) = &c.initrd {
            a.extend(["--initrd".into(), path(initrd)]);
        }
        a.extend([
            "--cmdline".into(),
            c.cmdline.clone(),
            "--cpus".into(),
            c.cpus.to_string(),
            "--memory".into(),
            format!("{}M", c.memory >> 20),
        ]);
        for disk in &c.disks {
            let ro = if disk.read_only { ",ro" } else { "" };
            a.extend(["--disk".into(), format!("{}{ro}", path(&disk.path))]);
        }
        for nic in &c.nics {
            let net = match &nic.backend {
                NetBackend::Passt(socket) => format!("passt:{}", path(socket)),
                NetBackend::Tap(name) => format!("tap:{name}"),
            };
            a.extend(["--net".into(), net, "--mac".into(), nic.mac.clone()]);
        }
        if c.nested_virtualization {
            a.push("--nested-virtualization".into());
        }
        if let Some(log) = &c.serial_log {
            a.extend(["--serial-log".into(), path(log)]);
        }
        a.extend([
            "--control-socket".into(),
            path(control_socket),
            "--console-socket".into(),
            path(console_socket),
        ]);
        a
    }

    fn request_poweroff(&self, control_socket: &Path) -> Result<()> {
        control_request(control_socket, &format!("stop {VMM_STOP_GRACE_SECS}"))
    }

    fn hard_stop(&self, control_socket: &Path) -> Result<()> {
        control_request(control_socket, "kill")
    }
}

/// One request on the VMM's control socket; its one-line reply must be `ok`.
fn control_request(socket: &Path, request: &str) -> Result<()> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the VMM's control socket {}",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    writeln!(writer, "{request}")?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .with_context(|| format!("reading the VMM's answer to `{request}`"))?;
    match reply.trim() {
        "ok" => Ok(()),
        // `kill` may end the VMM before its answer is written.
        "" if request == "kill" => Ok(()),
        other => bail!("the VMM refused `{request}`: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// The machine `launch` describes, with the vmlinux the engine picked and nesting on.
    fn config() -> MachineConfig {
        MachineConfig {
            kernel: "/m/vmlinux-0123".into(),
            nested_virtualization: true,
            ..super::super::sample_config()
        }
    }

    #[test]
    fn command_runs_this_binarys_vmm_with_every_device() {
        let engine = Builtin {
            exe: "/usr/bin/hvbox".into(),
        };
        let args = engine.vm_command(
            &config(),
            Path::new("/run/x/control.sock"),
            Path::new("/run/x/console.sock"),
        );
        assert_eq!(args[..3], ["/usr/bin/hvbox", "vmm", "run"]);
        let joined = args.join(" ");
        for expected in [
            "--kernel /m/vmlinux-0123 --initrd /m/initrd.img",
            "--cpus 2 --memory 1024M",
            "--disk /m/disk.raw --disk /m/seed.iso,ro",
            "--net passt:/run/x/passt.sock --mac 52:54:00:01:02:03",
            "--nested-virtualization",
            "--serial-log /m/serial.log",
            "--control-socket /run/x/control.sock --console-socket /run/x/console.sock",
        ] {
            assert!(joined.contains(expected), "{expected:?} not in {joined}");
        }
        // The command line stays one argument, spaces and all.
        assert!(args.contains(&"root=PARTUUID=x ro console=ttyS0".to_string()));
    }

    /// A stand-in for the VMM's control socket that answers one request.
    fn answering(
        reply: &'static str,
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            writeln!(&stream, "{reply}").unwrap();
            line
        });
        (dir, path, server)
    }

    #[test]
    fn poweroff_presses_the_power_button_and_kill_stops_hard() {
        let engine = Builtin {
            exe: "/usr/bin/hvbox".into(),
        };
        let (_dir, path, server) = answering("ok");
        engine.request_poweroff(&path).unwrap();
        assert_eq!(
            server.join().unwrap(),
            format!("stop {VMM_STOP_GRACE_SECS}\n")
        );
        let (_dir, path, server) = answering("ok");
        engine.hard_stop(&path).unwrap();
        assert_eq!(server.join().unwrap(), "kill\n");
        let (_dir, path, server) = answering("error: unknown request");
        let err = engine.request_poweroff(&path).unwrap_err().to_string();
        server.join().unwrap();
        assert!(err.contains("the VMM refused"), "{err}");
    }
}
