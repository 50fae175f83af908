//! `hvbox supervise` with a real passt and a stand-in VM (a process that connects to
//! passt's socket as QEMU and the embedded VMM do): whatever ends the supervisor,
//! nothing it started outlives it, the port watcher's ssh included.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Connects to the socket in $1, notes it in $2, then waits; exits with $3 if given.
const FAKE_VM: &str = r#"
import os, socket, sys, time
if "BIND" in os.environ:
    socket.socket(socket.AF_UNIX).bind(os.environ["BIND"])
    print("bound")
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
open(sys.argv[2], "a").write("connected\n")
if len(sys.argv) > 3:
    sys.exit(int(sys.argv[3]))
time.sleep(600)
"#;

struct Supervised {
    _dir: tempfile::TempDir,
    machine: PathBuf,
    connections: PathBuf,
    supervisor: Child,
}

/// A failed check must not leave the supervisor (and so the VM and passt, which die
/// with it) holding the test's output open.
impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Start `hvbox supervise` with passt as `hvbox up` runs it and `vm_sh` as the VM
/// command: a shell line in which VM, SOCK and LOG stand for the stand-in VM,
/// passt's socket and the file where each connection is noted.
/// With `watcher_ssh_port`, the port watcher is on and logs in there.
fn supervise(engine: &str, vm_sh: &str, watcher_ssh_port: Option<u16>) -> Option<Supervised> {
    if !tool("passt") || !tool("python3") {
        hvbox_test_support::skip("passt or python3 is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    // A project's machine, so that hvbox's own commands can reach it.
    let machine = dir.path().join("proj/.hvbox/machines/default");
    common::create_stopped_machine(&machine);
    std::fs::write(dir.path().join("proj/hvbox.yaml"), "box: debian-12\n").unwrap();
    // As `hvbox up` lays it out: passt started by root runs as `nobody` and needs
    // to reach its socket's folder.
    let runtime = dir.path().join("run");
    let net = runtime.join("net");
    std::fs::create_dir_all(&net).unwrap();
    for d in [dir.path(), &runtime] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let chown = Command::new("chown").arg("nobody").arg(&net).status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "chown nobody {}",
            net.display()
        );
    }
    let socket = net.join("passt.sock");
    let connections = dir.path().join("connections");
    let script = dir.path().join("vm.py");
    std::fs::write(&script, FAKE_VM).unwrap();
    let vm = vm_sh
        .replace("RUNTIME", &runtime.display().to_string())
        .replace("VM", &format!("python3 {}", script.display()))
        .replace("SOCK", &socket.display().to_string())
        .replace("LOG", &connections.display().to_string());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let plan = serde_json::json!({
        "engine": engine,
        "vm_command": ["sh", "-c", vm],
        "passt_command": ["passt", "--foreground", "--one-off", "--socket", socket,
                          "-t", format!("127.0.0.1/{port}:22")],
        "passt_socket": socket,
        "control_socket": runtime.join("control.sock"),
        "console_socket": runtime.join("console.sock"),
        "runtime_dir": runtime,
        "ssh_port": watcher_ssh_port.unwrap_or(port),
        "auto_forward": watcher_ssh_port.is_some(),
    });
    std::fs::write(machine.join("launch.json"), plan.to_string()).unwrap();
    // With the widest umask: what the supervisor and its children create must be
    // the owner's alone all the same.
    let supervisor = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" supervise \"$1\""])
        .arg(env!("CARGO_BIN_EXE_hvbox"))
        .arg(&machine)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Some(Supervised {
        _dir: dir,
        machine,
        connections,
        supervisor,
    })
}

fn connections(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(") ")
            .is_some_and(|(_, s)| s.starts_with('Z'))
    })
}

fn run_pids(machine: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(machine.join("run.json")).unwrap();
    let run: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        run["vm_pid"].as_u64().unwrap(),
        run["passt_pid"].as_u64().unwrap(),
    )
}

/// SIGKILL the supervisor (nothing in it runs, its children are on their own); the
/// VM and passt it recorded must both be gone within 10 s.
fn kill_supervisor_and_expect_no_children(mut s: Supervised) {
    let (vm, passt) = run_pids(&s.machine);
    assert!(alive(vm) && alive(passt));
    s.supervisor.kill().unwrap();
    s.supervisor.wait().unwrap();
    wait_for("VM and passt are gone", Duration::from_secs(10), || {
        !alive(vm) && !alive(passt)
    });
}

#[test]
fn a_killed_supervisor_leaves_neither_vm_nor_passt() {
    let Some(s) = supervise("qemu", "exec VM SOCK LOG", None) else {
        return;
    };
    wait_for("the VM connects to passt", Duration::from_secs(20), || {
        connections(&s.connections) == 1
    });
    kill_supervisor_and_expect_no_children(s);
}

#[test]
fn destroy_stops_the_passt_of_a_supervisor_killed_before_its_vm_connected() {
    // A VM that never connects: passt, as `nobody` when root started it, has lost
    // the signal that would end it with the supervisor.
    let Some(mut s) = supervise("qemu", "exec sleep 600", None) else {
        return;
    };
    wait_for("the run file", Duration::from_secs(20), || {
        s.machine.join("run.json").exists()
    });
    let (vm, passt) = run_pids(&s.machine);
    s.supervisor.kill().unwrap();
    s.supervisor.wait().unwrap();
    wait_for("the VM is gone", Duration::from_secs(10), || !alive(vm));
    let project = s._dir.path().join("proj");
    let out = common::hvbox_isolated(&project, s._dir.path(), &["destroy", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outlived = alive(passt);
    if outlived {
        // Not left behind by the test either.
        let _ = Command::new("kill")
            .args(["-9", &passt.to_string()])
            .status();
    }
    assert!(!outlived, "passt ({passt}) outlived destroy");
    assert!(!s.machine.exists());
}

#[test]
fn a_vm_started_again_after_a_reboot_gets_a_fresh_passt() {
    // The first VM run exits with the embedded VMM's reboot code, the second stays.
    let first_boot = "if [ ! -e LOG ]; then exec VM SOCK LOG 3; else exec VM SOCK LOG; fi";
    let Some(s) = supervise("builtin", first_boot, None) else {
        return;
    };
    wait_for("the restarted VM connects", Duration::from_secs(30), || {
        connections(&s.connections) == 2
    });
    kill_supervisor_and_expect_no_children(s);
}

/// Started with umask 000, the supervisor still keeps what it and the engine create
/// (logs, run file, locks, the engine's sockets) the owner's alone.
#[test]
fn what_the_engine_creates_is_the_owners_alone() {
    use std::os::unix::fs::MetadataExt;
    let Some(s) = supervise("qemu", "BIND=RUNTIME/control.sock exec VM SOCK LOG", None) else {
        return;
    };
    wait_for("the VM connects to passt", Duration::from_secs(20), || {
        connections(&s.connections) == 1
    });
    let mode = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o777;
    let socket = s._dir.path().join("run/control.sock");
    assert_eq!(mode(&socket), 0o600, "{}", socket.display());
    for name in ["vm.log", "passt.log", "run.json", "supervisor.lock"] {
        let path = s.machine.join(name);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    kill_supervisor_and_expect_no_children(s);
}

/// The pids of processes whose command line mentions `needle`.
fn mentioning(needle: &str) -> Vec<u64> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// The port watcher logs in over ssh with the machine's key, here to a port that
/// accepts and never answers, so its ssh waits (up to its 5 s ConnectTimeout); a
/// killed supervisor takes it along at once.
#[test]
fn a_killed_supervisor_leaves_no_port_watcher_behind() {
    if !tool("ssh") {
        return hvbox_test_support::skip("no ssh client (openssh-client)");
    }
    // An "sshd" that says its version and then nothing more: the watcher's look
    // finds sshd answering and starts its ssh, which waits there for the key exchange.
    let stalling = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalling.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in stalling.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut conn, b"SSH-2.0-stalling\r\n");
            held.push(conn);
        }
    });
    let Some(s) = supervise("qemu", "exec VM SOCK LOG", Some(port)) else {
        return;
    };
    wait_for("the VM connects to passt", Duration::from_secs(20), || {
        connections(&s.connections) == 1
    });
    let key = s.machine.join("id_ed25519").display().to_string();
    wait_for("the watcher's ssh starts", Duration::from_secs(20), || {
        mentioning(&key).iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "ssh")
        })
    });
    kill_supervisor_and_expect_no_children(s);
    wait_for(
        "no ssh with the machine's key is left",
        Duration::from_secs(10),
        || mentioning(&key).is_empty(),
    );
}

#[test]
fn the_port_watcher_starts_no_ssh_until_sshd_answers() {
    if !tool("ssh") {
        return hvbox_test_support::skip("no ssh client (openssh-client)");
    }
    // Accepts connections (the kernel does) and never says a word, as a guest does
    // before its sshd starts.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let Some(s) = supervise("qemu", "exec VM SOCK LOG", Some(port)) else {
        return;
    };
    wait_for("the VM connects to passt", Duration::from_secs(20), || {
        connections(&s.connections) == 1
    });
    let key = s.machine.join("id_ed25519").display().to_string();
    // Two of the watcher's looks, and more.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(mentioning(&key), Vec::<u64>::new(), "an ssh started");
    kill_supervisor_and_expect_no_children(s);
}
