//! Every listing command's `--json` parses, and its objects have exactly the fields
//! its `--help` (and man page) documents under "JSON fields".

mod common;

use common::create_stopped_machine;
use std::collections::BTreeSet;
use std::path::Path;

const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

use common::hvbox_ok as ok;

/// The field names `hvbox ARGS --help` lists: `(top level, nested)` by indent.
fn documented(dir: &Path, home: &Path, args: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut with_help = args.to_vec();
    with_help.push("--help");
    let help = ok(dir, home, &with_help);
    let (_, fields) = help
        .split_once("JSON fields (--json):")
        .unwrap_or_else(|| panic!("hvbox {args:?} --help documents no JSON fields:\n{help}"));
    let mut top = BTreeSet::new();
    let mut nested = BTreeSet::new();
    for line in fields.lines().skip(1) {
        let name = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if line.starts_with("    ") {
            nested.insert(name);
        } else if line.starts_with("  ") {
            top.insert(name);
        }
    }
    (top, nested)
}

fn keys(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect()
}

fn json(dir: &Path, home: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(dir, home, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("hvbox {args:?}: {e}:\n{out}"))
}

#[test]
fn each_listing_prints_the_documented_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("h");
    let tiny = home.join("data/boxes/tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    std::fs::write(tiny.join("disk.raw"), b"").unwrap();
    std::fs::write(
        tiny.join("SHA512SUMS"),
        format!("{EMPTY_SHA512}  disk.raw\n"),
    )
    .unwrap();
    let project = tmp.path().join("shop");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("hvbox.yaml"),
        "box: tiny\nmachines:\n  web:\n    ports: [{host: 8080, guest: 80}]\n  db:\n",
    )
    .unwrap();
    // Caches the box and records the project, as `up` does.
    ok(&project, &home, &["box", "update", "--quiet"]);
    let web = project.join(".hvbox/machines/web");
    create_stopped_machine(&web);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(web.join("state.json")).unwrap()).unwrap();
    state["kernels"] = serde_json::json!([{
        "version": "6.1.0-10-cloud-amd64",
        "kernel_sha256": "00",
        "initrd_sha256": null,
        "cmdline": "root=/dev/vda1 console=ttyS0",
        "guest_path": "/boot/vmlinuz-6.1.0-10-cloud-amd64 on partition 1",
        "first_booted_unix": 1,
        "last_booted_unix": 2,
    }]);
    std::fs::write(web.join("state.json"), state.to_string()).unwrap();
    std::fs::write(web.join("disk.raw"), b"disk").unwrap();
    std::fs::write(web.join("seed.iso"), b"seed").unwrap();
    ok(
        &project,
        &home,
        &["snapshot", "save", "before", "--machine", "web"],
    );

    let status = json(&project, &home, &["status", "--json"]);
    let (fields, _) = documented(&project, &home, &["status"]);
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{status}");
    for row in rows {
        assert_eq!(keys(row), fields, "status --json");
    }
    assert_eq!(rows[0]["forwards"][0]["host"], 8080, "{status}");

    let list = json(tmp.path(), &home, &["list", "--json"]);
    let (fields, _) = documented(tmp.path(), &home, &["list"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    for row in rows {
        assert_eq!(keys(row), fields, "list --json");
    }

    let boxes = json(&project, &home, &["box", "list", "--json"]);
    let (fields, _) = documented(&project, &home, &["box", "list"]);
    let rows = boxes.as_array().unwrap();
    assert!(!rows.is_empty(), "{boxes}");
    for row in rows {
        assert_eq!(keys(row), fields, "box list --json");
    }

    let kernels = json(&project, &home, &["kernels", "web", "--json"]);
    let (fields, nested) = documented(&project, &home, &["kernels"]);
    assert_eq!(keys(&kernels), fields, "kernels --json");
    let booted = kernels["kernels"].as_array().unwrap();
    assert_eq!(booted.len(), 1, "{kernels}");
    assert_eq!(keys(&booted[0]), nested, "kernels --json, each kernel");

    let snapshots = json(
        &project,
        &home,
        &["snapshot", "list", "--machine", "web", "--json"],
    );
    let (fields, _) = documented(&project, &home, &["snapshot", "list"]);
    let rows = snapshots.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{snapshots}");
    assert_eq!(keys(&rows[0]), fields, "snapshot list --json");
    assert_eq!(rows[0]["name"], "before");
}
