//! `hvbox port` (and `status --json`, `list`'s forwards) over a machine that
//! pretends to run: the spec's forwards and the automatic ones its port watcher
//! recorded in the run's runtime folder, as table and JSON.

mod common;

use common::{create_stopped_machine, hold, hvbox_isolated, text, INSTANCE};
use std::path::Path;

const SPEC: &str = "box: debian-12\nports:\n  - {host: 8080, guest: 80}\n  - {host: 5353, guest: 53, protocol: udp}\n";

/// A run.json whose runtime folder holds the watcher's record of `auto`.
fn fake_running_with(machine: &Path, runtime: &Path, auto: serde_json::Value) -> std::fs::File {
    std::fs::create_dir_all(runtime).unwrap();
    std::fs::write(runtime.join("auto-forwards.json"), auto.to_string()).unwrap();
    let run = serde_json::json!({
        "supervisor_pid": std::process::id(),
        "vm_pid": std::process::id(),
        "passt_pid": std::process::id(),
        "engine": "qemu",
        "ssh_port": 2222,
        "control_socket": runtime.join("control.sock"),
        "console_socket": runtime.join("console.sock"),
        "runtime_dir": runtime,
    });
    std::fs::write(machine.join("run.json"), run.to_string()).unwrap();
    hold(&machine.join("supervisor.lock"), "")
}

#[test]
fn port_lists_declared_and_automatic_forwards() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("p");
    let machine = project.join(".hvbox/machines/default");
    create_stopped_machine(&machine);
    std::fs::write(project.join("hvbox.yaml"), SPEC).unwrap();

    // Stopped: what it will forward, and why nothing is forwarded now.
    let out = hvbox_isolated(&project, tmp.path(), &["port"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "HOST            GUEST   KIND\n127.0.0.1:8080  80/tcp  declared\n127.0.0.1:5353  53/udp  declared\n"
    );
    assert_eq!(
        text(&out.stderr),
        "hvbox: the machine is stopped: its ports are forwarded while it runs (`hvbox up` starts it)\n"
    );

    let auto = serde_json::json!([
        {"host": 8000, "guest": 8000, "guest_address": "127.0.0.1"},
        {"host": 41234, "guest": 3000, "guest_address": "::1"},
    ]);
    let _running = fake_running_with(&machine, &tmp.path().join("run").join(INSTANCE), auto);
    let out = hvbox_isolated(&project, tmp.path(), &["port"]);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        [
            "HOST             GUEST     KIND",
            "127.0.0.1:8080   80/tcp    declared",
            "127.0.0.1:5353   53/udp    declared",
            "127.0.0.1:8000   8000/tcp  auto",
            "127.0.0.1:41234  3000/tcp  auto (3000 is taken on the host)",
            "",
        ]
        .join("\n")
    );

    let out = hvbox_isolated(&project, tmp.path(), &["port", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let forwards = serde_json::json!([
        {"address": "127.0.0.1", "host": 8080, "guest": 80, "protocol": "tcp", "kind": "declared"},
        {"address": "127.0.0.1", "host": 5353, "guest": 53, "protocol": "udp", "kind": "declared"},
        {"address": "127.0.0.1", "host": 8000, "guest": 8000, "protocol": "tcp", "kind": "auto", "guest_address": "127.0.0.1"},
        {"address": "127.0.0.1", "host": 41234, "guest": 3000, "protocol": "tcp", "kind": "auto", "guest_address": "::1"},
    ]);
    assert_eq!(
        json,
        serde_json::json!({
            "name": "default",
            "state": "running",
            "auto_forward": true,
            "forwards": forwards,
        })
    );
    // `status --json` has the same forwards.
    let out = hvbox_isolated(&project, tmp.path(), &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(status[0]["forwards"], forwards);
}

#[test]
fn port_says_when_automatic_forwarding_is_off() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("p");
    create_stopped_machine(&project.join(".hvbox/machines/web"));
    std::fs::write(
        project.join("hvbox.yaml"),
        "box: debian-12\nmachines:\n  web:\n    ports: [{auto: false}]\n  db:\n",
    )
    .unwrap();
    let out = hvbox_isolated(&project, tmp.path(), &["port"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("defines 2 machines: name one, as in `hvbox port web`"),
        "{}",
        text(&out.stderr)
    );
    let out = hvbox_isolated(&project, tmp.path(), &["port", "web"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "hvbox: the machine `web` is stopped: its ports are forwarded while it runs (`hvbox up web` starts it)\nhvbox: automatic port forwarding is off (`auto: false` in hvbox.yaml's `ports`)\n"
    );
    let out = hvbox_isolated(&project, tmp.path(), &["port", "db", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "db", "state": "not created", "auto_forward": true, "forwards": []})
    );
}
