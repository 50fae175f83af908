//! The spec's one check, through the real binary: every problem at once, each at
//! its line and column, and `up` stopping on the same problems as `validate`
//! before it creates anything.

mod common;

use common::{hvbox_isolated, text};
use std::path::Path;

/// A project folder and a home for hvbox's own folders.
struct Project {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Project {
    fn new(spec: &str) -> Project {
        let project = Project {
            dir: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        };
        project.write("hvbox.yaml", spec);
        project
    }

    fn write(&self, name: &str, content: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Exit status and stderr, with the folders' paths as DIR and HOME.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = hvbox_isolated(self.dir.path(), self.home.path(), args);
        let err = text(&out.stderr)
            .replace(&self.dir.path().display().to_string(), "DIR")
            .replace(&self.home.path().display().to_string(), "HOME");
        (out.status.success(), err)
    }

    fn fails(&self, args: &[&str]) -> String {
        let (ok, err) = self.run(args);
        assert!(!ok, "`hvbox {}` succeeded:\n{err}", args.join(" "));
        err
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn a_duplicate_key_is_reported_at_itself_naming_the_first() {
    let p = Project::new("box: debian-12\nmemory: 1G\ncpus: 2\nmemory: 2G\n");
    assert_eq!(
        p.fails(&["validate"]),
        "hvbox: error: DIR/hvbox.yaml:4:1: duplicate key `memory`: it is already written on line 2, column 1; keep one\n"
    );
    // Inside a section and inside a machine too.
    let p = Project::new(
        "box: debian-12\nssh:\n  user: dev\n  user: ops\nmachines:\n  web:\n    cpus: 1\n    cpus: 2\n",
    );
    assert_eq!(
        p.fails(&["validate"]),
        "DIR/hvbox.yaml:4:3: ssh: duplicate key `user`: it is already written on line 3, column 3; keep one\n\
         DIR/hvbox.yaml:8:5: machines.web: duplicate key `cpus`: it is already written on line 7, column 5; keep one\n\
         hvbox: error: hvbox.yaml has 2 problems\n"
    );
}

#[test]
fn memory_below_what_a_debian_guest_boots_with_is_refused() {
    let p = Project::new("box: debian-12\nmemory: 1K\n");
    assert_eq!(
        p.fails(&["validate"]),
        "hvbox: error: DIR/hvbox.yaml:2:9: memory: 1K is below 512M, the least a Debian cloud guest's first boot runs in\n"
    );
    let p = Project::new("box: debian-12\nmemory: 511M\n");
    assert!(p
        .fails(&["validate"])
        .contains(":2:9: memory: 511M is below 512M"));
    let p = Project::new("box: debian-12\nmemory: 512M\n");
    assert_eq!(p.run(&["validate"]), (true, String::new()));
    // Both engines take memory in whole MiB.
    let p = Project::new("box: debian-12\nmemory: 1.3G\n");
    assert_eq!(
        p.fails(&["validate"]),
        "hvbox: error: DIR/hvbox.yaml:2:9: memory: 1.3G is not a whole number of MiB: write it as 1331M or 1332M\n"
    );
}

#[test]
fn validate_reports_every_structural_problem_at_once() {
    let p = Project::new(
        "box: debian-12\ncpus: 0\nmemroy: 1G\nports:\n  - {host: 80, guest: 80}\n  - {host: eighty, guest: 80}\n  - {host: 81, guest: 0}\nmachines:\n  Web:\n    engine: kvm\n",
    );
    assert_eq!(
        p.fails(&["validate"]),
        "DIR/hvbox.yaml:2:7: cpus: cpus must be from 1 to 255, got 0\n\
         DIR/hvbox.yaml:3:1: unknown field `memroy`, expected one of `box`, `hostname`, `cpus`, `memory`, `disk`, `engine`, `ssh`, `ports`, `nested_virtualization`, `disks`, `kernel`, `cloud_init`, `network`, `provision`, `mounts`, `machines`\n\
         DIR/hvbox.yaml:6:12: ports[1].host: invalid type: string \"eighty\", expected a port number from 1 to 65535\n\
         DIR/hvbox.yaml:7:23: ports[2].guest: a port must be from 1 to 65535, got 0\n\
         DIR/hvbox.yaml:9:3: machines: \"Web\" is not a valid machine name: use lowercase letters, digits and '-', starting with a letter and not ending with '-', at most 32 characters\n\
         DIR/hvbox.yaml:10:13: machines.Web.engine: unknown variant `kvm`, expected one of `auto`, `builtin`, `qemu`\n\
         hvbox: error: hvbox.yaml has 6 problems\n"
    );
}

/// What `up` used to find only once it got there, each located.
const UP_ONLY: &str = "\
box: debian-13x
memory: 2G
disks:
  - path: data.img
  - path: folder
cloud_init:
  user_data: |
    #cloud-config
    packages: [a, b
    runcmd: [x]
network:
  gateway4: 10.0.2.2
provision:
  - script: setup.sh
";

const UP_ONLY_PROBLEMS: &str = "\
DIR/hvbox.yaml:1:6: box: unknown box \"debian-13x\"; built-in boxes: debian-12, debian-13, ubuntu-22.04, ubuntu-24.04; boxes built here (HOME/data/boxes): none
DIR/hvbox.yaml:4:11: disks[0].path: data.img does not exist (looked for DIR/data.img)
DIR/hvbox.yaml:5:11: disks[1].path: folder is not a file (looked for DIR/folder)
DIR/hvbox.yaml:10:11: cloud_init.user_data: not valid YAML: illegal placement of ':' indicator
DIR/hvbox.yaml:12:13: network.gateway4: 10.0.2.2 needs a static IPv4 address in network.addresses
DIR/hvbox.yaml:14:13: provision[0].script: setup.sh does not exist (looked for DIR/setup.sh)
hvbox: error: hvbox.yaml has 6 problems
";

#[test]
fn validate_says_what_up_would_fail_on_and_up_stops_before_creating_anything() {
    let p = Project::new(UP_ONLY);
    std::fs::create_dir(p.root().join("folder")).unwrap();
    assert_eq!(p.fails(&["validate"]), UP_ONLY_PROBLEMS);
    // The same check, the same words, before `up` creates anything.
    assert_eq!(p.fails(&["up"]), UP_ONLY_PROBLEMS);
    assert!(!p.root().join(".hvbox").exists(), ".hvbox/ was created");
    // And for the other commands that act on machines with the spec's settings.
    for command in ["provision", "reload", "upgrade-kernel"] {
        assert_eq!(p.fails(&[command]), UP_ONLY_PROBLEMS, "{command}");
    }

    // Fixed one by one, the spec checks out.
    p.write(
        "hvbox.yaml",
        &UP_ONLY
            .replace("debian-13x", "team-box")
            .replace("  - path: folder\n", "")
            .replace("[a, b\n", "[a, b]\n")
            .replace("  gateway4:", "  addresses: [10.0.2.20/24]\n  gateway4:"),
    );
    p.write("data.img", "");
    p.write("setup.sh", "echo set up\n");
    p.write(
        "hvbox-catalog.yaml",
        &format!(
            "boxes:\n  - name: team-box\n    url: https://example.org/team.raw\n    digest: sha256:{}\n",
            "a".repeat(64)
        ),
    );
    assert_eq!(p.run(&["validate"]), (true, String::new()));
}

#[test]
fn boxes_built_here_and_locked_boxes_are_known() {
    let p = Project::new("box: debian-bookworm\n");
    assert!(p
        .fails(&["validate"])
        .starts_with("hvbox: error: DIR/hvbox.yaml:1:6: box: unknown box \"debian-bookworm\""));
    common::built_box(p.home.path(), "debian-bookworm");
    assert_eq!(p.run(&["validate"]), (true, String::new()));

    // hvbox.lock answers for a name no catalog here knows, as it does for `up`.
    let p = Project::new("box: {name: team-box, version: \"2\"}\n");
    assert!(p
        .fails(&["validate"])
        .starts_with("hvbox: error: DIR/hvbox.yaml:1:13: box.name: unknown box \"team-box\""));
    let digest = format!("sha256:{}", "b".repeat(64));
    p.write(
        "hvbox.lock",
        &format!("version: 1\nbox:\n  requested: team-box version 2\n  name: team-box\n  version: \"2\"\n  disk:\n    url: https://example.org/team.raw\n    digest: {digest}\n    size: 1\n    format: raw\n"),
    );
    assert_eq!(p.run(&["validate"]), (true, String::new()));
}

#[test]
fn user_data_files_and_their_mistakes() {
    let p = Project::new(
        "box: debian-12\nmachines:\n  web:\n    cloud_init:\n      user_data_file: cfg/missing.yaml\n  db:\n    cloud_init:\n      user_data: \"#cloud-config\\n\"\n      user_data_file: cfg/db.yaml\n  ci:\n    cloud_init:\n      user_data_file: cfg/ci.yaml\n  app:\n    cloud_init:\n      user_data: |\n        #cloud-config\n        final_message: hi\n",
    );
    p.write("cfg/db.yaml", "#cloud-config\n");
    p.write(
        "cfg/ci.yaml",
        "#cloud-config\npackages: [git]\nssh_keys: {}\n",
    );
    let err = p.fails(&["validate"]);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "DIR/hvbox.yaml:5:23: machines.web.cloud_init.user_data_file: cfg/missing.yaml does not exist (looked for DIR/cfg/missing.yaml)",
            "DIR/hvbox.yaml:9:23: machines.db.cloud_init.user_data_file: `user_data` is set too: keep one of `user_data` and `user_data_file`",
            "DIR/hvbox.yaml:12:23: machines.ci.cloud_init.user_data_file: DIR/cfg/ci.yaml, line 3: `ssh_keys` cannot be set in user-data: hvbox generates the guest's ssh host key and pins it in the machine's known_hosts; another host key could not be verified",
        ]
    );
    // Inline: at the line of the block that has it.
    assert!(
        lines[3].starts_with("DIR/hvbox.yaml:17:9: machines.app.cloud_init.user_data: `final_message` cannot be set in user-data"),
        "{err}"
    );
    assert_eq!(lines[4], "hvbox: error: hvbox.yaml has 4 problems");
}

#[test]
fn first_boot_settings_are_checked_one_by_one_where_they_are_written() {
    let p = Project::new(
        "box: debian-12\nssh:\n  groups: [\"a b\"]\ncloud_init:\n  timezone: \"bad zone\"\n  packages: [ok, \"not ok\"]\n  write_files:\n    - {path: relative.txt}\n    - {path: /ok, permissions: \"999\"}\nnetwork:\n  dhcp4: false\n  dhcp6: false\n",
    );
    assert_eq!(
        p.fails(&["validate"]),
        "DIR/hvbox.yaml:3:12: ssh.groups[0]: group names must be non-empty without commas or whitespace, got \"a b\"\n\
         DIR/hvbox.yaml:5:13: cloud_init.timezone: must be an IANA name like \"Europe/Paris\", got \"bad zone\"\n\
         DIR/hvbox.yaml:6:18: cloud_init.packages[1]: must be non-empty without whitespace, got \"not ok\"\n\
         DIR/hvbox.yaml:8:7: cloud_init.write_files[0]: path must be an absolute file path, got \"relative.txt\"\n\
         DIR/hvbox.yaml:9:7: cloud_init.write_files[1]: /ok: permissions must be an octal mode as text, like \"0644\" or \"0755\", got \"999\"\n\
         DIR/hvbox.yaml:11:3: network: with dhcp4 and dhcp6 off, give at least one static address, or the machine cannot be reached\n\
         hvbox: error: hvbox.yaml has 6 problems\n"
    );
}

#[test]
fn a_box_with_its_own_kernel_is_refused_by_validate_not_after_the_download() {
    let digest = format!("sha256:{}", "c".repeat(64));
    let p = Project::new(&format!(
        "box:\n  disk: {{url: http://127.0.0.1:9/d.raw, digest: \"{digest}\"}}\n  kernel: {{url: http://127.0.0.1:9/k, digest: \"{digest}\"}}\n"
    ));
    assert!(
        p.fails(&["validate"])
            .starts_with("hvbox: error: DIR/hvbox.yaml:3:11: box.kernel: boxes with a separate kernel or initrd are not supported yet"),
    );
}

/// A machine that exists has its own disk: a box unknown here (a local box since
/// removed, say) does not stop commands on it, while a machine still to be made
/// needs it.
#[test]
fn an_unknown_box_matters_only_to_machines_not_made_yet() {
    let p = Project::new("box: gone-box\n");
    assert!(p.fails(&["validate"]).contains("unknown box \"gone-box\""));
    common::create_stopped_machine(&p.root().join(".hvbox/machines/default"));
    assert_eq!(p.run(&["validate"]), (true, String::new()));
}

/// A bad value does not hide the next problem: keys inside a section are read one
/// by one, and the files the spec names are checked even when a key is wrong.
#[test]
fn structure_sections_and_host_files_are_reported_together() {
    let p = Project::new(
        "box: debian-12\nmemory: 100M\nssh: {groups: 5, bogus: 1}\nnetwork: {dhcp4: maybe, gateway4: nope}\ndisks:\n  - {path: nothere.img}\nprovision:\n  - script: missing.sh\n",
    );
    let err = p.fails(&["validate"]);
    for expected in [
        "DIR/hvbox.yaml:2:9: memory: 100M is below 512M",
        "DIR/hvbox.yaml:3:15: ssh.groups: invalid type: integer `5`, expected a sequence",
        "DIR/hvbox.yaml:3:18: ssh: unknown field `bogus`",
        "DIR/hvbox.yaml:4:18: network.dhcp4: invalid type: string \"maybe\"",
        "DIR/hvbox.yaml:4:35: network.gateway4: invalid IP address syntax",
        "DIR/hvbox.yaml:6:12: disks[0].path: nothere.img does not exist",
        "DIR/hvbox.yaml:8:13: provision[0].script: missing.sh does not exist",
        "hvbox: error: hvbox.yaml has 7 problems",
    ] {
        assert!(err.contains(expected), "no {expected:?} in:\n{err}");
    }
}

/// `mounts:` mistakes, each where it is written: a host folder that is not there
/// or not a folder, a relative or repeated guest path, one over the guest's system.
#[test]
fn mount_mistakes_are_reported_where_they_are_written() {
    let p = Project::new(
        "box: debian-12\nmounts:\n  - {host: ., guest: /srv/project}\n  - {host: nothere, guest: /data}\n  - {host: notes.txt, guest: /notes}\n  - {host: ., guest: /srv/project}\n  - {host: ., guest: /etc}\n  - {host: ., guest: /home/dev}\n",
    );
    p.write("notes.txt", "not a folder\n");
    let err = p.fails(&["validate"]);
    for expected in [
        "DIR/hvbox.yaml:4:12: mounts[1].host: nothere does not exist (looked for DIR/nothere)",
        "DIR/hvbox.yaml:5:12: mounts[2].host: notes.txt is not a folder",
        "DIR/hvbox.yaml:6:22: mounts[3].guest: /srv/project is already the guest path of mounts[0]",
        "DIR/hvbox.yaml:7:22: mounts[4].guest: /etc is a folder the guest system needs",
        "DIR/hvbox.yaml:8:22: mounts[5].guest: /home/dev would hide the login user `dev`'s home",
        "hvbox: error: hvbox.yaml has 5 problems",
    ] {
        assert!(err.contains(expected), "no {expected:?} in:\n{err}");
    }
    // A relative guest path is wrong whatever the host says.
    let p = Project::new("box: debian-12\nmounts:\n  - {host: ., guest: srv/rel}\n");
    assert!(
        p.fails(&["validate"]).contains(
            "DIR/hvbox.yaml:3:22: mounts[0].guest: \"srv/rel\" is relative: the guest path must be absolute"
        )
    );
    // A machine's own `mounts` is checked where the machine writes it; `[]` is none.
    let p = Project::new("box: debian-12\nmachines:\n  web:\n    mounts:\n      - {host: gone, guest: /srv/x}\n  db:\n    mounts: []\n");
    let err = p.fails(&["validate"]);
    assert!(
        err.contains("DIR/hvbox.yaml:5:16: machines.web.mounts[0].host: gone does not exist"),
        "{err}"
    );
}

/// A cloned spec can point a machine at any host path its user may open: `validate`
/// lists each one outside the project folder, where the spec names it and what the
/// machine may do with it — links that lead out included, paths inside left out.
#[test]
fn validate_lists_the_host_paths_a_spec_reaches_outside_its_project() {
    let p = Project::new("");
    common::built_box(p.home.path(), "debian-bookworm");
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().canonicalize().unwrap();
    std::fs::write(outside.join("data.img"), b"").unwrap();
    std::fs::write(outside.join("setup.sh"), b"true\n").unwrap();
    std::fs::create_dir_all(p.home.path().join("home/datasets")).unwrap();
    std::fs::create_dir_all(p.root().join("src")).unwrap();
    p.write("inside.img", "");
    p.write("user-data.yaml", "#cloud-config\n");
    std::os::unix::fs::symlink(outside.join("setup.sh"), p.root().join("link.sh")).unwrap();
    let out = outside.display().to_string();
    let digest = "b".repeat(64);
    p.write(
        "hvbox.yaml",
        &format!(
            "box: debian-bookworm\n\
             disks:\n  - {{path: {out}/data.img}}\n  - {{path: inside.img, read_only: true}}\n\
             mounts:\n  - {{host: src, guest: /src}}\n  - {{host: ~/datasets, guest: /data, read_only: true}}\n\
             cloud_init:\n  user_data_file: user-data.yaml\n\
             provision:\n  - script: link.sh\n  - file: {out}\n    destination: /tmp/x\n\
             machines:\n  web:\n    box: {{disk: {{url: \"file://{out}/disk.qcow2\", digest: \"sha256:{digest}\"}}}}\n  db:\n    disks: [{{path: {out}/data.img, read_only: true}}]\n"
        ),
    );
    let run = hvbox_isolated(p.root(), p.home.path(), &["validate"]);
    let stdout = text(&run.stdout)
        .replace(&p.root().display().to_string(), "DIR")
        .replace(&p.home.path().display().to_string(), "HOME")
        .replace(&out, "OUT");
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        stdout,
        "DIR/hvbox.yaml: ok (machines: web, db)\n\
         DIR/hvbox.yaml reaches these host paths outside its project folder DIR:\n  \
         DIR/hvbox.yaml:3:12: disks[0].path: OUT/data.img (a disk the guest reads and writes)\n  \
         DIR/hvbox.yaml:7:12: mounts[1].host: HOME/home/datasets (a folder shared with the guest, read-only)\n  \
         DIR/hvbox.yaml:11:13: provision[0].script: OUT/setup.sh (a script run in the guest)\n  \
         DIR/hvbox.yaml:12:11: provision[1].file: OUT (copied into the guest)\n  \
         DIR/hvbox.yaml:16:23: machines.web.box.disk.url: OUT/disk.qcow2 (a box disk image read from the host)\n  \
         DIR/hvbox.yaml:18:20: machines.db.disks[0].path: OUT/data.img (a disk the guest reads)\n"
    );
}
