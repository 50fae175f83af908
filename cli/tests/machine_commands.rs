//! The per-machine lock, `hvbox logs` and `hvbox ssh-config`, through the real binary
//! on a fake machine folder: no VM needed.

mod common;

use common::{create_stopped_machine, hold, release, text, INSTANCE};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A project with a created, stopped machine. The folder's name has a space, so
/// paths in ssh's configuration must be quoted right.
struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("my project");
        create_stopped_machine(&root.join(".hvbox/machines/default"));
        std::fs::write(root.join("hvbox.yaml"), "box: debian-12\n").unwrap();
        Project { _tmp: tmp, root }
    }

    fn machine(&self) -> PathBuf {
        self.root.join(".hvbox/machines/default")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvbox"));
        cmd.args(args)
            .current_dir(&self.root)
            // `ssh-config` links machines' ssh_config files from the data folder.
            .env("HVBOX_DATA_DIR", self._tmp.path().join("data"));
        cmd
    }

    fn hvbox(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hvbox")
    }

    /// Pretend the machine runs: a held supervisor lock and a run.json.
    fn fake_running(&self, ssh_port: u16) -> File {
        common::fake_running(&self.machine(), ssh_port)
    }
}

#[test]
fn a_held_machine_lock_makes_other_commands_fail_at_once() {
    let project = Project::new();
    let lock = hold(&project.machine().join("machine.lock"), "4242 up\n");
    // destroy goes as far as the lock only when it need not ask.
    for args in [&["halt"][..], &["destroy", "--force"], &["up"], &["reload"]] {
        let command = args[0];
        let started = Instant::now();
        let out = project.hvbox(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains(
                "the machine `default` is already starting: another `hvbox up` (pid 4242) holds it"
            ),
            "{command}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{command} waited"
        );
    }
    assert!(project.machine().join("state.json").exists(), "destroy ran");

    release(lock, &project.machine().join("machine.lock"));
    let halt = project.hvbox(&["halt"]);
    assert!(halt.status.success(), "{}", text(&halt.stderr));
    assert!(text(&halt.stdout).contains("machine is stopped"));
    let destroy = project.hvbox(&["destroy", "--force"]);
    assert!(destroy.status.success(), "{}", text(&destroy.stderr));
    assert!(!project.root.join(".hvbox").exists(), ".hvbox/ left behind");
}

#[test]
fn other_commands_say_busy_with_the_holders_command() {
    let project = Project::new();
    let _lock = hold(&project.machine().join("machine.lock"), "77 destroy\n");
    let out = project.hvbox(&["halt"]);
    assert!(
        text(&out.stderr).contains("is busy: another `hvbox destroy` (pid 77) holds it"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_lock_file_left_by_a_dead_process_does_not_block() {
    let project = Project::new();
    // Written by a process that was killed: no flock is held on it any more.
    std::fs::write(project.machine().join("machine.lock"), "999999999 up\n").unwrap();
    let halt = project.hvbox(&["halt"]);
    assert!(halt.status.success(), "{}", text(&halt.stderr));
    let destroy = project.hvbox(&["destroy", "--force"]);
    assert!(destroy.status.success(), "{}", text(&destroy.stderr));
    assert!(!project.root.join(".hvbox").exists());
}

#[test]
fn ssh_config_is_a_host_block_ssh_accepts() {
    if Command::new("ssh").arg("-V").output().is_err() {
        return hvbox_test_support::skip("no ssh client (openssh-client)");
    }
    let project = Project::new();
    let stopped = project.hvbox(&["ssh-config"]);
    assert!(!stopped.status.success());
    assert!(
        text(&stopped.stderr).contains("the machine is stopped; `hvbox up` first"),
        "{}",
        text(&stopped.stderr)
    );

    let _running = project.fake_running(40022);
    let out = project.hvbox(&["ssh-config"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let block = text(&out.stdout);
    assert!(block.contains("\nHost hvbox-my-project\n"), "{block}");
    let config = project.root.join("ssh_config");
    std::fs::write(&config, &block).unwrap();

    let parsed = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(&config)
        .arg("hvbox-my-project")
        .output()
        .unwrap();
    let effective = text(&parsed.stdout);
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    let machine = project.machine();
    for expected in [
        "hostname 127.0.0.1".to_string(),
        "port 40022".to_string(),
        "user tester".to_string(),
        "identitiesonly yes".to_string(),
        "stricthostkeychecking true".to_string(),
        format!("hostkeyalias hvbox-{INSTANCE}"),
        format!("identityfile {}", machine.join("id_ed25519").display()),
        format!(
            "userknownhostsfile {}",
            machine.join("known_hosts").display()
        ),
    ] {
        assert!(
            effective.lines().any(|l| l == expected),
            "no `{expected}` in ssh -G's output:\n{effective}"
        );
    }
}

#[test]
fn logs_prints_the_serial_log_and_follows_it() {
    let project = Project::new();
    let missing = project.hvbox(&["logs"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no serial log"));

    let log = project.machine().join("serial.log");
    std::fs::write(&log, "Linux version 6.1.0\n").unwrap();
    let out = project.hvbox(&["logs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Linux version 6.1.0\n");

    let mut follower = project
        .command(&["logs", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => seen.push_str(&text(&chunk)),
                Err(_) => panic!("`logs -f` never showed {needle:?}; it showed:\n{seen}"),
            }
        }
    };
    wait_for("Linux version 6.1.0");
    // The next boot appends to the same file.
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(b"second boot\n").unwrap();
    wait_for("second boot");
    // Destroyed and created again: a new file, read from its start.
    std::fs::remove_file(&log).unwrap();
    std::fs::write(&log, "a new machine\n").unwrap();
    wait_for("a new machine");
    follower.kill().unwrap();
    follower.wait().unwrap();
}

/// The guest writes the serial log, so `hvbox logs` shows its escape sequences and
/// control characters instead of handing them to the terminal.
#[test]
fn logs_shows_the_guests_escape_sequences_rather_than_passing_them_on() {
    let project = Project::new();
    let log = project.machine().join("serial.log");
    std::fs::write(
        &log,
        b"[  OK  ] \x1b[0;32mStarted\x1b[0m\tsshd\r\n\x1b]0;retitled\x07\x9b2J bye\r\n",
    )
    .unwrap();
    let out = project.hvbox(&["logs"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "[  OK  ] \\x1b[0;32mStarted\\x1b[0m\tsshd\r\n\\x1b]0;retitled\\x07\\x9b2J bye\r\n"
    );
}

/// A `disk:` smaller than a stopped machine's disk is refused before anything boots,
/// and the disk keeps its size.
#[test]
fn a_smaller_disk_is_refused_before_boot() {
    let project = Project::new();
    let disk = project.machine().join("disk.raw");
    File::create(&disk).unwrap().set_len(3 << 30).unwrap();
    std::fs::write(
        project.root.join("hvbox.yaml"),
        "box: debian-12\nengine: qemu\ndisk: 2G\n",
    )
    .unwrap();
    let out = project.hvbox(&["up"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "disk: 2G in hvbox.yaml is smaller than the machine's disk, which has 3G: a disk cannot shrink"
        ),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 3 << 30);
    assert!(!project.machine().join("run.json").exists());
}

/// `hvbox copy` says what is wrong before it runs scp: a stopped machine, no path
/// in a machine at all, a host source that is not there.
#[test]
fn copy_refuses_clearly_before_anything_is_sent() {
    let project = Project::new();
    std::fs::write(project.root.join("notes.txt"), "hi\n").unwrap();
    let out = project.hvbox(&["copy", "notes.txt", ":/tmp/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the machine is stopped; run `hvbox up` first"),
        "{}",
        text(&out.stderr)
    );
    let out = project.hvbox(&["copy", "notes.txt", "copy.txt"]);
    assert!(
        text(&out.stderr).contains("none of the paths is in a machine"),
        "{}",
        text(&out.stderr)
    );
    let _running = project.fake_running(1);
    let out = project.hvbox(&["copy", "missing.txt", "default:/tmp/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.txt does not exist on the host"),
        "{}",
        text(&out.stderr)
    );
    // Exactly one destination: clap refuses a lone path.
    assert_eq!(project.hvbox(&["copy", "notes.txt"]).status.code(), Some(2));
}

/// A mount whose virtiofsd ended (the supervisor records it) shows in `status`.
#[test]
fn status_shows_a_lost_mount() {
    let project = Project::new();
    let _running = project.fake_running(2222);
    let run_file = project.machine().join("run.json");
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run_file).unwrap()).unwrap();
    run["mounts"] = serde_json::json!([{"host": "/home/me/proj", "guest": "/home/me/proj"}]);
    run["lost_mounts"] = serde_json::json!(["/home/me/proj -> /home/me/proj"]);
    std::fs::write(&run_file, run.to_string()).unwrap();
    let out = project.hvbox(&["status"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("running, mount lost: /home/me/proj -> /home/me/proj"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&project.hvbox(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["lost_mounts"][0], "/home/me/proj -> /home/me/proj");
    assert_eq!(json[0]["mounts"][0]["guest"], "/home/me/proj");
}
