//! Suspend and resume on QEMU: its migration stream, written into and read from a
//! file hvbox opens and hands over QMP (`getfd`). QEMU's seccomp sandbox forbids the
//! `exec:` channel and QEMU 7.2 has no `file:` one; an `fd:` channel needs neither.

use super::qmp::{migration_status, Migration, Qmp};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The name the state file's descriptor has inside QEMU.
const FD_NAME: &str = "hvbox-state";
/// Writing or reading the state takes seconds per GiB of guest memory; this only
/// bounds a QEMU that stopped making progress.
const TRANSFER_LIMIT: Duration = Duration::from_secs(600);
/// QEMU caps migration at 32 MiB/s by default, meant for live migration over a
/// network; into a local file with the guest paused, the disk is the limit.
const UNCAPPED_BYTES_PER_SEC: u64 = 100 << 30;

/// Pause the guest, write its state into `dest` and quit QEMU. On an error the
/// guest is continued if it was running.
pub fn save(socket: &Path, dest: &File) -> Result<()> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let running = qmp.execute("query-status", None)?["running"] == true;
    qmp.execute("stop", None)?;
    match write_state(&mut qmp, dest) {
        Ok(()) => {
            // QEMU may close the socket before it answers `quit`.
            let _ = qmp.execute("quit", None);
            Ok(())
        }
        Err(e) => {
            if running {
                qmp.execute("cont", None)
                    .context("continuing the guest after the failed save")?;
            }
            Err(e)
        }
    }
}

/// Pause the guest, write its state into `dest`, run `while_paused`, continue.
/// QEMU hands its disks back to the guest at `cont` after a completed migration.
pub fn save_paused(
    socket: &Path,
    dest: &File,
    while_paused: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let running = qmp.execute("query-status", None)?["running"] == true;
    qmp.execute("stop", None)?;
    let result = write_state(&mut qmp, dest).and_then(|()| while_paused());
    if running {
        qmp.execute("cont", None)
            .context("continuing the guest after saving it")?;
    }
    result
}

fn write_state(qmp: &mut Qmp, dest: &File) -> Result<()> {
    qmp.execute(
        "migrate-set-parameters",
        Some(json!({ "max-bandwidth": UNCAPPED_BYTES_PER_SEC })),
    )?;
    qmp.execute_with_fd(
        "getfd",
        Some(json!({ "fdname": FD_NAME })),
        dest.as_raw_fd(),
    )?;
    qmp.execute("migrate", Some(json!({ "uri": format!("fd:{FD_NAME}") })))?;
    let deadline = Instant::now() + TRANSFER_LIMIT;
    loop {
        match migration_status(&qmp.execute("query-migrate", None)?) {
            Migration::Completed => return Ok(()),
            Migration::Failed(why) => bail!("QEMU could not write the state: {why}"),
            Migration::Busy(status) if Instant::now() > deadline => {
                let _ = qmp.execute("migrate_cancel", None);
                bail!(
                    "QEMU did not finish writing the state within {} s (migration status: {status})",
                    TRANSFER_LIMIT.as_secs()
                );
            }
            Migration::Busy(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A guest `save` paused and nobody continued (its caller was killed): QEMU is
/// `paused` mid-save or `postmigrate` after it.
pub fn continue_if_paused(socket: &Path) -> Result<bool> {
    let mut qmp = Qmp::connect(socket, Duration::from_secs(10))?;
    let status = qmp.execute("query-status", None)?;
    match status["status"].as_str() {
        Some("paused" | "postmigrate") => {
            let _ = qmp.execute("migrate_cancel", None);
            qmp.execute("cont", None)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Feed `state` to a QEMU started with `-incoming defer`, then continue the guest.
pub fn load(socket: &Path, state: &Path, vm_alive: &dyn Fn() -> bool) -> Result<()> {
    let mut qmp = connect_when_listening(socket, vm_alive)?;
    let file = File::open(state).with_context(|| format!("opening {}", state.display()))?;
    qmp.execute_with_fd(
        "getfd",
        Some(json!({ "fdname": FD_NAME })),
        file.as_raw_fd(),
    )?;
    drop(file);
    // QEMU reads a file's whole stream inside this command and exits when the
    // stream does not load: the answer comes once it is loaded.
    qmp.set_timeout(TRANSFER_LIMIT)?;
    qmp.execute(
        "migrate-incoming",
        Some(json!({ "uri": format!("fd:{FD_NAME}") })),
    )
    .map_err(|e| ended_or(e, vm_alive))?;
    let deadline = Instant::now() + TRANSFER_LIMIT;
    loop {
        let status = qmp
            .execute("query-status", None)
            .map_err(|e| ended_or(e, vm_alive))?;
        match status["status"].as_str() {
            Some("inmigrate") if Instant::now() > deadline => bail!(
                "QEMU did not finish loading the state within {} s",
                TRANSFER_LIMIT.as_secs()
            ),
            Some("inmigrate") => std::thread::sleep(Duration::from_millis(100)),
            _ if status["running"] == true => return Ok(()),
            // Saved paused: the guest continues now.
            _ => {
                qmp.execute("cont", None)?;
                return Ok(());
            }
        }
    }
}

/// QEMU creates its control socket early in its start; wait for it while it runs.
fn connect_when_listening(socket: &Path, vm_alive: &dyn Fn() -> bool) -> Result<Qmp> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Qmp::connect(socket, Duration::from_secs(10)) {
            Ok(qmp) => return Ok(qmp),
            Err(_) if vm_alive() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) if !vm_alive() => return Err(e.context("QEMU ended before it listened")),
            Err(e) => return Err(e),
        }
    }
}

/// A QEMU that ended while loading refused the stream; its reason is in its log.
fn ended_or(e: anyhow::Error, vm_alive: &dyn Fn() -> bool) -> anyhow::Error {
    // Its exit can trail the closed socket by a moment.
    std::thread::sleep(Duration::from_millis(300));
    if vm_alive() {
        e
    } else {
        anyhow::anyhow!("QEMU refused the saved state and ended")
    }
}

/// Against a real QEMU (no guest: its firmware finds nothing to boot and idles),
/// started as the engine starts it: sandboxed, with the control socket.
#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    struct Vm {
        child: Child,
        socket: std::path::PathBuf,
    }

    impl Vm {
        fn start(dir: &Path, name: &str, incoming: bool) -> Vm {
            let socket = dir.join(format!("{name}.sock"));
            let qmp = format!("unix:{},server=on,wait=off", socket.display());
            let mut cmd = Command::new("qemu-system-x86_64");
            cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
                .args(["-sandbox", super::super::qemu::SANDBOX])
                .args(["-machine", "q35", "-accel", "tcg", "-m", "64M"])
                .args(["-device", "virtio-rng-pci", "-qmp", &qmp])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if incoming {
                cmd.args(["-incoming", "defer"]);
            }
            let child = cmd.spawn().expect("starting qemu-system-x86_64");
            Vm { child, socket }
        }

        fn alive(&mut self) -> bool {
            matches!(self.child.try_wait(), Ok(None))
        }

        fn status(&self) -> String {
            let mut qmp = connect_when_listening(&self.socket, &|| true).unwrap();
            qmp.execute("query-status", None).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        }

        fn gone(mut self) -> std::process::ExitStatus {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return status;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            panic!("QEMU did not end");
        }
    }

    impl Drop for Vm {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn qemu_here() -> bool {
        let found = Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            hvbox_test_support::skip("no qemu-system-x86_64 (qemu-system-x86)");
        }
        found
    }

    #[test]
    fn a_saved_qemu_continues_in_a_new_process_and_a_full_disk_leaves_it_running() {
        if !qemu_here() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut first = Vm::start(dir.path(), "first", false);
        assert_eq!(first.status(), "running");

        // /dev/full fails every write with ENOSPC, as a full disk does.
        let full = File::options().write(true).open("/dev/full").unwrap();
        let err = save(&first.socket, &full).unwrap_err().to_string();
        assert!(err.contains("could not write the state"), "{err}");
        assert!(first.alive());
        assert_eq!(
            first.status(),
            "running",
            "a failed save continues the guest"
        );

        let state = dir.path().join("vm.state");
        let file = File::create(&state).unwrap();
        save(&first.socket, &file).unwrap();
        assert!(first.gone().success(), "QEMU quits after the save");
        let size = std::fs::metadata(&state).unwrap().len();
        assert!(size > 4096, "a state of {size} bytes");

        let mut second = Vm::start(dir.path(), "second", true);
        let pid = second.child.id();
        load(&second.socket, &state, &|| crate::process::pid_alive(pid)).unwrap();
        assert_eq!(second.status(), "running");
        assert!(second.alive());

        // A live snapshot: paused while the state is written and the disk copied,
        // then running on in the same process. (QEMU serves one QMP client at a
        // time: the copy cannot ask it anything.)
        let live = File::create(dir.path().join("live.state")).unwrap();
        let mut copied = false;
        save_paused(&second.socket, &live, &mut || {
            copied = true;
            Ok(())
        })
        .unwrap();
        assert!(copied);
        assert_eq!(second.status(), "running");
        assert!(live.metadata().unwrap().len() > 4096);
        // A copy that fails fails the save, and the guest still runs on.
        let err = save_paused(&second.socket, &live, &mut || anyhow::bail!("disk full"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "disk full");
        assert_eq!(second.status(), "running");
    }

    #[test]
    fn a_damaged_state_is_refused_and_qemu_says_why() {
        if !qemu_here() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let first = Vm::start(dir.path(), "first", false);
        assert_eq!(first.status(), "running");
        // A save whose caller was killed after `stop` leaves the guest paused; the
        // next `up` continues it.
        assert!(!continue_if_paused(&first.socket).unwrap());
        Qmp::connect(&first.socket, Duration::from_secs(10))
            .unwrap()
            .execute("stop", None)
            .unwrap();
        assert!(continue_if_paused(&first.socket).unwrap());
        assert_eq!(first.status(), "running");
        let state = dir.path().join("vm.state");
        save(&first.socket, &File::create(&state).unwrap()).unwrap();
        first.gone();
        // Cut off half-way, as a save killed mid-write would leave it.
        let len = std::fs::metadata(&state).unwrap().len();
        File::options()
            .write(true)
            .open(&state)
            .unwrap()
            .set_len(len / 2)
            .unwrap();

        let mut second = Vm::start(dir.path(), "second", true);
        let pid = second.child.id();
        let err = load(&second.socket, &state, &|| crate::process::pid_alive(pid))
            .unwrap_err()
            .to_string();
        assert!(err.contains("refused the saved state"), "{err}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(second.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert!(!second.alive());
        assert!(stderr.contains("load of migration failed"), "{stderr}");
    }
}
