//! `hvbox list` over several real projects recorded in a temporary cache, and
//! `--project DIR` / `-C DIR` acting on a project from elsewhere.

mod common;

use common::{create_stopped_machine, fake_running, hvbox_isolated, text};
use std::path::Path;

/// SHA-512 of no bytes: the digest of the empty disk of the box below.
const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

/// A local box whose checksum file is right, so that `box update` records it.
fn tiny_box(home: &Path) {
    let dir = home.join("data/boxes/tiny");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("disk.raw"), b"").unwrap();
    std::fs::write(
        dir.join("SHA512SUMS"),
        format!("{EMPTY_SHA512}  disk.raw\n"),
    )
    .unwrap();
}

use common::hvbox_ok as ok;

#[test]
fn list_shows_every_project_and_forgets_deleted_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, elsewhere) = (tmp.path().join("h"), tmp.path().join("elsewhere"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    tiny_box(&home);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    std::fs::write(one.join("hvbox.yaml"), "box: tiny\n").unwrap();
    std::fs::write(
        two.join("hvbox.yaml"),
        "box: tiny\nmachines:\n  web:\n    ports: [{host: 8080, guest: 80}]\n  db:\n",
    )
    .unwrap();
    // Both from elsewhere, by -C and by --project: `box update` records them as `up` does.
    ok(
        &elsewhere,
        &home,
        &["-C", one.to_str().unwrap(), "box", "update", "--quiet"],
    );
    ok(
        &elsewhere,
        &home,
        &[
            "box",
            "update",
            "--quiet",
            "--project",
            two.to_str().unwrap(),
        ],
    );
    assert!(one.join("hvbox.lock").is_file() && two.join("hvbox.lock").is_file());
    create_stopped_machine(&two.join(".hvbox/machines/db"));
    create_stopped_machine(&two.join(".hvbox/machines/web"));
    let _running = fake_running(&two.join(".hvbox/machines/web"), 2222);

    let (o, t) = (one.display(), two.display());
    let table = ok(&elsewhere, &home, &["list"]);
    let wide = t.to_string().len().max(o.to_string().len());
    let row = |p: &dyn std::fmt::Display, rest: &str| format!("{:<wide$}  {rest}", p.to_string());
    assert_eq!(
        table,
        [
            row(
                &"PROJECT",
                "NAME     STATE        ENGINE  BOX        SSH             FORWARDS"
            ),
            row(
                &o,
                "default  not created  -       tiny       -               -"
            ),
            row(
                &t,
                "web      running      qemu    debian-12  127.0.0.1:2222  127.0.0.1:8080->80/tcp"
            ),
            row(
                &t,
                "db       stopped      -       debian-12  -               -"
            ),
        ]
        .join("\n")
            + "\n"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(&elsewhere, &home, &["list", "--json"])).unwrap();
    let web = &json[1];
    assert_eq!(web["project"], serde_json::json!(two));
    assert_eq!(web["name"], "web");
    assert_eq!(web["state"], "running");
    assert_eq!(web["engine"], "qemu");
    assert_eq!(web["ssh_port"], 2222);
    assert_eq!(
        web["forwards"],
        serde_json::json!([{"address": "127.0.0.1", "host": 8080, "guest": 80, "protocol": "tcp", "kind": "declared"}])
    );
    assert_eq!(json.as_array().unwrap().len(), 3);

    // A deleted project folder is forgotten, with a note, once.
    std::fs::remove_dir_all(&one).unwrap();
    let out = hvbox_isolated(&elsewhere, &home, &["list", "--json"]);
    assert_eq!(
        text(&out.stderr),
        format!("hvbox: note: forgot the project in {o}: the folder is gone\n")
    );
    let json: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let out = hvbox_isolated(&elsewhere, &home, &["list"]);
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn a_project_on_a_drive_that_is_away_is_kept_for_its_return() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("h");
    tiny_box(&home);
    // The project sits on a "drive": while the drive is away, so is the folder's parent.
    let drive = tmp.path().join("drive");
    let project = drive.join("p");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("hvbox.yaml"), "box: tiny\n").unwrap();
    ok(&project, &home, &["box", "update", "--quiet"]);
    let away = tmp.path().join("drive-unmounted");
    std::fs::rename(&drive, &away).unwrap();
    let out = hvbox_isolated(tmp.path(), &home, &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "hvbox: note: the project in {} cannot be reached now (is its drive mounted?); it is listed again once it can\n",
            project.display()
        )
    );
    assert_eq!(text(&out.stdout).trim(), "[]");

    std::fs::rename(&away, &drive).unwrap();
    let out = hvbox_isolated(tmp.path(), &home, &["list", "--json"]);
    assert_eq!(text(&out.stderr), "");
    let json: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(json[0]["project"], serde_json::json!(project));
    assert_eq!(json[0]["name"], "default");
}

#[test]
fn project_option_acts_on_another_folder_or_says_why_not() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("p");
    create_stopped_machine(&project.join(".hvbox/machines/default"));
    std::fs::write(project.join("hvbox.yaml"), "box: debian-12\n").unwrap();
    let p = project.to_str().unwrap();
    let status = ok(tmp.path(), tmp.path(), &["status", "-C", p]);
    assert!(status.contains("default  stopped"), "{status}");
    assert_eq!(
        ok(tmp.path(), tmp.path(), &["--project", p, "destroy", "-f"]),
        "==> machine destroyed\n"
    );

    let missing = tmp.path().join("nope");
    let out = hvbox_isolated(
        tmp.path(),
        tmp.path(),
        &["-C", missing.to_str().unwrap(), "status"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "hvbox: error: --project {}: does not exist\n",
            missing.display()
        )
    );
    // A folder without a spec: the usual error, naming that folder.
    let out = hvbox_isolated(&project, tmp.path(), &["-C", "/", "status"]);
    assert!(
        text(&out.stderr).starts_with("hvbox: error: no hvbox.yaml in / or any parent folder"),
        "{}",
        text(&out.stderr)
    );
}
