//! hvbox's ssh against a real OpenSSH sshd on a loopback port (standing in for a
//! guest's): one shared connection for repeated `hvbox ssh -- CMD`, ssh options
//! after `--` where ssh wants them, the machine's ssh_config reached through
//! `hvbox ssh-config --include` by plain ssh and scp, and `halt` and `destroy`
//! closing the shared connection so that no ssh is left behind.

mod common;

use common::{text, INSTANCE};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sshd_binary() -> Option<PathBuf> {
    ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(path: &Path) -> String {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// Kills what it holds when the test ends, passed or failed.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child leading its own process group, killed with the whole group.
struct KilledGroup(Child);

impl Drop for KilledGroup {
    fn drop(&mut self) {
        let group = -(self.0.id() as i32);
        // SAFETY: kill(2) with a negative pid only sends a signal to that group.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Processes whose command line mentions `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

#[test]
fn one_shared_connection_for_hvbox_and_plain_ssh_closed_by_halt_and_destroy() {
    let Some(sshd) = sshd_binary() else {
        return hvbox_test_support::skip("no sshd (openssh-server)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let user = text(&run(Command::new("id").arg("-un")).stdout)
        .trim()
        .to_string();

    // The project and its machine, as `hvbox up` leaves them.
    let project = t.join("proj");
    let machine = project.join(".hvbox/machines/default");
    std::fs::create_dir_all(&machine).unwrap();
    std::fs::write(project.join("hvbox.yaml"), "box: debian-12\n").unwrap();
    let state = serde_json::json!({
        "instance_id": INSTANCE, "mac": "52:54:00:12:34:56", "hostname": "guest",
        "user": user, "box_name": "debian-12", "box_disk_digest": "sha256:00",
        "created_unix": 0,
    });
    std::fs::write(machine.join("state.json"), state.to_string()).unwrap();
    let user_key = keygen(&machine.join("id_ed25519"));
    let host_key = keygen(&t.join("host_key"));
    std::fs::write(
        machine.join("known_hosts"),
        format!("hvbox-{INSTANCE} {host_key}"),
    )
    .unwrap();

    // The "guest": sshd as this user, on a loopback port.
    let port = free_port();
    std::fs::write(t.join("authorized_keys"), &user_key).unwrap();
    std::fs::write(
        t.join("sshd_config"),
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\nSubsystem sftp internal-sftp\n",
            t.join("host_key").display(),
            t.join("authorized_keys").display()
        ),
    )
    .unwrap();
    // Root's sshd wants its privilege separation folder, which the package's
    // service would make.
    if text(&run(Command::new("id").arg("-u")).stdout).trim() == "0" {
        std::fs::create_dir_all("/run/sshd").unwrap();
    }
    let sshd_log = std::fs::File::create(t.join("sshd.log")).unwrap();
    let _sshd = Killed(
        Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(t.join("sshd_config"))
            .stderr(sshd_log)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sshd does not listen: {}",
            std::fs::read_to_string(t.join("sshd.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A "supervisor" holding the machine's lock, as a running machine has.
    let run_dir = t.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let start_supervisor = || {
        let mut supervisor = Killed(
            Command::new("sh")
                .args([
                    "-c",
                    "exec 9>>\"$0\"; flock -x 9; echo locked; exec sleep 600",
                ])
                .arg(machine.join("supervisor.lock"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut said = [0u8; 7];
        let out = supervisor.0.stdout.as_mut().unwrap();
        out.read_exact(&mut said).unwrap();
        let pid = supervisor.0.id();
        let run_json = serde_json::json!({
            "supervisor_pid": pid, "vm_pid": pid, "passt_pid": pid, "engine": "qemu",
            "ssh_port": port, "control_socket": t.join("none.sock"),
            "console_socket": t.join("none.sock"),
            "runtime_dir": run_dir.join("hvbox").join(INSTANCE),
        });
        std::fs::write(machine.join("run.json"), run_json.to_string()).unwrap();
        supervisor
    };
    let _supervisor = start_supervisor();

    let hvbox = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvbox"));
        cmd.args(args)
            .current_dir(&project)
            .env("HOME", t.join("home"))
            .env("HVBOX_DATA_DIR", t.join("data"))
            .env("XDG_RUNTIME_DIR", &run_dir);
        cmd
    };
    let ok = |args: &[&str]| {
        let out = run(&mut hvbox(args));
        assert!(
            out.status.success(),
            "hvbox {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let control = run_dir.join("hvbox").join(INSTANCE).join("ssh");

    assert_eq!(ok(&["ssh", "--", "echo", "hello"]), "hello\n");
    assert!(
        control.exists(),
        "no shared connection at {}",
        control.display()
    );
    assert_eq!(ok(&["ssh", "--", "echo", "again"]), "again\n");
    // From another login session (another XDG_RUNTIME_DIR) the run file still
    // leads to the same connection.
    let other_session = t.join("other-run");
    std::fs::create_dir_all(&other_session).unwrap();
    let out =
        run(hvbox(&["ssh", "--", "echo", "elsewhere"]).env("XDG_RUNTIME_DIR", &other_session));
    assert_eq!(text(&out.stdout), "elsewhere\n", "{}", text(&out.stderr));
    // A control command after `--` reaches that connection's master.
    let out = run(&mut hvbox(&["ssh", "--", "-O", "check"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Master running"),
        "{}",
        text(&out.stderr)
    );

    // `-L` after `--` is ssh's: the forwarded port answers with sshd's banner. A
    // call given ssh options logs in on its own, so the options apply.
    let forwarded = free_port();
    let forward = format!("{forwarded}:127.0.0.1:{port}");
    // In a process group of its own: its ssh (not sharing the connection) goes too.
    let _session = KilledGroup(
        hvbox(&["ssh", "--", "-L", &forward, "sleep", "20"])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let banner = loop {
        let mut banner = [0u8; 7];
        if let Ok(mut conn) = TcpStream::connect(("127.0.0.1", forwarded)) {
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            if conn.read_exact(&mut banner).is_ok() {
                break banner;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing forwarded on {forwarded}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(&banner, b"SSH-2.0");

    // Plain ssh and scp through the Include line.
    let blocks = ok(&["ssh-config"]);
    assert!(blocks.contains("\nHost hvbox-proj\n"), "{blocks}");
    let include = ok(&["ssh-config", "--include"]);
    assert_eq!(
        include,
        format!("Include {}/ssh/*\n", t.join("data").display())
    );
    let own = std::fs::read_to_string(machine.join("ssh_config")).unwrap();
    assert!(own.contains("Host hvbox-proj\n"), "{own}");
    assert!(own.contains(&format!("  Port {port}\n")), "{own}");
    assert!(own.contains("  ControlMaster auto\n"), "{own}");
    std::fs::write(t.join("user_config"), &include).unwrap();
    let out = run(Command::new("ssh")
        .arg("-F")
        .arg(t.join("user_config"))
        .args(["hvbox-proj", "echo", "plain ssh"]));
    assert!(out.status.success(), "ssh: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "plain ssh\n");
    std::fs::write(t.join("sent.txt"), "through scp\n").unwrap();
    let out = run(Command::new("scp")
        .arg("-F")
        .arg(t.join("user_config"))
        .arg(t.join("sent.txt"))
        .arg(format!("hvbox-proj:{}", t.join("received.txt").display())));
    assert!(out.status.success(), "scp: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(t.join("received.txt")).unwrap(),
        "through scp\n"
    );

    // The rest went through one login: two in all, the `-L` session's its own.
    let log = std::fs::read_to_string(t.join("sshd.log")).unwrap();
    assert_eq!(log.matches("Accepted publickey").count(), 2, "{log}");

    // halt closes the shared connection before it stops the machine (here, by
    // killing the stand-in supervisor): no ssh is left holding it.
    let control_text = control.display().to_string();
    assert!(!processes_naming(&control_text).is_empty());
    drop(_session);
    let out = run(&mut hvbox(&["halt", "--timeout", "1"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!control.exists());
    assert_eq!(processes_naming(&control_text), Vec::<String>::new());

    // A machine whose supervisor was killed (no halt) is stopped, its shared
    // connection still open: destroy closes it too.
    let mut supervisor = start_supervisor();
    assert_eq!(ok(&["ssh", "--", "echo", "back"]), "back\n");
    assert!(!processes_naming(&control_text).is_empty());
    supervisor.0.kill().unwrap();
    supervisor.0.wait().unwrap();
    assert!(ok(&["status"]).contains("stopped"));
    ok(&["destroy", "--force"]);
    assert!(!control.exists());
    assert_eq!(processes_naming(&control_text), Vec::<String>::new());
    assert!(!t.join("data/ssh/hvbox-proj").exists(), "link left behind");
}

#[test]
fn aliases_are_unique_per_project_and_kept_across_boots() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("data");
    let mut held = Vec::new();
    let mut projects = Vec::new();
    for (parent, port) in [("a", 40101), ("b", 40102)] {
        let project = t.join(parent).join("app");
        let machine = project.join(".hvbox/machines/default");
        common::create_stopped_machine(&machine);
        std::fs::write(project.join("hvbox.yaml"), "box: debian-12\n").unwrap();
        held.push(common::fake_running(&machine, port));
        projects.push(project);
    }
    let ssh_config = |project: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_hvbox"))
            .arg("ssh-config")
            .current_dir(project)
            .env("HVBOX_DATA_DIR", &data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(ssh_config(&projects[0]).contains("\nHost hvbox-app\n"));
    assert!(ssh_config(&projects[1]).contains("\nHost hvbox-app-2\n"));
    // Again, in the other order: each keeps its own.
    assert!(ssh_config(&projects[1]).contains("\nHost hvbox-app-2\n"));
    assert!(ssh_config(&projects[0]).contains("\nHost hvbox-app\n"));
    let mut links: Vec<String> = std::fs::read_dir(data.join("ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    links.sort();
    assert_eq!(links, ["hvbox-app", "hvbox-app-2"]);
    assert_eq!(
        std::fs::read_link(data.join("ssh/hvbox-app-2")).unwrap(),
        projects[1].join(".hvbox/machines/default/ssh_config")
    );
}
