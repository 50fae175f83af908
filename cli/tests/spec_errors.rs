//! What a user sees from `hvbox validate` and `hvbox init`, through the real binary.

mod common;

/// hvbox in `dir`, its own folders in a temporary home (see [`common::hvbox_isolated`]).
fn hvbox(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    common::hvbox_isolated(dir, home.path(), args)
}

fn validate(spec: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hvbox.yaml"), spec).unwrap();
    let out = hvbox(dir.path(), &["validate"]);
    let path = dir.path().join("hvbox.yaml").display().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path, "hvbox.yaml");
    (out.status.success(), stderr)
}

#[test]
fn unknown_key_is_reported_with_location() {
    let (ok, err) = validate("box: debian-12\ncpus: 2\nmemroy: 1G\n");
    assert!(!ok);
    assert!(
        err.contains("hvbox.yaml:3:1: unknown field `memroy`"),
        "{err}"
    );
}

#[test]
fn bad_size_is_reported_with_location() {
    let (ok, err) = validate("box: debian-12\nmemory: 2 gigs\n");
    assert!(!ok);
    assert!(err.contains("hvbox.yaml:2:9: memory:"), "{err}");
    assert!(err.contains("unknown unit"), "{err}");
}

#[test]
fn wrong_type_is_reported_with_location() {
    let (ok, err) = validate("box: debian-12\nports:\n  - host: eighty\n    guest: 80\n");
    assert!(!ok);
    assert!(err.contains("hvbox.yaml:3:11: ports[0].host:"), "{err}");
}

#[test]
fn init_writes_a_valid_spec_and_ignores_state() {
    let dir = tempfile::tempdir().unwrap();
    let out = hvbox(dir.path(), &["init"]);
    assert!(out.status.success());
    let gitignore = std::fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l == "/.hvbox/"));
    let nested = dir.path().join("src/deep");
    std::fs::create_dir_all(&nested).unwrap();
    // validate finds the spec in a parent folder, as up and ssh do.
    let out = hvbox(&nested, &["validate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second init refuses to overwrite the spec.
    assert!(!hvbox(dir.path(), &["init"]).status.success());
}

#[test]
fn commands_outside_a_project_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = hvbox(dir.path(), &["up"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `hvbox init`"));
}

#[test]
fn the_examples_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    // The quickstart's box is the one `scripts/demo` builds.
    let home = tempfile::tempdir().unwrap();
    common::built_box(home.path(), "debian-bookworm");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap().flatten() {
        let spec = entry.path().join("hvbox.yaml");
        if !spec.is_file() {
            continue;
        }
        let out = common::hvbox_isolated(&entry.path(), home.path(), &["validate"]);
        assert!(
            out.status.success(),
            "{}: {}",
            spec.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} examples found in {}",
        examples.display()
    );
}

/// Every template `hvbox init --list-templates` names writes a project that checks
/// out, with its other files (a provision step's script, a mounted folder) beside
/// it; a second init refuses to overwrite them, naming them, and changes nothing.
#[test]
fn init_templates_write_valid_projects() {
    let home = tempfile::tempdir().unwrap();
    common::built_box(home.path(), "debian-bookworm");
    let work = tempfile::tempdir().unwrap();
    let out = common::hvbox_isolated(work.path(), home.path(), &["init", "--list-templates"]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let listing = common::text(&out.stdout);
    let names: Vec<String> = listing
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    for wanted in [
        "quickstart",
        "web-server",
        "web-and-db",
        "provisioning",
        "data-mount",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{listing}");
    }
    for name in &names {
        let dir = work.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let out = common::hvbox_isolated(&dir, home.path(), &["init", "--template", name]);
        assert!(
            out.status.success(),
            "{name}: {}",
            common::text(&out.stderr)
        );
        let said = common::text(&out.stdout);
        assert!(
            said.contains(&format!("wrote {}", dir.join("hvbox.yaml").display())),
            "{said}"
        );
        let out = common::hvbox_isolated(&dir, home.path(), &["validate"]);
        assert!(
            out.status.success(),
            "template {name}: {}",
            common::text(&out.stderr)
        );
        let spec = std::fs::read_to_string(dir.join("hvbox.yaml")).unwrap();
        let again = common::hvbox_isolated(&dir, home.path(), &["init", "--template", name]);
        assert_eq!(again.status.code(), Some(1), "{name}");
        let err = common::text(&again.stderr);
        assert!(
            err.contains("hvbox.yaml") && err.contains("use --force"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("hvbox.yaml")).unwrap(),
            spec
        );
    }
    let provisioning = work.path().join("provisioning");
    let script = provisioning.join("scripts/setup-user.sh");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(work.path().join("data-mount/data").is_dir());
    assert!(work.path().join("web-server/site/index.html").is_file());

    // --box replaces the template's box; --force overwrites.
    let out = common::hvbox_isolated(
        &provisioning,
        home.path(),
        &[
            "init",
            "--template",
            "provisioning",
            "--box",
            "debian-bookworm",
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let spec = std::fs::read_to_string(provisioning.join("hvbox.yaml")).unwrap();
    assert!(spec.contains("\nbox: debian-bookworm\n"), "{spec}");

    // An unknown name is a usage error that lists the names.
    let out = common::hvbox_isolated(work.path(), home.path(), &["init", "--template", "lamp"]);
    assert_eq!(out.status.code(), Some(2));
    let err = common::text(&out.stderr);
    assert!(
        err.contains("'lamp'") && err.contains("web-server, web-and-db"),
        "{err}"
    );
    assert!(!work.path().join("hvbox.yaml").exists());
}

#[test]
fn provision_mistakes_are_reported_with_location() {
    let (ok, err) =
        validate("box: debian-12\nprovision:\n  - shell: echo hi\n    script: setup.sh\n");
    assert!(!ok);
    assert!(
        err.contains("hvbox.yaml:3:5: provision[0]: a step does one thing, but this one has `shell` and `script`"),
        "{err}"
    );
    let (ok, err) = validate("box: debian-12\nprovision:\n  - shell: echo hi\n    as_root: true\n");
    assert!(!ok);
    assert!(
        err.contains("hvbox.yaml:4:5: provision[0]: unknown field `as_root`"),
        "{err}"
    );
}

#[test]
fn a_missing_provision_script_is_reported_where_it_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("hvbox.yaml");
    std::fs::write(
        &spec,
        "box: debian-12\nprovision:\n  - shell: echo hi\n  - script: scripts/setup.sh\n",
    )
    .unwrap();
    let out = hvbox(dir.path(), &["validate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "{}:4:13: provision[1].script: scripts/setup.sh does not exist (looked for {}/scripts/setup.sh)",
            spec.display(),
            dir.path().display()
        )),
        "{err}"
    );
    // `up` stops on it too, before it creates or boots anything.
    let out = hvbox(dir.path(), &["up"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":4:13: provision[1].script:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join(".hvbox").exists(), ".hvbox/ was created");

    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/setup.sh"), "echo set up\n").unwrap();
    let out = hvbox(dir.path(), &["validate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_machines_missing_provision_file_names_the_machine_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hvbox.yaml"),
        "box: debian-12\nprovision:\n  - shell: echo hi\nmachines:\n  web:\n  db:\n    provision:\n      - file: db.conf\n        destination: /etc/db.conf\n",
    )
    .unwrap();
    let out = hvbox(dir.path(), &["validate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(":8:15: machines.db.provision[0].file: db.conf does not exist"),
        "{err}"
    );
}
