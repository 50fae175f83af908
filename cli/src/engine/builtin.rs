//! The builtin engine: hvbox's own VMM (`hvbox-vmm`, the program behind `hvbox vmm
//! run`), one process per machine, booting the guest's kernel through its PVH entry
//! where it can.

use super::{Engine, EngineKind, VmFiles};
use crate::machine::write_atomic;
use anyhow::{bail, Context, Result};
use hvbox_vmm::MachineConfig;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// How long the VMM itself waits after the power button before stopping the guest
/// hard. `hvbox halt` keeps its own, shorter timeout and sends `kill` when it
/// passes; this only bounds a guest whose halt was abandoned half-way.
const VMM_STOP_GRACE_SECS: u64 = 3600;

pub struct Builtin {
    /// `hvbox-vmm` beside this hvbox: the VMM's own small program.
    exe: PathBuf,
}

impl Builtin {
    /// Only starting a machine needs the program: a running one is reached through
    /// its control socket.
    pub fn new() -> Result<Builtin> {
        Ok(Builtin {
            exe: crate::vmm_program::vmm_path()?,
        })
    }
}

impl Engine for Builtin {
    fn kind(&self) -> EngineKind {
        EngineKind::Builtin
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

    /// The VMM reads the machine from `files.config`, written here as the JSON of
    /// [`MachineConfig`] itself: what `launch` built is what the VMM runs. Only the
    /// run's sockets are flags.
    fn vm_command(
        &self,
        config: &MachineConfig,
        files: &VmFiles,
        restore: Option<&Path>,
    ) -> Result<Vec<String>> {
        crate::vmm_program::check(&self.exe)?;
        let mut json = serde_json::to_string_pretty(config)?;
        json.push('\n');
        write_atomic(&files.config, json.as_bytes())?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut argv = vec![
            path(&self.exe),
            "--config".into(),
            path(&files.config),
            "--control-socket".into(),
            path(&files.control_socket),
            "--console-socket".into(),
            path(&files.console_socket),
            // The run's memory and the vCPUs' exits by reason go into vm.log at the end.
            "--stats".into(),
        ];
        if let Some(state) = restore {
            argv.extend(["--restore".into(), path(state)]);
        }
        Ok(argv)
    }

    fn request_poweroff(&self, control_socket: &Path) -> Result<()> {
        control_request(control_socket, &format!("stop {VMM_STOP_GRACE_SECS}"))
    }

    fn hard_stop(&self, control_socket: &Path) -> Result<()> {
        control_request(control_socket, "kill")
    }

    /// The VMM answers `status` with `running`, then `; paused: WHAT` per disk.
    fn io_paused(&self, control_socket: &Path) -> Result<Vec<String>> {
        let reply = control_reply(control_socket, "status")?;
        let mut parts = reply.split("; ");
        match parts.next() {
            Some("running") => Ok(parts
                .filter_map(|p| p.strip_prefix("paused: "))
                .map(str::to_string)
                .collect()),
            _ => bail!("the VMM answered `status` with {reply:?}"),
        }
    }

    fn resume_io(&self, control_socket: &Path) -> Result<()> {
        control_request(control_socket, "resume")
    }

    /// `save stop` with the file's descriptor in the same message: the VMM writes
    /// the state into it, answers, and exits.
    fn suspend(&self, control_socket: &Path, dest: &File) -> Result<()> {
        let reply = send_with_file(control_socket, "save stop", dest, SAVE_LIMIT)?;
        match reply.as_str() {
            "ok" => Ok(()),
            "" => bail!("the VMM ended without answering `save stop`"),
            other => bail!(
                "the VMM could not save the machine: {}",
                other.strip_prefix("error: ").unwrap_or(other)
            ),
        }
    }

    /// `save pause` with the file's descriptor: the VMM writes the state and holds
    /// the guest (vCPUs parked, devices paused) while `while_paused` copies the disk;
    /// then `continue`, whatever happened.
    fn save_paused(
        &self,
        control_socket: &Path,
        dest: &File,
        while_paused: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let reply = send_with_file(control_socket, "save pause", dest, SAVE_LIMIT)?;
        if reply != "ok" {
            bail!(
                "the VMM could not save the machine: {}",
                reply.strip_prefix("error: ").unwrap_or(&reply)
            );
        }
        let copied = while_paused();
        let continued = control_request(control_socket, "continue");
        copied.and(continued)
    }

    /// A `save pause` whose `hvbox` was killed before its `continue` leaves the guest
    /// held: `continue` lets it go (the VMM says when nothing holds it).
    fn continue_if_paused(&self, control_socket: &Path) -> Result<bool> {
        let reply = control_reply(control_socket, "continue")?;
        Ok(reply == "ok")
    }

    /// The VMM loads the state itself (`--restore`) before it serves its control
    /// socket, and refuses a state it cannot continue by exiting: the first answer
    /// to `status` means the guest runs.
    fn finish_restore(
        &self,
        control_socket: &Path,
        _state: &Path,
        vm_alive: &dyn Fn() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + SAVE_LIMIT;
        loop {
            match control_reply(control_socket, "status") {
                Ok(reply) if reply.starts_with("running") => return Ok(()),
                _ if !vm_alive() => bail!("the VMM refused the saved state and ended"),
                _ if Instant::now() > deadline => bail!(
                    "the VMM did not answer within {} s of starting from the saved state",
                    SAVE_LIMIT.as_secs()
                ),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// Saving and loading take seconds per GiB of guest memory; this only bounds a VMM
/// that stopped making progress.
const SAVE_LIMIT: Duration = Duration::from_secs(600);

/// `request` and `file`'s descriptor in one message (SCM_RIGHTS); the one-line reply.
fn send_with_file(socket: &Path, request: &str, file: &File, limit: Duration) -> Result<String> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to the VMM's control socket {}",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(limit))?;
    let line = format!("{request}\n");
    let sent = stream
        .send_with_fd(line.as_bytes(), file.as_raw_fd())
        .map_err(|e| anyhow::anyhow!("sending `{request}` to the VMM: {e}"))?;
    if sent != line.len() {
        bail!("sending `{request}` to the VMM: only {sent} bytes went");
    }
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .with_context(|| format!("reading the VMM's answer to `{request}`"))?;
    Ok(reply.trim().to_string())
}

/// One request on the VMM's control socket; its one-line reply must be `ok`.
fn control_request(socket: &Path, request: &str) -> Result<()> {
    match control_reply(socket, request) {
        Ok(reply) if reply == "ok" => Ok(()),
        // `kill` may end the VMM before its answer is written.
        Ok(reply) if reply.is_empty() && request == "kill" => Ok(()),
        Ok(other) => bail!("the VMM refused `{request}`: {other}"),
        Err(e) => Err(e),
    }
}

/// One request on the VMM's control socket and its one-line reply.
fn control_reply(socket: &Path, request: &str) -> Result<String> {
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
    Ok(reply.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn command_hands_the_vmm_the_config_file_and_nothing_else_of_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("hvbox-vmm");
        let engine = Builtin { exe: exe.clone() };
        let err = engine
            .vm_command(
                &super::super::sample_config(),
                &super::super::sample_files(dir.path()),
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("hvbox-vmm is missing"), "{err}");
        std::fs::write(&exe, "").unwrap();
        let config = MachineConfig {
            kernel: "/m/vmlinux-0123".into(),
            // Not a whole number of MiB: the flags this replaced sent "1M".
            memory: 1536 << 10,
            nested_virtualization: true,
            ..super::super::sample_config()
        };
        let files = super::super::sample_files(dir.path());
        let args = engine.vm_command(&config, &files, None).unwrap();
        let config_path = dir.path().join("vm.json");
        assert_eq!(
            args,
            [
                exe.to_str().unwrap(),
                "--config",
                config_path.to_str().unwrap(),
                "--control-socket",
                "/run/x/control.sock",
                "--console-socket",
                "/run/x/console.sock",
                "--stats"
            ]
        );
        let written: MachineConfig =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        assert_eq!(written, config);
        // Written atomically: nothing but the file itself is left in the folder.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["hvbox-vmm", "vm.json"]);
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
            exe: "/usr/bin/hvbox-vmm".into(),
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
        let (_dir, path, server) =
            answering("running; paused: disk full on /m/disk.raw (0 bytes free)");
        assert_eq!(
            engine.io_paused(&path).unwrap(),
            ["disk full on /m/disk.raw (0 bytes free)"]
        );
        assert_eq!(server.join().unwrap(), "status\n");
        let (_dir, path, server) = answering("running");
        assert!(engine.io_paused(&path).unwrap().is_empty());
        server.join().unwrap();
        let (_dir, path, server) = answering("ok");
        engine.resume_io(&path).unwrap();
        assert_eq!(server.join().unwrap(), "resume\n");
        let (_dir, path, server) = answering("error: unknown request");
        let err = engine.request_poweroff(&path).unwrap_err().to_string();
        server.join().unwrap();
        assert!(err.contains("the VMM refused"), "{err}");
    }

    /// A stand-in VMM that takes `save stop` with one descriptor, writes into it and
    /// answers `reply`.
    fn saving(
        reply: &'static str,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::thread::JoinHandle<(String, bool)>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let (len, file) = stream.recv_with_fd(&mut buf).unwrap();
            let line = String::from_utf8_lossy(&buf[..len]).into_owned();
            let got = file.is_some();
            if let Some(mut file) = file {
                file.write_all(b"the state").unwrap();
            }
            writeln!(&stream, "{reply}").unwrap();
            (line, got)
        });
        (dir, path, server)
    }

    #[test]
    fn suspend_hands_the_vmm_the_state_file_with_save_stop() {
        // Any program that exists stands in for hvbox-vmm.
        let engine = Builtin {
            exe: std::env::current_exe().unwrap(),
        };
        let out = tempfile::NamedTempFile::new().unwrap();
        let (_dir, path, server) = saving("ok");
        engine.suspend(&path, out.as_file()).unwrap();
        assert_eq!(server.join().unwrap(), ("save stop\n".to_string(), true));
        assert_eq!(std::fs::read(out.path()).unwrap(), b"the state");

        let (_dir, path, server) = saving("error: no space left on device");
        let err = engine
            .suspend(&path, out.as_file())
            .unwrap_err()
            .to_string();
        server.join().unwrap();
        assert_eq!(
            err,
            "the VMM could not save the machine: no space left on device"
        );

        // A resume runs the same machine with its state file.
        let dir = tempfile::tempdir().unwrap();
        let files = super::super::sample_files(dir.path());
        let args = engine
            .vm_command(
                &super::super::sample_config(),
                &files,
                Some(Path::new("/m/state/vm.state")),
            )
            .unwrap();
        assert_eq!(args[args.len() - 2..], ["--restore", "/m/state/vm.state"]);
    }
}
