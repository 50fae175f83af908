//! `machines:`: parsing, the override rule, and every mistake located exactly.

use super::*;

fn parse(text: &str) -> Result<ProjectSpec, SpecProblems> {
    ProjectSpec::parse(text, Path::new("/p/hvbox.yaml"))
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("spec should be rejected")
        .to_string()
}

const EXAMPLE: &str = "\
box: debian-12
memory: 1G
ports: [{ host: 2222, guest: 22 }]
ssh: { user: ops, groups: [adm] }
machines:
  web:
    ports: [{ host: 8080, guest: 80 }]
  db:
    memory: 2G
    hostname: database
    box: { name: debian-12, version: 20240211-1654 }
    ports: []
";

#[test]
fn without_machines_there_is_one_default_machine() {
    let project = parse("box: debian-12\nhostname: dev\n").unwrap();
    assert!(!project.is_named());
    assert_eq!(project.names(), [DEFAULT_MACHINE]);
    let (_, spec) = &project.machines()[0];
    assert_eq!(spec.hostname, Some(Hostname("dev".into())));
    // Without a hostname, the project folder's name is used when the machine is made.
    let project = parse("box: debian-12\n").unwrap();
    assert_eq!(project.machines()[0].1.hostname, None);
}

#[test]
fn machines_in_spec_order_with_the_override_rule() {
    let project = parse(EXAMPLE).unwrap();
    assert!(project.is_named());
    assert_eq!(project.names(), ["web", "db"]);
    let web = project.get("web").unwrap();
    let db = project.get("db").unwrap();
    // Inherited as they are.
    assert_eq!(web.memory.bytes(), 1 << 30);
    assert_eq!(web.ssh.groups, ["adm"]);
    assert_eq!(db.ssh.user, Some(UserName("ops".into())));
    assert!(matches!(&web.box_source, BoxSource::Catalog(r) if r.version.is_none()));
    // Replaced wholesale: a machine's list is its whole list, not added to.
    assert_eq!(web.forwards().len(), 1);
    assert_eq!(web.forwards()[0].host, Port(8080));
    assert!(db.ports.is_empty());
    assert_eq!(db.memory.bytes(), 2 << 30);
    assert!(
        matches!(&db.box_source, BoxSource::Catalog(r) if r.version.as_deref() == Some("20240211-1654"))
    );
    // Hostnames: the machine's name unless it sets one.
    assert_eq!(web.hostname, Some(Hostname("web".into())));
    assert_eq!(db.hostname, Some(Hostname("database".into())));
    // hvbox's defaults where no layer says anything.
    assert_eq!(web.cpus, Cpus(2));
    assert_eq!(web.engine, EngineChoice::Auto);
    // Two requests, each once.
    assert_eq!(project.boxes().len(), 2);
}

#[test]
fn a_machine_replaces_a_section_whole() {
    let project = parse(
        "box: b\nssh: {user: ops, groups: [adm]}\nkernel: {cmdline_append: quiet}\nmachines:\n  a:\n    ssh: {groups: [docker]}\n  b:\n    kernel: {}\n  c:\n",
    )
    .unwrap();
    let a = project.get("a").unwrap();
    // No deep merge: `ssh` of `a` has no user, so the default user applies.
    assert_eq!(a.ssh.user, None);
    assert_eq!(a.ssh.groups, ["docker"]);
    assert_eq!(project.get("b").unwrap().kernel, KernelSettings::default());
    let c = project.get("c").unwrap();
    assert_eq!(c.ssh.user, Some(UserName("ops".into())));
    assert_eq!(c.kernel.cmdline_append, Some(KernelArgs("quiet".into())));
}

#[test]
fn a_null_undoes_an_optional_top_level_value() {
    let project = parse("box: b\ndisk: 10G\nmachines:\n  a:\n    disk: ~\n  b:\n").unwrap();
    assert_eq!(project.get("a").unwrap().disk, None);
    assert_eq!(project.get("b").unwrap().disk.unwrap().bytes(), 10 << 30);
}

#[test]
fn machines_may_each_name_their_box() {
    let project =
        parse("machines:\n  a:\n    box: debian-12\n  b:\n    box: ubuntu-24.04\n  c:\n    box: debian-12\n")
            .unwrap();
    let boxes: Vec<String> = project
        .boxes()
        .iter()
        .map(|b| crate::lockfile::requested(b))
        .collect();
    assert_eq!(boxes, ["debian-12", "ubuntu-24.04"]);
}

#[test]
fn bad_machine_names_are_located_at_the_name() {
    for (name, column) in [("Web", 3), ("1db", 3), ("db_1", 3), ("db-", 3)] {
        let e = error(&format!("box: b\nmachines:\n  {name}:\n    cpus: 1\n"));
        assert!(
            e.starts_with(&format!(
                "/p/hvbox.yaml:3:{column}: machines: \"{name}\" is not a valid machine name"
            )),
            "{e}"
        );
    }
    let long = "a".repeat(33);
    let e = error(&format!("box: b\nmachines:\n  ok:\n  {long}:\n"));
    assert!(e.starts_with("/p/hvbox.yaml:4:3: machines:"), "{e}");
    assert!(e.contains("at most 32 characters"), "{e}");
    let e = error("box: b\nmachines:\n  web:\n  web:\n");
    assert_eq!(
        e,
        "/p/hvbox.yaml:4:3: machines: duplicate key `web`: it is already written on line 3, column 3; keep one"
    );
}

#[test]
fn empty_machines_is_an_error() {
    let e = error("box: b\nmachines:\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:2:10: machines: it names no machine"),
        "{e}"
    );
    let e = error("box: b\nmachines: {}\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:2:11: machines: it names no machine"),
        "{e}"
    );
    let e = error("box: b\nmachines: [web, db]\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:2:11: machines: invalid type: sequence"),
        "{e}"
    );
}

#[test]
fn top_level_hostname_goes_not_with_machines() {
    let e = error("box: b\ncpus: 1\nhostname: dev\nmachines:\n  web:\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:3:1: a top-level `hostname` cannot go with `machines`"),
        "{e}"
    );
    // Written after `machines`, it is still found.
    let e = error("box: b\nmachines:\n  web:\nhostname: dev\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:4:1: a top-level `hostname`"),
        "{e}"
    );
}

#[test]
fn unknown_keys_inside_a_machine() {
    let e = error("box: b\nmachines:\n  web:\n    cpus: 2\n    memroy: 1G\n");
    assert!(
        e.starts_with(
            "/p/hvbox.yaml:5:5: machines.web: unknown field `memroy`, expected one of `box`,"
        ),
        "{e}"
    );
    // A machine has no machines of its own, and the message does not offer it.
    let e = error("box: b\nmachines:\n  web:\n    machines: {}\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:4:5: machines.web: unknown field `machines`"),
        "{e}"
    );
    let expected = e.split("expected one of").nth(1).unwrap();
    assert!(!expected.contains("machines"), "{e}");
    // Values inside a machine are checked and located as at the top.
    let e = error("box: b\nmachines:\n  web:\n    memory: 2 gigs\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:4:13: machines.web.memory:"),
        "{e}"
    );
    let e = error("box: b\nmachines:\n  web:\n    ssh: {user: root}\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:4:17: machines.web.ssh.user:"),
        "{e}"
    );
    // The top level lists `machines` among its keys.
    let e = error("box: b\nmachins:\n  web:\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:2:1: unknown field `machins`"),
        "{e}"
    );
    assert!(e.ends_with("`provision`, `mounts`, `machines`"), "{e}");
}

#[test]
fn a_machine_without_a_box_anywhere() {
    let e = error("machines:\n  a:\n    box: x\n  b:\n    memory: 1G\n");
    assert_eq!(
        e,
        "/p/hvbox.yaml:4:3: machines: machine `b` has no `box`, and there is no top-level `box` for it to take: add `box:` to it or to the top level"
    );
    assert_eq!(error("cpus: 1\n"), "/p/hvbox.yaml:1:1: missing field `box`");
}

#[test]
fn a_host_port_goes_to_one_machine() {
    // Each machine's own list.
    let e = error(
        "box: b\nmachines:\n  a:\n    ports: [{host: 80, guest: 80}]\n  b:\n    ports:\n      - {host: 81, guest: 80}\n      - {host: 80, guest: 8080}\n",
    );
    assert_eq!(
        e,
        "/p/hvbox.yaml:8:9: machines.b.ports[1]: host port 80/tcp on 127.0.0.1 is already forwarded to machine `a` (machines.a.ports[0]): a host port can go to one machine only"
    );
    // The top-level list, taken by two machines.
    let e = error("box: b\nports:\n  - {host: 80, guest: 80}\nmachines:\n  a:\n  b:\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:3:5: ports[0]: host port 80/tcp on 127.0.0.1 would go to both machine `a` and machine `b`"),
        "{e}"
    );
    // One machine taking the top level's, another with its own.
    let e = error(
        "box: b\nports: [{host: 80, guest: 80}]\nmachines:\n  a:\n  b:\n    ports: [{host: 80, guest: 81, address: 0.0.0.0}]\n",
    );
    assert!(
        e.starts_with("/p/hvbox.yaml:6:13: machines.b.ports[0]: host port 80/tcp on 0.0.0.0 is already forwarded to machine `a` (ports[0])"),
        "{e}"
    );
    // Twice in one machine's list.
    let e = error("box: b\nports: [{host: 80, guest: 80}, {host: 80, guest: 81}]\n");
    assert_eq!(
        e,
        "/p/hvbox.yaml:2:32: ports[1]: host port 80/tcp on 127.0.0.1 is already forwarded by ports[0]"
    );
    // Other protocols and other addresses do not clash.
    parse(
        "box: b\nmachines:\n  a:\n    ports: [{host: 80, guest: 80}]\n  b:\n    ports:\n      - {host: 80, guest: 80, protocol: udp}\n      - {host: 80, guest: 80, address: 127.0.0.2}\n",
    )
    .unwrap();
}
