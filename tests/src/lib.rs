//! Harness for hvbox's end-to-end tests: the built `hvbox` binary, a test box built
//! once per machine and cached outside the checkout, a real HTTP server on loopback,
//! and throwaway projects with their own cache.

pub mod cpio;
pub mod crash;
pub mod guests;
mod http;
pub mod kernel_modules;
pub mod kernel_upgrade;
pub mod lab;

pub use http::HttpServer;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `hvbox` binary cargo built next to this test executable.
pub fn hvbox_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HVBOX_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/hvbox
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join("hvbox");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// Where test artifacts that outlive a checkout are kept (the built box).
pub fn test_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HVBOX_TEST_CACHE") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache"));
    base.join("hvbox-tests")
}

/// A box built by `hvbox box build` (reused while its recipe is unchanged).
pub struct TestBox {
    pub dir: PathBuf,
    pub digest: String,
}

impl TestBox {
    /// A box `hvbox box build --output DIR` made.
    pub fn from_dir(dir: PathBuf) -> TestBox {
        let sums = std::fs::read_to_string(dir.join("SHA512SUMS")).expect("SHA512SUMS of the box");
        let hex = sums
            .lines()
            .find(|l| l.ends_with(" disk.raw"))
            .and_then(|l| l.split_whitespace().next())
            .expect("disk.raw line in SHA512SUMS")
            .to_string();
        TestBox {
            dir,
            digest: format!("sha512:{hex}"),
        }
    }

    /// A spec `box:` mapping for this box read straight from its folder.
    pub fn file_box_yaml(&self) -> String {
        format!(
            "box:\n  disk:\n    url: file://{}\n    digest: \"{}\"\n",
            self.dir.join("disk.raw").display(),
            self.digest
        )
    }
}

/// hvbox's own box, with git (the shared-folder test runs `git status` in the guest)
/// and sshfs (scripts/bench-mounts compares virtio-fs with it).
pub fn test_box() -> TestBox {
    let dir = test_cache_dir().join("box-bookworm");
    let out = Command::new(hvbox_bin())
        .args([
            "box",
            "build",
            "hvbox-test",
            "--packages",
            "git,sshfs",
            "--output",
        ])
        .arg(&dir)
        .output()
        .expect("running hvbox box build");
    assert!(
        out.status.success(),
        "hvbox box build failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    TestBox::from_dir(dir)
}

/// A project folder of its own, with a private box cache and data folder, so tests
/// neither share nor disturb the user's.
pub struct TestProject {
    pub dir: tempfile::TempDir,
    pub cache: PathBuf,
}

impl TestProject {
    pub fn new(spec: &str) -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("hvbox-e2e-")
            .tempdir()
            .expect("temp project");
        std::fs::write(dir.path().join("hvbox.yaml"), spec).expect("write spec");
        let cache = dir.path().join("cache");
        TestProject { dir, cache }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `hvbox ARGS…` in the project folder, with the project's own cache and data
    /// folder, and the widest umask: machine state must be private all the same.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "umask 000; exec \"$0\" \"$@\""])
            .arg(hvbox_bin())
            .args(args)
            .current_dir(self.path())
            .env("HVBOX_CACHE_DIR", &self.cache)
            .env("HVBOX_DATA_DIR", self.path().join("data"));
        cmd
    }

    /// Run `hvbox ARGS…` in the project folder.
    pub fn hvbox(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running hvbox")
    }

    /// Start `hvbox ARGS…` with piped stdin and stdout, for interactive commands.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting hvbox")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.hvbox(args);
        assert!(
            out.status.success(),
            "`hvbox {}` failed ({}):\nstdout:\n{}\nstderr:\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.last_boots()
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// From each machine's serial log, the last boot's lines about mounts and failures
    /// and its last lines: the guest's side of a failure, gone once the test's
    /// machines are destroyed.
    pub fn last_boots(&self) -> String {
        let mut found = String::new();
        let machines = self.path().join(".hvbox/machines");
        for entry in std::fs::read_dir(machines).into_iter().flatten().flatten() {
            let Ok(raw) = std::fs::read(entry.path().join("serial.log")) else {
                continue;
            };
            let log = String::from_utf8_lossy(&raw);
            let boot = log.rfind("Linux version").map_or(&log[..], |at| &log[at..]);
            let notable: Vec<&str> = boot
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("mount") || l.contains("fail") || l.contains("error")
                })
                .take(60)
                .collect();
            found.push_str(&format!(
                "\n--- {} serial log, last boot: mounts and failures\n{}\n--- its last lines\n{}",
                entry.file_name().to_string_lossy(),
                notable.join("\n"),
                lab::last_lines(boot, 25)
            ));
        }
        found
    }

    /// Files under the private cache's blob folder.
    pub fn cached_blobs(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.cache.join("blobs")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    found.push(e.path());
                }
            }
        }
        found
    }
}

impl Drop for TestProject {
    /// Never leave a VM running behind a failed test.
    fn drop(&mut self) {
        if self.path().join(".hvbox").exists() {
            let _ = self.hvbox(&["destroy", "--force"]);
        }
    }
}

/// Processes whose command line mentions `needle` (other than this test itself).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

pub fn tool_exists(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Tools the end-to-end tests drive; missing ones are an installation problem.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        assert!(
            tool_exists(tool),
            "`{tool}` is not installed; run scripts/install-deps (see the README)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_shows_the_last_boots_mounts_failures_and_end() {
        let project = TestProject::new("");
        let dir = project.path().join(".hvbox/machines/web");
        std::fs::create_dir_all(&dir).unwrap();
        let log = "[    0.0] Linux version 6.1 (first boot)\n[    5.0] Failed to mount old\n\
                   [    0.0] Linux version 6.1 (last boot)\n[    4.0] Mounting /srv...\n\
                   [    4.1] tmp-x.mount: Mount process exited, code=exited, status=32/n/a\n\
                   [    9.0] Reached target multi-user.target\n";
        std::fs::write(dir.join("serial.log"), log).unwrap();
        let shown = project.last_boots();
        std::fs::remove_dir_all(project.path().join(".hvbox")).unwrap();
        assert!(shown.contains("--- web serial log"), "{shown}");
        assert!(shown.contains("Mount process exited"), "{shown}");
        assert!(
            shown.contains("Reached target multi-user.target"),
            "{shown}"
        );
        assert!(!shown.contains("Failed to mount old"), "{shown}");
    }
}
