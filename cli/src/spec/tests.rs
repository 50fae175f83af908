use super::*;
use crate::spec::check_tests;

fn parse(text: &str) -> Result<Spec, SpecProblems> {
    Spec::parse(text, Path::new("/p/hvbox.yaml"))
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("spec should be rejected")
        .to_string()
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn minimal_spec_takes_defaults() {
    let spec = parse("box: debian-12\n").unwrap();
    assert!(matches!(spec.box_source, BoxSource::Catalog(ref r) if r.name == "debian-12"));
    assert_eq!(spec.cpus, Cpus(2));
    assert_eq!(spec.memory.bytes(), 1 << 30);
    assert_eq!(spec.engine, EngineChoice::Auto);
    assert!(spec.ports.is_empty());
}

#[test]
fn full_spec_with_explicit_artifacts() {
    let text = format!(
        "box:\n  disk:\n    url: http://127.0.0.1:1/disk.raw\n    digest: {DIGEST}\n  kernel:\n    url: http://127.0.0.1:1/vmlinuz\n    digest: {DIGEST}\nhostname: web-1\ncpus: 4\nmemory: 512M\ndisk: 20GiB\nengine: qemu\nssh:\n  user: dev\nports:\n  - host: 8080\n    guest: 80\n  - {{host: 5353, guest: 53, protocol: udp, address: 0.0.0.0}}\n"
    );
    let spec = parse(&text).unwrap();
    let BoxSource::Artifacts(a) = &spec.box_source else {
        panic!("expected artifacts")
    };
    assert_eq!(a.disk.url, "http://127.0.0.1:1/disk.raw");
    assert!(a.kernel.is_some() && a.initrd.is_none());
    assert_eq!(spec.hostname, Some(Hostname("web-1".into())));
    assert_eq!(spec.memory.bytes(), 512 << 20);
    assert_eq!(spec.disk.unwrap().bytes(), 20 << 30);
    assert_eq!(spec.engine, EngineChoice::Qemu);
    assert_eq!(spec.forwards()[0].address.to_string(), "127.0.0.1");
    assert_eq!(spec.forwards()[1].protocol, Protocol::Udp);
    assert!(spec.auto_forward());
}

#[test]
fn nested_virtualization_and_extra_disks() {
    let spec = parse(
        "box: b\nnested_virtualization: true\ndisks:\n  - path: data.img\n  - {path: /abs/ro.img, read_only: true}\n",
    )
    .unwrap();
    assert!(spec.nested_virtualization);
    assert_eq!(spec.disks.len(), 2);
    assert!(!spec.disks[0].read_only);
    assert!(spec.disks[1].read_only);
    let e = error("box: b\ndisks:\n  - {path: x.img, ro: true}\n");
    assert!(e.starts_with("/p/hvbox.yaml:3:"), "{e}");
    assert!(e.contains("unknown field `ro`"), "{e}");
    assert!(error("box: b\nnested_virtualization: maybe\n").contains("nested_virtualization"));
}

#[test]
fn unknown_key_names_file_line_column() {
    let e = error("box: debian-12\ncpus: 2\nmemroy: 1G\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:3:1: unknown field `memroy`"),
        "{e}"
    );
    assert!(e.contains("expected one of"), "{e}");
}

#[test]
fn nested_unknown_key() {
    let e = error("box: debian-12\nssh:\n  user: dev\n  port: 22\n");
    assert!(
        e.starts_with("/p/hvbox.yaml:4:3: ssh: unknown field `port`"),
        "{e}"
    );
}

#[test]
fn bad_size_is_located_and_explained() {
    let e = error("box: debian-12\nmemory: 1X\n");
    assert!(e.starts_with("/p/hvbox.yaml:2:9: memory:"), "{e}");
    assert!(e.contains("unknown unit"), "{e}");
    let e = error("box: debian-12\nmemory: 1024\n");
    assert!(e.contains("has no unit"), "{e}");
}

#[test]
fn wrong_type_is_located() {
    let e = error("box: debian-12\ncpus: two\n");
    assert!(e.starts_with("/p/hvbox.yaml:2:7: cpus:"), "{e}");
    assert!(e.contains("number of vCPUs"), "{e}");
}

#[test]
fn out_of_range_values() {
    assert!(error("box: b\ncpus: 0\n").contains("from 1 to 255"));
    assert!(error("box: b\nports:\n  - {host: 70000, guest: 22}\n").contains("1 to 65535"));
    assert!(error("box: b\nengine: kvm\n").contains("unknown variant `kvm`"));
    assert!(error("box: b\nhostname: -bad\n").contains("not a valid hostname"));
    assert!(error("box: b\nssh: {user: root}\n").contains("cannot be root"));
    assert!(error("box: b\nssh: {user: Dev}\n").contains("not a valid user name"));
}

#[test]
fn bad_digest_is_located() {
    let e = error("box:\n  disk:\n    url: http://x/d\n    digest: md5:abc\n");
    assert!(e.starts_with("/p/hvbox.yaml:4:13: box.disk.digest:"), "{e}");
}

#[test]
fn missing_box_and_empty_spec() {
    assert!(error("cpus: 1\n").contains("missing field `box`"));
    assert!(error("\n").contains("the spec is empty"));
}

#[test]
fn sizes_parse_and_print() {
    assert_eq!(Size::parse("512M").unwrap().bytes(), 512 << 20);
    assert_eq!(Size::parse("1.5G").unwrap().bytes(), 3 << 29);
    assert_eq!(Size::parse("2GiB").unwrap().to_string(), "2G");
    assert!(Size::parse("G").is_err());
}

#[test]
fn spec_found_in_nearest_parent() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(dir.path().join(SPEC_FILE), "box: x\n").unwrap();
    assert_eq!(find_spec(&nested), Some(dir.path().join(SPEC_FILE)));
    assert_eq!(find_spec(Path::new("/nonexistent-hvbox-dir")), None);
}

#[test]
fn kernel_cmdline_replace_and_append() {
    let spec = parse("box: b\nkernel:\n  cmdline_append: quiet mitigations=off\n").unwrap();
    assert_eq!(
        spec.kernel.cmdline("root=PARTUUID=x ro", "console=ttyS0"),
        "root=PARTUUID=x ro quiet mitigations=off console=ttyS0"
    );
    let spec =
        parse("box: b\nkernel:\n  cmdline: root=/dev/vda1 rw\n  cmdline_append: quiet\n").unwrap();
    assert_eq!(
        spec.kernel.cmdline("root=PARTUUID=x ro", "console=ttyS0"),
        "root=/dev/vda1 rw quiet console=ttyS0"
    );
    let spec = parse("box: b\n").unwrap();
    assert_eq!(
        spec.kernel.cmdline("root=PARTUUID=x ro", "console=ttyS0"),
        "root=PARTUUID=x ro console=ttyS0"
    );
    let e = error("box: b\nkernel:\n  cmdline_append: \"a\\nb\"\n");
    assert!(e.starts_with("/p/hvbox.yaml:3:"), "{e}");
    assert!(e.contains("one line of printable text"), "{e}");
    let e = error("box: b\nkernel:\n  append: quiet\n");
    assert!(e.contains("unknown field `append`"), "{e}");
}

#[test]
fn cloud_init_and_network_sections() {
    let spec = parse(
        "box: b\nssh:\n  user: dev\n  groups: [docker]\ncloud_init:\n  timezone: Europe/Berlin\n  packages: [curl]\n  write_files:\n    - {path: /etc/motd, content: hi, permissions: \"0644\"}\n  runcmd: [\"echo hi\"]\n  user_data: |\n    #cloud-config\n    packages: [git]\nnetwork:\n  dhcp6: false\n  addresses: [10.0.2.20/24]\n  gateway4: 10.0.2.2\n  nameservers: [10.0.2.3]\n",
    )
    .unwrap();
    assert_eq!(spec.ssh.groups, ["docker"]);
    assert_eq!(spec.cloud_init.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(spec.cloud_init.write_files[0].path, "/etc/motd");
    assert!(spec
        .cloud_init
        .user_data
        .as_deref()
        .unwrap()
        .starts_with("#cloud-config\n"));
    assert!(spec.network.dhcp4 && !spec.network.dhcp6);
    let defaults = parse("box: b\n").unwrap();
    assert!(defaults.network.dhcp4 && defaults.network.dhcp6);
    let e = error("box: b\nnetwork:\n  addresses: [10.0.2.20]\n");
    assert!(e.starts_with("/p/hvbox.yaml:3:"), "{e}");
    assert!(e.contains("prefix length"), "{e}");
    let e = error("box: b\ncloud_init:\n  write_files:\n    - {path: /x, mode: 1}\n");
    assert!(e.contains("unknown field `mode`"), "{e}");
}

const STEPS: &str = "box: b\nprovision:\n  - shell: |\n      apt-get install -y nginx\n  - script: scripts/setup.sh\n    args: [--fast, 1.50, true]\n    privileged: false\n    name: app setup\n  - {file: config/app.conf, destination: /etc/app.conf}\n";

#[test]
fn provision_steps_parse_in_order_with_defaults() {
    let spec = parse(STEPS).unwrap();
    assert_eq!(spec.provision.len(), 3);
    let [shell, script, file] = &spec.provision[..] else {
        unreachable!()
    };
    assert_eq!(
        shell.action,
        Action::Shell {
            script: "apt-get install -y nginx\n".into(),
            args: vec![]
        }
    );
    assert!(shell.privileged && shell.name.is_none() && shell.path_at.is_none());
    assert_eq!(
        script.action,
        Action::Script {
            path: "scripts/setup.sh".into(),
            args: vec!["--fast".into(), "1.50".into(), "true".into()]
        }
    );
    assert!(!script.privileged);
    assert_eq!(script.name.as_deref(), Some("app setup"));
    assert_eq!(script.path_at, Some((5, 13)));
    assert_eq!(
        file.action,
        Action::File {
            source: "config/app.conf".into(),
            destination: "/etc/app.conf".into()
        }
    );
    assert!(file.privileged);
    assert_eq!(file.path_at, Some((9, 12)));
    assert!(parse("box: b\n").unwrap().provision.is_empty());
}

#[test]
fn bad_provision_steps_are_located() {
    let cases: &[(&str, &str)] = &[
        (
            "box: b\nprovision:\n  - shell: echo\n    sudo: true\n",
            "/p/hvbox.yaml:4:5: provision[0]: unknown field `sudo`, expected one of `shell`, `script`, `file`, `args`, `privileged`, `name`, `destination`",
        ),
        (
            "box: b\nprovision:\n  - shell: echo\n  - shell: echo\n    file: x\n    destination: /x\n",
            "/p/hvbox.yaml:4:5: provision[1]: a step does one thing, but this one has `shell` and `file`: make one step of each",
        ),
        (
            "box: b\nprovision:\n  - name: nothing\n",
            "/p/hvbox.yaml:3:5: provision[0]: a step needs one of `shell` (an inline script), `script` (a script file) or `file` (a file or folder to copy)",
        ),
        (
            "box: b\nprovision:\n  - file: a.conf\n",
            "/p/hvbox.yaml:3:5: provision[0]: a `file` step needs `destination`: where in the guest the file or folder goes",
        ),
        (
            "box: b\nprovision:\n  - {file: a.conf, destination: /a, args: [x]}\n",
            "/p/hvbox.yaml:3:5: provision[0]: `args` is for `shell` and `script` steps; a `file` step runs nothing",
        ),
        (
            "box: b\nprovision:\n  - script: a.sh\n    destination: /a\n",
            "/p/hvbox.yaml:3:5: provision[0]: `destination` is for `file` steps, not `script` steps",
        ),
        (
            "box: b\nprovision:\n  - shell: \"  \"\n",
            "/p/hvbox.yaml:3:12: provision[0].shell: the script is empty: write the commands to run, or remove the step",
        ),
        (
            "box: b\nprovision:\n  - script: \"\"\n",
            "/p/hvbox.yaml:3:13: provision[0].script: the path is empty",
        ),
        (
            "box: b\nprovision:\n  - file: a\n    destination: ~/a\n",
            "/p/hvbox.yaml:4:18: provision[0].destination: \"~/a\": `~` is not expanded in the guest; a relative destination is already relative to the user's home folder",
        ),
        (
            "box: b\nprovision:\n  - shell: echo\n    privileged: maybe\n",
            "/p/hvbox.yaml:4:17: provision[0].privileged: invalid type: string \"maybe\", expected a boolean",
        ),
        (
            "box: b\nprovision:\n  - shell: echo\n    args: [a, {b: c}]\n",
            "/p/hvbox.yaml:4:15: provision[0].args[1]: invalid type: map, expected an argument: a string or a number",
        ),
        (
            "box: b\nprovision:\n  - shell: echo\n    name: \"a\\nb\"\n",
            "/p/hvbox.yaml:4:11: provision[0].name: \"a\\nb\": a name is one line of printable text",
        ),
        (
            "box: b\nprovision:\n  - apt-get install nginx\n",
            "/p/hvbox.yaml:3:5: provision[0]: invalid type: string \"apt-get install nginx\", expected a provision step: a mapping with one of `shell`, `script` or `file`",
        ),
        (
            "box: b\nprovision:\n  shell: echo\n",
            "/p/hvbox.yaml:3:3: provision: invalid type: map, expected a sequence",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&error(text), expected, "for spec:\n{text}");
    }
}

#[test]
fn missing_provision_files_are_reported_where_the_spec_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join(SPEC_FILE);
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    std::fs::write(dir.path().join("scripts/setup.sh"), "echo\n").unwrap();
    std::fs::create_dir_all(dir.path().join("www")).unwrap();
    let good = "box: b\nprovision:\n  - script: scripts/setup.sh\n  - {file: www, destination: /srv/www}\n  - shell: echo\n";
    std::fs::write(&spec_path, good).unwrap();
    super::check(&spec_path, &check_tests::AnyBox).unwrap();

    let check = |text: &str| {
        std::fs::write(&spec_path, text).unwrap();
        super::check(&spec_path, &check_tests::AnyBox)
            .expect_err("a missing file is an error")
            .to_string()
            .replace(&dir.path().display().to_string(), "/p")
    };
    assert_eq!(
        check("box: b\nprovision:\n  - shell: echo\n  - script: scripts/setpu.sh\n"),
        "/p/hvbox.yaml:4:13: provision[1].script: scripts/setpu.sh does not exist (looked for /p/scripts/setpu.sh)"
    );
    assert_eq!(
        check("box: b\nprovision:\n  - {destination: /etc/a, file: \"conf/a\"}\n"),
        "/p/hvbox.yaml:3:33: provision[0].file: conf/a does not exist (looked for /p/conf/a)"
    );
    assert_eq!(
        check("box: b\nprovision:\n  - script: scripts\n"),
        "/p/hvbox.yaml:3:13: provision[0].script: scripts is not a file (looked for /p/scripts)"
    );
}
