//! `hvbox destroy` asks before deleting, on a real terminal (tmux), and refuses
//! without one unless given --force.

mod common;

use common::{create_stopped_machine, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SPEC: &str = "box: debian-12\nmachines:\n  web:\n  db:\n";

struct Project {
    tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("shop");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hvbox.yaml"), SPEC).unwrap();
        for name in ["web", "db"] {
            create_stopped_machine(&root.join(".hvbox/machines").join(name));
        }
        Project { tmp, root }
    }

    fn machine(&self, name: &str) -> PathBuf {
        self.root.join(".hvbox/machines").join(name)
    }

    fn hvbox(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_hvbox"))
            .args(args)
            .current_dir(&self.root)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

/// A tmux server of the test's own, with one window running `command` in `dir`.
struct Terminal {
    socket: PathBuf,
}

impl Terminal {
    fn start(dir: &Path, socket: PathBuf, command: &str) -> Option<Terminal> {
        if Command::new("tmux").arg("-V").output().is_err() {
            hvbox_test_support::skip("no tmux");
            return None;
        }
        // The shell keeps the window after hvbox exits, so its last lines stay readable.
        let script = format!("{command}; echo \"exit status $?\"; sleep 60");
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["new-session", "-d", "-x", "200", "-y", "40", "-c"])
            .arg(dir)
            .args(["sh", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Some(Terminal { socket })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// The screen once it shows `wanted` (joined lines, as tmux wraps long ones).
    fn wait_for(&self, wanted: &str) -> String {
        let started = Instant::now();
        loop {
            let screen = self.tmux(&["capture-pane", "-p", "-J"]);
            if screen.contains(wanted) {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no {wanted:?} on the terminal:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_line(&self, line: &str) {
        self.tmux(&["send-keys", line, "Enter"]);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

fn hvbox_line(args: &str) -> String {
    format!("'{}' {args}", env!("CARGO_BIN_EXE_hvbox"))
}

#[test]
fn on_a_terminal_destroy_asks_and_no_keeps_everything() {
    let project = Project::new();
    let Some(term) = Terminal::start(
        &project.root,
        project.tmp.path().join("tmux"),
        &hvbox_line("destroy"),
    ) else {
        return;
    };
    let screen = term.wait_for("[y/N]");
    let root = project.root.display();
    assert!(
        screen.contains(&format!(
            "Destroy 2 machines: `web` (stopped), `db` (stopped) in {root}? This deletes their disk, keys, logs and snapshots ("
        )),
        "{screen}"
    );
    term.type_line("n");
    let screen = term.wait_for("exit status");
    assert!(screen.contains("hvbox: nothing destroyed"), "{screen}");
    assert!(screen.contains("exit status 1"), "{screen}");
    assert!(project.machine("web").exists() && project.machine("db").exists());
}

#[test]
fn on_a_terminal_yes_destroys_the_machine_named() {
    let project = Project::new();
    let Some(term) = Terminal::start(
        &project.root,
        project.tmp.path().join("tmux"),
        &hvbox_line("destroy db"),
    ) else {
        return;
    };
    let screen = term.wait_for("[y/N]");
    assert!(
        screen.contains("Destroy the machine `db` (stopped) in "),
        "{screen}"
    );
    assert!(screen.contains("This deletes its disk, keys"), "{screen}");
    term.type_line("y");
    let screen = term.wait_for("exit status");
    assert!(screen.contains("==> db: machine destroyed"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
    assert!(!project.machine("db").exists() && project.machine("web").exists());
}

#[test]
fn without_a_terminal_destroy_needs_force() {
    let project = Project::new();
    let out = project.hvbox(&["destroy", "web"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("hvbox: error: not destroying the machine `web` (stopped) in "),
        "{err}"
    );
    assert!(
        err.ends_with("/shop without asking: standard input is not a terminal to ask on; pass --force (-f) to go ahead without asking\n"),
        "{err}"
    );
    assert!(project.machine("web").exists());

    let out = project.hvbox(&["destroy", "-f", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "==> web: machine destroyed\n");
    assert!(!project.machine("web").exists());

    // Nothing left to delete: nothing to ask about.
    let out = project.hvbox(&["destroy", "web"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "==> web: machine is not created\n");
}
