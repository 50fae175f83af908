//! The spec's check: every problem at once, each where it is written, and what the
//! spec refers to on the host.

use super::*;

/// Every catalog name is known.
pub struct AnyBox;

impl Boxes for AnyBox {
    fn unknown(&self, _: &BoxSource) -> Option<String> {
        None
    }
}

/// Knows no catalog name; counts the questions.
struct NoBox(std::cell::Cell<usize>);

impl Boxes for NoBox {
    fn unknown(&self, source: &BoxSource) -> Option<String> {
        self.0.set(self.0.get() + 1);
        match source {
            BoxSource::Catalog(request) => Some(format!("no box {}", request.name)),
            BoxSource::Artifacts(_) => None,
        }
    }
}

/// Each problem of a parse as `line:column: message`.
fn problems(text: &str) -> Vec<String> {
    let e = ProjectSpec::parse(text, Path::new("/p/hvbox.yaml")).expect_err("rejected");
    listed(&e)
}

fn listed(e: &SpecProblems) -> Vec<String> {
    let lines = match e.details() {
        lines if lines.is_empty() => vec![e.to_string()],
        lines => lines,
    };
    lines
        .iter()
        .map(|l| {
            l.trim_start_matches("/p/hvbox.yaml:")
                .trim_start()
                .to_string()
        })
        .collect()
}

/// A project folder with `spec` in it, checked.
fn checked(
    spec: &str,
    boxes: &dyn Boxes,
) -> (tempfile::TempDir, Result<ProjectSpec, SpecProblems>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SPEC_FILE);
    std::fs::write(&path, spec).unwrap();
    let result = check(&path, boxes);
    (dir, result)
}

#[test]
fn every_key_is_read_on_its_own() {
    let e = problems(
        "box: b\ncpus: 0\nssh: {user: root}\nmemroy: 1G\nmachines:\n  web:\n    disk: 2X\n    engine: kvm\n  db:\n    memory: 100M\n",
    );
    assert_eq!(e.len(), 6, "{e:#?}");
    assert!(
        e[0].starts_with("2:7: cpus: cpus must be from 1 to 255"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("3:13: ssh.user: the ssh user cannot be root"),
        "{e:#?}"
    );
    assert!(e[2].starts_with("4:1: unknown field `memroy`"), "{e:#?}");
    assert!(
        e[3].starts_with("7:11: machines.web.disk: \"2X\" has an unknown unit"),
        "{e:#?}"
    );
    assert!(
        e[4].starts_with("8:13: machines.web.engine: unknown variant `kvm`"),
        "{e:#?}"
    );
    assert_eq!(
        e[5],
        "10:13: machines.db.memory: 100M is below 512M, the least a Debian cloud guest's first boot runs in"
    );
}

#[test]
fn each_bad_element_of_a_list_is_reported() {
    let e = problems(
        "box: b\nports:\n  - {host: 0, guest: 1}\n  - {host: 2, guest: 3}\n  - {host: 4, guest: x}\nprovision:\n  - shell: a\n  - bogus: 1\n  - file: x\n",
    );
    assert_eq!(
        e,
        [
            "3:12: ports[0].host: a port must be from 1 to 65535, got 0",
            "5:22: ports[2].guest: invalid type: string \"x\", expected a port number from 1 to 65535",
            "8:5: provision[1]: unknown field `bogus`, expected one of `shell`, `script`, `file`, `args`, `privileged`, `name`, `destination`",
            "9:5: provision[2]: a `file` step needs `destination`: where in the guest the file or folder goes",
        ]
    );
    // A list where a list belongs, of the wrong kind, is one problem.
    assert_eq!(
        problems("box: b\nports: {host: 1}\n"),
        ["2:8: ports: invalid type: map, expected a sequence"]
    );
}

#[test]
fn duplicates_are_reported_at_each_repeated_key_and_read_once() {
    assert_eq!(
        problems("box: b\ncpus: 1\ncpus: 0\ncpus: 2\nssh: {groups: [a], groups: [b]}\n"),
        [
            "3:1: duplicate key `cpus`: it is already written on line 2, column 1; keep one",
            "4:1: duplicate key `cpus`: it is already written on line 2, column 1; keep one",
            "5:20: ssh: duplicate key `groups`: it is already written on line 5, column 7; keep one",
        ]
    );
    // In lists of mappings too, and in a provision step (read by hand).
    assert_eq!(
        problems("box: b\nprovision:\n  - shell: a\n    shell: b\n"),
        ["4:5: provision[0]: duplicate key `shell`: it is already written on line 3, column 5; keep one"]
    );
}

#[test]
fn what_is_not_a_spec() {
    let one = |text: &str| problems(text).join("\n");
    assert_eq!(
        one("# nothing but a comment\n"),
        "the spec is empty; it needs at least `box:` (run `hvbox init` for a starter)"
    );
    assert_eq!(
        one("- box: b\n"),
        "1:1: invalid type: sequence, expected a mapping of settings such as `box: debian-12`"
    );
    assert_eq!(
        one("box: b\nmachines:\n  web: fast\n"),
        "3:8: machines.web: invalid type: string \"fast\", expected a machine's settings such as `memory: 2G`, or nothing"
    );
}

#[test]
fn problems_come_in_file_order_each_once() {
    // Two machines take the top level's disks: one problem, not two.
    let (dir, result) = checked(
        "box: b\ndisks: [{path: gone.img}]\nmachines:\n  web:\n  db:\n    provision: [{script: gone.sh}]\n",
        &AnyBox,
    );
    let e = result.expect_err("missing files");
    let root = dir.path().display().to_string();
    let lines: Vec<String> = listed(&e).iter().map(|l| l.replace(&root, "DIR")).collect();
    assert_eq!(
        lines,
        [
            "DIR/hvbox.yaml:2:16: disks[0].path: gone.img does not exist (looked for DIR/gone.img)",
            "DIR/hvbox.yaml:6:26: machines.db.provision[0].script: gone.sh does not exist (looked for DIR/gone.sh)",
        ]
    );
    assert_eq!(e.to_string(), "hvbox.yaml has 2 problems");
}

#[test]
fn catalog_names_are_asked_once_and_located_at_the_name() {
    let boxes = NoBox(Default::default());
    let (_dir, result) = checked(
        "box: {name: team, version: \"1\"}\nmachines:\n  a:\n  b:\n  c:\n    box: other\n",
        &boxes,
    );
    let e = listed(&result.expect_err("unknown boxes"));
    assert!(
        e[0].ends_with("hvbox.yaml:1:13: box.name: no box team"),
        "{e:#?}"
    );
    assert!(
        e[1].ends_with("hvbox.yaml:6:10: machines.c.box: no box other"),
        "{e:#?}"
    );
    assert_eq!(boxes.0.get(), 2);
    let (_dir, result) = checked("box: debian-12\n", &AnyBox);
    result.unwrap();
}

#[test]
fn inline_user_data_is_located_in_the_spec() {
    let (_dir, result) = checked(
        "box: b\nmachines:\n  web:\n    cloud_init:\n      user_data: |  # mine\n        #cloud-config\n        runcmd: [ls]\n          bad: indent\n",
        &AnyBox,
    );
    let e = listed(&result.expect_err("bad YAML"));
    assert!(
        e[0].ends_with("hvbox.yaml:8:14: machines.web.cloud_init.user_data: not valid YAML: while parsing a block mapping, did not find expected key"),
        "{e:#?}"
    );
    // A quoted string's lines are not the spec's: its own line is named.
    let (_dir, result) = checked(
        "box: b\ncloud_init:\n  user_data: \"#cloud-config\\nfinal_message: x\\n\"\n",
        &AnyBox,
    );
    let e = listed(&result.expect_err("a key hvbox owns"));
    assert!(
        e[0].contains(
            "hvbox.yaml:3:14: cloud_init.user_data, line 2: `final_message` cannot be set"
        ),
        "{e:#?}"
    );
}
