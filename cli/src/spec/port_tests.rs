//! `ports:` entries: forwards and `auto`, and where a wrong one is reported.

use super::*;

fn problems(text: &str) -> Vec<String> {
    let e = ProjectSpec::parse(text, Path::new("/p/hvbox.yaml")).expect_err("rejected");
    let lines = match e.details() {
        lines if lines.is_empty() => vec![e.to_string()],
        lines => lines,
    };
    lines
        .iter()
        .map(|l| l.trim_start_matches("/p/hvbox.yaml:").to_string())
        .collect()
}

fn project(text: &str) -> ProjectSpec {
    ProjectSpec::parse(text, Path::new("/p/hvbox.yaml")).expect("accepted")
}

#[test]
fn auto_forwarding_is_on_unless_an_entry_turns_it_off() {
    let on = Spec::parse("box: b\n", Path::new("/p/hvbox.yaml")).unwrap();
    assert!(on.auto_forward());
    let off = Spec::parse(
        "box: b\nports:\n  - {host: 8080, guest: 80}\n  - auto: false\n",
        Path::new("/p/hvbox.yaml"),
    )
    .unwrap();
    assert!(!off.auto_forward());
    assert_eq!(off.forwards().len(), 1);
    assert_eq!(off.forwards()[0].guest, Port(80));
    // A machine's own `ports` replaces the top level's, `auto` with it.
    let spec = project("box: b\nports: [{auto: false}]\nmachines:\n  a:\n  b:\n    ports: [{host: 81, guest: 80}]\n");
    let [(_, a), (_, b)] = spec.machines() else {
        panic!("two machines")
    };
    assert!(!a.auto_forward() && b.auto_forward());
}

#[test]
fn a_wrong_ports_entry_is_reported_where_it_is() {
    assert_eq!(
        problems("box: b\nports:\n  - {host: 8080, guest: 80}\n  - {auto: false, host: 9}\n  - auto: no way\n  - {autoo: false}\n"),
        [
            "4:5: ports[1]: `auto` goes in an entry of its own, not with `host`: write `- auto: false` as a separate entry of `ports`",
            "5:11: ports[2].auto: invalid type: string \"no way\", expected a boolean",
            "6:6: ports[3]: unknown field `autoo`, expected one of `host`, `guest`, `protocol`, `address`, `auto`",
        ]
    );
    assert_eq!(
        problems("box: b\nports:\n  - {guest: 3}\n"),
        ["3:5: ports[0]: missing field `host`"]
    );
    assert_eq!(
        problems("box: b\nmachines:\n  a:\n    ports:\n      - auto: false\n      - {host: 1, guest: 2}\n      - auto: true\n"),
        ["7:9: machines.a.ports[2]: `auto` is already set by machines.a.ports[0]: keep one `auto` entry in `ports`"]
    );
    // Host ports that clash are named by where they are written, `auto` counted.
    assert_eq!(
        problems("box: b\nports:\n  - auto: false\n  - {host: 80, guest: 80}\n  - {host: 80, guest: 81}\n"),
        ["5:5: ports[2]: host port 80/tcp on 127.0.0.1 is already forwarded by ports[1]"]
    );
}
