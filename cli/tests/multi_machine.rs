//! Several machines in one spec, through the real binary: which machines a command
//! acts on, and what `status` shows. No VM is booted: machines are not created, or
//! created as fake folders.

mod common;

use common::text;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SPEC: &str = "\
box: debian-12
memory: 768M
machines:
  web:
    ports: [{ host: 8080, guest: 80 }]
  db:
    memory: 1G
    hostname: database
";

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new(spec: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("shop");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hvbox.yaml"), spec).unwrap();
        Project { _tmp: tmp, root }
    }

    fn machine(&self, name: &str) -> PathBuf {
        self.root.join(".hvbox/machines").join(name)
    }

    /// A created, stopped machine: its folder with a state.json.
    fn fake_created(&self, name: &str) {
        let dir = self.machine(name);
        std::fs::create_dir_all(&dir).unwrap();
        let state = serde_json::json!({
            "instance_id": format!("i-{name}"),
            "mac": "52:54:00:12:34:56",
            "hostname": name,
            "user": "dev",
            "box_name": "debian-12",
            "box_disk_digest": "sha256:00",
            "created_unix": 0,
        });
        std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    }

    /// Pretend a created machine runs: a held supervisor lock and a run.json.
    fn fake_running(&self, name: &str, ssh_port: u16) -> File {
        common::fake_running(&self.machine(name), ssh_port)
    }

    fn hvbox(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hvbox"))
            .args(args)
            .current_dir(&self.root)
            // `ssh-config` links machines' ssh_config files from the data folder.
            .env("HVBOX_DATA_DIR", self._tmp.path().join("data"))
            .output()
            .expect("run hvbox")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.hvbox(args);
        assert!(
            out.status.success(),
            "hvbox {args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// The error of a failing command, with the project's path shortened.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.hvbox(args);
        assert_eq!(out.status.code(), Some(1), "hvbox {args:?} should fail");
        text(&out.stderr).replace(&self.root.display().to_string(), "PROJECT")
    }
}

fn status_json(project: &Project) -> Vec<serde_json::Value> {
    serde_json::from_str(&project.ok(&["status", "--json"])).expect("status --json is JSON")
}

#[test]
fn status_of_a_two_machine_project_not_created() {
    let project = Project::new(SPEC);
    assert_eq!(
        project.ok(&["status"]),
        "NAME  STATE        ENGINE  BOX        SSH\n\
         web   not created  -       debian-12  -\n\
         db    not created  -       debian-12  -\n"
    );
    let list = status_json(&project);
    assert_eq!(list.len(), 2);
    for (value, (name, hostname)) in list.iter().zip([("web", "web"), ("db", "database")]) {
        assert_eq!(value["name"], name);
        assert_eq!(value["state"], "not created");
        assert_eq!(value["orphaned"], false);
        assert_eq!(value["hostname"], hostname);
        assert_eq!(value["box"], "debian-12");
        assert!(value["ssh_port"].is_null() && value["engine"].is_null());
    }
    // Names pick machines, in the order given.
    let picked: Vec<serde_json::Value> =
        serde_json::from_str(&project.ok(&["status", "--json", "db"])).unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0]["name"], "db");
    // Nothing was created by looking.
    assert!(!project.root.join(".hvbox").exists());
}

#[test]
fn a_single_machine_project_is_an_array_of_one_default() {
    let project = Project::new("box: debian-12\n");
    let list = status_json(&project);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "default");
    assert_eq!(list[0]["hostname"], "shop");
    assert!(project.ok(&["status"]).contains("\ndefault  not created"));
}

#[test]
fn ssh_without_a_name_among_several_lists_the_names() {
    let project = Project::new(SPEC);
    for args in [
        &["ssh"][..],
        &["ssh", "--", "uname", "-a"],
        &["console"],
        &["logs"],
        &["kernels"],
        &["upgrade-kernel"],
    ] {
        let err = project.fails(args);
        assert!(
            err.contains(
                "hvbox: error: PROJECT/hvbox.yaml defines 2 machines: name one, as in `hvbox "
            ) && err.trim_end().ends_with("(machines: web, db)"),
            "{args:?}: {err}"
        );
    }
    // With its name, the machine answers for itself.
    let err = project.fails(&["ssh", "web", "--", "true"]);
    assert_eq!(
        err,
        "hvbox: error: the machine `web` is not created; run `hvbox up web` first\n"
    );
}

#[test]
fn unknown_machine_names_list_the_known_ones() {
    let project = Project::new(SPEC);
    for args in [
        &["up", "web", "cache"][..],
        &["ssh", "cache"],
        &["status", "cache"],
        &["halt", "cache"],
        &["destroy", "cache"],
        &["reload", "cache"],
        &["ssh-config", "cache"],
        &["kernels", "cache"],
    ] {
        assert_eq!(
            project.fails(args),
            "hvbox: error: no machine `cache` in PROJECT/hvbox.yaml: its machines are web, db\n",
            "{args:?}"
        );
    }
    // A machine is never created for a name that is not in the spec.
    assert!(!project.root.join(".hvbox").exists());
}

#[test]
fn orphaned_machines_are_listed_and_can_be_destroyed() {
    let project = Project::new(SPEC);
    project.fake_created("web");
    project.fake_created("old");
    let status = project.ok(&["status"]);
    assert!(status.contains("\nweb   stopped  "), "{status}");
    assert!(
        status.contains("\nold   orphaned (not in hvbox.yaml)  "),
        "{status}"
    );
    let list = status_json(&project);
    let names: Vec<&str> = list.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "db", "old"]);
    assert_eq!(list[2]["orphaned"], true);
    assert_eq!(list[2]["state"], "stopped");

    // Commands that need its settings refuse it, and say how to remove it.
    let err = project.fails(&["ssh", "old"]);
    assert!(
        err.contains("machine `old` is not in PROJECT/hvbox.yaml any more"),
        "{err}"
    );
    assert!(err.contains("`hvbox destroy old` removes it"), "{err}");
    assert!(project
        .fails(&["up", "old"])
        .contains("is not in PROJECT/hvbox.yaml any more"));

    let out = project.ok(&["destroy", "--force", "old"]);
    assert_eq!(out, "==> old: machine destroyed\n");
    assert!(!project.machine("old").exists() && project.machine("web").exists());
    assert!(!project.ok(&["status"]).contains("old"));
}

#[test]
fn halt_and_destroy_go_through_every_machine() {
    let project = Project::new(SPEC);
    project.fake_created("db");
    project.fake_created("gone");
    assert_eq!(
        project.ok(&["halt"]),
        "==> web: machine is not created\n==> db: machine is stopped\n==> gone: machine is stopped\n"
    );
    assert_eq!(
        project.ok(&["destroy", "--force"]),
        "==> web: machine is not created\n==> db: machine destroyed\n==> gone: machine destroyed\n"
    );
    assert!(!project.root.join(".hvbox").exists(), ".hvbox/ left behind");
}

#[test]
fn a_busy_machine_stops_the_rest_and_is_named() {
    let project = Project::new(SPEC);
    project.fake_created("web");
    project.fake_created("db");
    let _lock = common::hold(&project.machine("web").join("machine.lock"), "");
    let out = project.hvbox(&["destroy", "--force"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("hvbox: error: machine `web` (not reached: db): the machine `web` is busy"),
        "{err}"
    );
    assert!(
        project.machine("db").exists(),
        "destroy went on past the failure"
    );
}

#[test]
fn ssh_config_prints_a_block_per_running_machine() {
    if Command::new("ssh").arg("-V").output().is_err() {
        return hvbox_test_support::skip("no ssh client (openssh-client)");
    }
    let project = Project::new(SPEC);
    project.fake_created("web");
    project.fake_created("db");
    let err = project.fails(&["ssh-config"]);
    assert!(
        err.contains("no machine is running (web: stopped, db: stopped)"),
        "{err}"
    );

    let _web = project.fake_running("web", 40022);
    let one = project.ok(&["ssh-config"]);
    assert!(one.contains("\nHost hvbox-shop-web\n"), "{one}");
    assert!(
        one.ends_with("\n# not running, so left out: db: stopped\n"),
        "{one}"
    );
    assert!(project
        .fails(&["ssh-config", "db"])
        .contains("the machine `db` is stopped"));

    let _db = project.fake_running("db", 40023);
    let both = project.ok(&["ssh-config"]);
    let config = project.root.join("ssh_config");
    std::fs::write(&config, &both).unwrap();
    for (host, port) in [("hvbox-shop-web", "40022"), ("hvbox-shop-db", "40023")] {
        let effective = ssh_g(&config, host);
        assert!(
            effective.lines().any(|l| l == format!("port {port}")),
            "{host}:\n{effective}"
        );
        let key = project
            .machine(&host["hvbox-shop-".len()..])
            .join("id_ed25519");
        assert!(
            effective
                .lines()
                .any(|l| l == format!("identityfile {}", key.display())),
            "{host}:\n{effective}"
        );
    }
}

/// What `ssh -G` makes of `host` with `config`.
fn ssh_g(config: &Path, host: &str) -> String {
    let out = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(config)
        .arg(host)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn validate_names_the_machines() {
    let project = Project::new(SPEC);
    let out = project.ok(&["validate"]);
    assert!(
        out.ends_with("hvbox.yaml: ok (machines: web, db)\n"),
        "{out}"
    );
}

#[test]
fn spec_errors_in_machines_are_located() {
    let project = Project::new("box: debian-12\nhostname: shop\nmachines:\n  web:\n");
    let err = project.fails(&["validate"]);
    assert_eq!(
        err,
        "hvbox: error: PROJECT/hvbox.yaml:2:1: a top-level `hostname` cannot go with `machines`: each machine has its own (its name, unless it sets `hostname`)\n"
    );
}
