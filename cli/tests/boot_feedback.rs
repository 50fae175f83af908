//! What `hvbox up` shows while it waits for the guest: a live status line on a real
//! terminal (tmux), plain lines in a pipe. The machine is real as far as hvbox goes
//! (a box disk with a kernel, the supervisor, passt); its engine is a stand-in
//! `qemu-system-x86_64` that writes a Debian guest's serial lines to the serial
//! log hvbox hands it, then exits: no guest boots, the wait and its end are hvbox's.

mod common;
#[path = "../../provisioner/tests/common/mod.rs"]
mod disks;

use common::text;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Serial lines as QEMU writes them to the log (`\r\n`, systemd's colours), one
/// stage each, with pauses a terminal shows in between; then the VM ends.
const FAKE_QEMU: &str = r#"#!/bin/sh
case "$1" in --version) echo "QEMU emulator version 8.2.2"; exit 0;; esac
sleep 1
printf '[    0.000000] Linux version 6.1.0-10-cloud-amd64 (debian-kernel@lists.debian.org)\r\n' >&3
sleep 2
printf '[   10.907820] systemd[1]: systemd 252.39-1~deb12u2 running in system mode\r\n' >&3
sleep 3
printf '[\033[0;32m  OK  \033[0m] Reached target \033[0;1;39mnetwork.target\033[0m - Network.\r\n' >&3
sleep 2
exit 1
"#;

const SPINNER: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";

struct Setup {
    tmp: tempfile::TempDir,
    project: PathBuf,
}

impl Setup {
    fn new() -> Option<Setup> {
        for tool in ["passt", "mkfs.ext4", "sfdisk", "sha512sum"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
            {
                hvbox_test_support::skip(format!("{tool} is not installed"));
                return None;
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let boxdir = home.join("data/boxes/tiny");
        std::fs::create_dir_all(&boxdir).unwrap();
        let disk = disks::debian_disk(tmp.path());
        std::fs::rename(disk, boxdir.join("disk.raw")).unwrap();
        let sums = Command::new("sha512sum")
            .arg("disk.raw")
            .current_dir(&boxdir)
            .output()
            .unwrap();
        std::fs::write(boxdir.join("SHA512SUMS"), sums.stdout).unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let qemu = bin.join("qemu-system-x86_64");
        std::fs::write(&qemu, FAKE_QEMU).unwrap();
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        let project = tmp.path().join("proj");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("hvbox.yaml"), "box: tiny\nengine: qemu\n").unwrap();
        Some(Setup { tmp, project })
    }

    /// The environment of an isolated hvbox with the stand-in QEMU first on PATH.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = common::isolated_env(&self.tmp.path().join("home"));
        let path = std::env::var("PATH").unwrap_or_default();
        env.push((
            "PATH".into(),
            format!("{}:{path}", self.tmp.path().join("bin").display()),
        ));
        env
    }

    fn hvbox(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_hvbox"))
            .args(args)
            .envs(self.env())
            .env_remove("TERM")
            .current_dir(&self.project)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.hvbox(&["destroy", "--force"]);
    }
}

/// `up` on a real terminal: while the guest boots, one line redrawn in place with
/// a spinner, the seconds, the stage and the serial log's last line; once the
/// wait is over the line is gone.
#[test]
fn on_a_terminal_up_shows_one_live_status_line_and_leaves_none() {
    let Some(setup) = Setup::new() else { return };
    let Some(tmux) = up_on_a_terminal(&setup) else {
        return;
    };

    let screen = tmux.wait_for(|s| status_line(s).is_some_and(|l| l.contains("systemd[1]")));
    let line = status_line(&screen).unwrap();
    // `⠼    4s  systemd      [   10.907820] systemd[1]: systemd 252.39-1~deb12u2 …`
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(
        fields[1].ends_with('s') && fields[1].trim_end_matches('s').parse::<u64>().is_ok(),
        "no elapsed seconds in {line:?}"
    );
    assert_eq!(fields[2], "systemd", "{line:?}");
    assert!(
        line.chars().count() < 120,
        "wider than the terminal: {line:?}"
    );

    let screen = tmux.wait_for(|s| status_line(s).is_some_and(|l| l.contains("network.target")));
    let line = status_line(&screen).unwrap();
    assert!(
        line.contains(" network ")
            && line.contains("[  OK  ] Reached target network.target - Network."),
        "the colours are not stripped, or the stage is not network: {line:?}"
    );

    let screen = tmux.wait_for(|s| s.contains("exit status"));
    assert!(
        status_line(&screen).is_none(),
        "a status line is left over:\n{screen}"
    );
    assert!(
        screen.contains("the VM exited before ssh answered"),
        "{screen}"
    );
    assert!(screen.contains("exit status 1"), "{screen}");
    assert!(
        !screen.contains("boot stage:"),
        "plain lines on a terminal:\n{screen}"
    );
}

/// `hvbox up` in a tmux terminal of the test's own (120 columns).
fn up_on_a_terminal(setup: &Setup) -> Option<Tmux> {
    if Command::new("tmux").arg("-V").output().is_err() {
        hvbox_test_support::skip("no tmux");
        return None;
    }
    let socket = setup.tmp.path().join("tmux");
    let env: String = setup
        .env()
        .iter()
        .map(|(k, v)| format!("{k}='{v}' "))
        .collect();
    let script = format!(
        // The shell outlives a Ctrl-C (a trap, which hvbox does not inherit) to
        // print hvbox's exit status.
        "trap true INT; env {env} '{}' up; echo \"exit status $?\"; sleep 60",
        env!("CARGO_BIN_EXE_hvbox")
    );
    let status = Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .args(["new-session", "-d", "-x", "120", "-y", "40", "-c"])
        .arg(&setup.project)
        .args(["sh", "-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "tmux new-session failed");
    let tmux = Tmux(socket);
    Some(tmux)
}

/// Ctrl-C while the status line shows: hvbox ends, and the line goes with it.
#[test]
fn ctrl_c_during_the_wait_leaves_no_status_line() {
    let Some(setup) = Setup::new() else { return };
    let Some(tmux) = up_on_a_terminal(&setup) else {
        return;
    };
    tmux.wait_for(|s| status_line(s).is_some_and(|l| l.contains("kernel")));
    let out = Command::new("tmux")
        .arg("-S")
        .arg(&tmux.0)
        .args(["send-keys", "C-c"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let screen = tmux.wait_for(|s| s.contains("exit status"));
    assert!(screen.contains("exit status 130"), "{screen}");
    assert!(
        status_line(&screen).is_none(),
        "a status line is left over:\n{screen}"
    );
}

/// `kill` while the status line shows: hvbox ends by the signal, as it would
/// without a status line (the shell sees 128 + 15), and the line goes with it.
#[test]
fn sigterm_during_the_wait_leaves_no_status_line() {
    let Some(setup) = Setup::new() else { return };
    let Some(tmux) = up_on_a_terminal(&setup) else {
        return;
    };
    tmux.wait_for(|s| status_line(s).is_some_and(|l| l.contains("kernel")));
    // The pane's shell runs hvbox as its only child.
    let out = Command::new("tmux")
        .arg("-S")
        .arg(&tmux.0)
        .args(["display-message", "-p", "#{pane_pid}"])
        .output()
        .unwrap();
    let shell = text(&out.stdout).trim().to_string();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let hvbox: libc::pid_t = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: a signal to the hvbox this test started.
    assert_eq!(unsafe { libc::kill(hvbox, libc::SIGTERM) }, 0);
    let screen = tmux.wait_for(|s| s.contains("exit status"));
    assert!(screen.contains("exit status 143"), "{screen}");
    assert!(
        status_line(&screen).is_none(),
        "a status line is left over:\n{screen}"
    );
}

/// `hvbox up &` from an interactive shell: the terminal is stdout still, but the
/// shell's prompt is on the line a status line would take, so none is drawn while
/// hvbox is in the background; brought back with `fg`, it shows again.
#[test]
fn in_the_background_up_draws_no_status_line_over_the_prompt() {
    let Some(setup) = Setup::new() else { return };
    let Some(tmux) = shell_on_a_terminal(&setup) else {
        return;
    };
    tmux.send(&[&format!("'{}' up &", env!("CARGO_BIN_EXE_hvbox")), "Enter"]);
    tmux.wait_for(|s| s.lines().any(|l| l.starts_with("[1] ")));

    // Until the guest's systemd line is in the serial log, hvbox has been waiting
    // for seconds, a status line redrawn each tick had it been in the foreground.
    let started = Instant::now();
    while !serial_log(&setup).is_some_and(|log| log.contains("systemd[1]")) {
        let screen = tmux.capture();
        assert!(
            status_line(&screen).is_none(),
            "a status line in the background:\n{screen}"
        );
        let after_job: Vec<&str> = screen
            .lines()
            .skip_while(|l| !l.starts_with("[1] "))
            .collect();
        // (The box download's plain lines may follow the prompt on its line.)
        assert!(
            after_job.iter().any(|l| l.starts_with(PROMPT.trim_end())),
            "the prompt was erased:\n{screen}"
        );
        // Nor a download bar or spinner (braille dots), which redraw their line.
        assert!(
            !after_job
                .iter()
                .any(|l| l.contains("downloading tiny disk [")
                    || l.starts_with(|c| ('\u{2800}'..='\u{28ff}').contains(&c))),
            "a download bar in the background:\n{screen}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the guest never booted:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    tmux.send(&["fg", "Enter"]);
    let screen = tmux.wait_for(|s| status_line(s).is_some_and(|l| l.contains(" network ")));
    assert!(screen.contains(PROMPT), "{screen}");
    // Typed only once hvbox is done: the terminal echoes keys typed ahead after
    // the status line, and a row the line wraps onto is no longer its to clear.
    let screen = tmux.wait_for(|s| s.contains("the VM exited before ssh answered"));
    assert!(
        status_line(&screen).is_none(),
        "a status line is left over:\n{screen}"
    );
    tmux.send(&["echo exit status $?", "Enter"]);
    tmux.wait_for(|s| s.contains("exit status 1"));
}

const PROMPT: &str = "hvbox-test$ ";

/// An interactive shell (with job control) in a tmux terminal of the test's own,
/// its environment that of an isolated hvbox.
fn shell_on_a_terminal(setup: &Setup) -> Option<Tmux> {
    if Command::new("tmux").arg("-V").output().is_err() {
        hvbox_test_support::skip("no tmux");
        return None;
    }
    let socket = setup.tmp.path().join("tmux");
    let status = Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .args(["new-session", "-d", "-x", "120", "-y", "40", "-c"])
        .arg(&setup.project)
        .arg("env")
        .args(setup.env().iter().map(|(k, v)| format!("{k}={v}")))
        .arg(format!("PS1={PROMPT}"))
        .args(["bash", "--norc", "--noprofile", "-i"])
        .status()
        .unwrap();
    assert!(status.success(), "tmux new-session failed");
    let tmux = Tmux(socket);
    // Keys typed while the shell starts may be lost: ask until it answers.
    let started = Instant::now();
    loop {
        tmux.send(&["echo shell-$((20+22))", "Enter"]);
        std::thread::sleep(Duration::from_millis(500));
        let screen = tmux.capture();
        if screen.lines().any(|l| l == "shell-42") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the shell never answered:\n{screen}"
        );
    }
    Some(tmux)
}

/// The machine's serial log, once there is one.
fn serial_log(setup: &Setup) -> Option<String> {
    fn find(dir: &std::path::Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if entry.file_type().ok()?.is_dir() {
                if let Some(found) = find(&path) {
                    return Some(found);
                }
            } else if entry.file_name() == "serial.log" {
                return Some(path);
            }
        }
        None
    }
    let path = find(setup.tmp.path())?;
    std::fs::read_to_string(path).ok()
}

/// In a pipe: a plain line per stage reached, and no control characters at all.
#[test]
fn without_a_terminal_up_prints_a_plain_line_per_stage() {
    let Some(setup) = Setup::new() else { return };
    let out = setup.hvbox(&["up"]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "the stand-in VM exits: {stdout}");
    let stages: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("==> boot stage: "))
        .map(|l| l.split_once(" (").map_or(l, |(stage, _)| stage))
        .collect();
    assert_eq!(stages, ["kernel", "systemd", "network"], "{stdout}");
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "control characters in {stdout:?}"
    );
    assert!(
        !stdout.chars().any(|c| SPINNER.contains(c)),
        "a spinner in a pipe: {stdout}"
    );
}

/// The line on `screen` that starts with a spinner frame.
fn status_line(screen: &str) -> Option<&str> {
    screen
        .lines()
        .find(|l| l.chars().next().is_some_and(|c| SPINNER.contains(c)))
}

struct Tmux(PathBuf);

impl Tmux {
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.0)
            .args(["capture-pane", "-p"])
            .output()
            .unwrap();
        text(&out.stdout)
    }

    fn send(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.0)
            .arg("send-keys")
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys failed");
    }

    fn wait_for(&self, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the terminal never showed it:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.0)
            .arg("kill-server")
            .status();
    }
}
