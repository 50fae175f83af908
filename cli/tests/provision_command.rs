//! `hvbox provision` and `up`'s provisioning, through the real binary, on a fake
//! running machine whose "guest" is this host: `ssh` and `sudo` on PATH are stand-
//! ins that run the guest command here. Everything but the VM is real: the steps'
//! commands, their output as printed, the failure report and the machine state.

mod common;

use common::{create_stopped_machine, fake_running, hold, text};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    /// Stands in for the guest's filesystem.
    guest: PathBuf,
    fake_bin: PathBuf,
}

impl Project {
    fn new(spec: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("project");
        let guest = tmp.path().join("guest");
        let fake_bin = tmp.path().join("bin");
        for dir in [&root, &guest, &fake_bin] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let spec = spec.replace("GUEST", &guest.display().to_string());
        std::fs::write(root.join("hvbox.yaml"), spec).unwrap();
        // ssh: run the remote command (its last argument) here, as a login shell would.
        executable(
            &fake_bin.join("ssh"),
            "#!/bin/sh\nfor last; do :; done\nexec sh -c \"$last\"\n",
        );
        // sudo: drop its options and run the command.
        executable(
            &fake_bin.join("sudo"),
            "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n",
        );
        Project {
            _tmp: tmp,
            root,
            guest,
            fake_bin,
        }
    }

    fn machine(&self) -> PathBuf {
        self.root.join(".hvbox/machines/default")
    }

    /// A created machine, stopped.
    fn create_machine(&self) {
        create_stopped_machine(&self.machine());
    }

    /// The machine runs while the returned lock is held.
    fn run_machine(&self) -> File {
        fake_running(&self.machine(), 40022)
    }

    fn hvbox(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.fake_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        std::process::Command::new(env!("CARGO_BIN_EXE_hvbox"))
            .args(args)
            .current_dir(&self.root)
            .env("PATH", path)
            .output()
            .expect("run hvbox")
    }

    fn provisioned(&self) -> bool {
        let text = std::fs::read_to_string(self.machine().join("state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        state["provisioned_unix"].is_u64()
    }

    fn count(&self) -> usize {
        std::fs::read_to_string(self.guest.join("count"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const SPEC: &str = r#"box: debian-12
provision:
  - shell: |
      echo run >> GUEST/count
      echo to stdout
      echo to stderr >&2
  - script: scripts/check.sh
    args: [GUEST/allow, "two words"]
    privileged: false
  - file: config
    destination: GUEST/etc/app/
    name: app config
"#;

fn project_with_steps() -> Project {
    let project = Project::new(SPEC);
    std::fs::create_dir_all(project.root.join("scripts")).unwrap();
    // stdout and stderr reach hvbox through two pipes, read as the data arrives, so
    // lines written to both at the same instant have no order: the pause gives the
    // stdout line time to be read first, as it would be from a real guest over ssh.
    std::fs::write(
        project.root.join("scripts/check.sh"),
        "#!/bin/sh\necho \"checking $1 ($2)\"\nsleep 0.2\n[ -e \"$1\" ] || { echo \"not allowed: no $1\" >&2; exit 3; }\necho allowed\n",
    )
    .unwrap();
    std::fs::create_dir_all(project.root.join("config/conf.d")).unwrap();
    std::fs::write(project.root.join("config/conf.d/app.conf"), "port = 80\n").unwrap();
    project
}

#[test]
fn provision_runs_every_step_and_stops_at_a_failing_one() {
    let project = project_with_steps();
    project.create_machine();
    let _running = project.run_machine();
    let guest = project.guest.display().to_string();

    let out = project.hvbox(&["provision"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for line in [
        "==> provision 1/3: shell: echo run >> GUEST/count … (as root)".replace("GUEST", &guest),
        "    [1/3 shell] to stdout".into(),
        format!("==> provision 2/3: script scripts/check.sh {guest}/allow 'two words' (as tester)"),
        format!("    [2/3 script check.sh] checking {guest}/allow (two words)"),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in:\n{stdout}"
        );
    }
    assert!(
        stderr.lines().any(|l| l == "    [1/3 shell] to stderr"),
        "{stderr}"
    );
    let error = format!(
        "hvbox: error: provision step 2/3 (script scripts/check.sh {guest}/allow 'two words', as tester) failed with exit status 3; the steps after it did not run. The machine is up: fix the step, then `hvbox provision` runs all steps again. Its last lines:\n    [2/3 script check.sh] checking {guest}/allow (two words)\n    [2/3 script check.sh] not allowed: no {guest}/allow\n"
    );
    assert!(stderr.ends_with(&error), "{stderr}");
    assert!(!stdout.contains("provision 3/3"), "{stdout}");
    assert!(!project.guest.join("etc").exists(), "step 3 ran");
    assert!(!project.provisioned());
    assert_eq!(project.count(), 1);

    std::fs::write(project.guest.join("allow"), "").unwrap();
    let out = project.hvbox(&["provision"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!(
            "==> provision 3/3 [app config]: file config -> {guest}/etc/app/ (as root)\n==> provisioned: 3 steps done\n"
        )),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(project.guest.join("etc/app/config/conf.d/app.conf")).unwrap(),
        "port = 80\n"
    );
    assert!(project.provisioned());
    assert_eq!(project.count(), 2);

    // `up` of a machine already provisioned runs nothing; `--provision` runs it all.
    let out = project.hvbox(&["up"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("==> already provisioned: `hvbox provision` or `hvbox up --provision` runs the steps again"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(project.count(), 2);
    let out = project.hvbox(&["up", "--provision"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(project.count(), 3);
    let out = project.hvbox(&["up", "--provision", "--no-provision"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn up_runs_steps_that_never_completed_unless_told_not_to() {
    let project = project_with_steps();
    project.create_machine();
    let _running = project.run_machine();
    std::fs::write(project.guest.join("allow"), "").unwrap();
    let out = project.hvbox(&["up", "--no-provision"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("==> provision steps skipped (--no-provision)"));
    assert_eq!(project.count(), 0);
    assert!(!project.provisioned());
    let out = project.hvbox(&["up"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(project.count(), 1);
    assert!(project.provisioned());
}

#[test]
fn provision_needs_a_running_machine_and_its_lock() {
    let project = project_with_steps();
    let out = project.hvbox(&["provision"]);
    assert!(
        text(&out.stderr).contains(
            "the machine is not created yet; `hvbox up` creates it and runs the provision steps"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(!project.root.join(".hvbox").exists());

    project.create_machine();
    let out = project.hvbox(&["provision"]);
    assert!(
        text(&out.stderr).contains("the machine is stopped; `hvbox up` starts it"),
        "{}",
        text(&out.stderr)
    );

    let _running = project.run_machine();
    let _lock = hold(&project.machine().join("machine.lock"), "4242 halt\n");
    let out = project.hvbox(&["provision"]);
    assert!(
        text(&out.stderr).contains("is busy: another `hvbox halt` (pid 4242) holds it"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(project.count(), 0);
}

#[test]
fn a_missing_step_file_stops_provision_before_any_step_runs() {
    let project = project_with_steps();
    project.create_machine();
    let _running = project.run_machine();
    std::fs::remove_file(project.root.join("scripts/check.sh")).unwrap();
    let out = project.hvbox(&["provision"]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("hvbox.yaml:7:13: provision[1].script: scripts/check.sh does not exist"),
        "{stderr}"
    );
    assert_eq!(project.count(), 0);
}
