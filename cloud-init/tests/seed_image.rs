//! Checks the seed image with the tools a guest-side reader would resemble:
//! blkid (how cloud-init finds the `cidata` label), isoinfo and xorriso
//! (independent Rock Ridge readers). Needs util-linux, genisoimage, xorriso.

use std::path::{Path, PathBuf};
use std::process::Command;

use hvbox_cloud_init::{
    iso, meta_data, network_config, user_data, write_seed, HostKey, SeedConfig,
};

fn cfg() -> SeedConfig {
    SeedConfig {
        instance_id: "hvbox-5f3a9c".into(),
        hostname: "web1".into(),
        user: "hv".into(),
        authorized_keys: vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK1 alice@laptop".into(),
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ bob@desk".into(),
        ],
        host_key: HostKey {
            private_openssh: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n".into(),
            public_openssh: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk root@web1".into(),
        },
        mac: "52:54:00:12:34:56".into(),
    }
}

/// Runs a tool and returns stdout, failing the test with stderr on error.
fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {cmd} (install util-linux, genisoimage, xorriso): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn isoinfo_list(image: &Path) -> Vec<String> {
    let out = String::from_utf8(run("isoinfo", &["-R", "-f", "-i", s(image)])).unwrap();
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

fn isoinfo_extract(image: &Path, name: &str) -> Vec<u8> {
    run(
        "isoinfo",
        &["-R", "-i", s(image), "-x", &format!("/{name}")],
    )
}

fn xorriso_extract(image: &Path, dir: &Path) {
    run(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            s(image),
            "-extract",
            "/",
            s(dir),
        ],
    );
}

fn write_image(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join("test.iso");
    let mut f = std::fs::File::create(&path).unwrap();
    iso::write_iso9660("cidata", files, &mut f).unwrap();
    path
}

#[test]
fn seed_is_found_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("seed.iso");
    let c = cfg();
    write_seed(&c, &image).unwrap();

    let blkid = String::from_utf8(run("blkid", &["-p", "-o", "export", s(&image)])).unwrap();
    assert!(blkid.lines().any(|l| l == "LABEL=cidata"), "{blkid}");
    assert!(blkid.lines().any(|l| l == "TYPE=iso9660"), "{blkid}");

    assert_eq!(
        isoinfo_list(&image),
        ["/meta-data", "/network-config", "/user-data"]
    );

    let expected = [
        ("meta-data", meta_data(&c)),
        ("user-data", user_data(&c)),
        ("network-config", network_config(&c)),
    ];
    let out = dir.path().join("xorriso");
    xorriso_extract(&image, &out);
    for (name, want) in &expected {
        assert_eq!(
            String::from_utf8(isoinfo_extract(&image, name)).unwrap(),
            *want,
            "isoinfo {name}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join(name)).unwrap(),
            *want,
            "xorriso {name}"
        );
    }
    let mut extracted: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    extracted.sort();
    assert_eq!(extracted, ["meta-data", "network-config", "user-data"]);
}

#[test]
fn seed_overwrites_atomically_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("seed.iso");
    std::fs::write(&image, b"stale").unwrap();
    write_seed(&cfg(), &image).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["seed.iso"]);
    assert_eq!(std::fs::metadata(&image).unwrap().len() % 2048, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&image).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "seed holds a private key: {mode:o}");
    }
}

#[test]
fn write_seed_error_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("missing-dir").join("seed.iso");
    let err = write_seed(&cfg(), &image).unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[test]
fn same_inputs_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.iso"), dir.path().join("b.iso"));
    write_seed(&cfg(), &a).unwrap();
    write_seed(&cfg(), &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn large_and_many_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let exact = vec![b'e'; 2048];
    let names: Vec<String> = (0..30).map(|i| format!("extra-file-{i:02}.conf")).collect();
    let mut files: Vec<(&str, &[u8])> = vec![
        ("big-file", &big),
        ("exactly-one-sector", &exact),
        ("empty", b""),
        ("MixedCase.Name.txt", b"mixed"),
    ];
    files.extend(names.iter().map(|n| (n.as_str(), n.as_bytes())));
    let image = write_image(dir.path(), &files);

    let mut want: Vec<String> = files.iter().map(|(n, _)| format!("/{n}")).collect();
    want.sort();
    assert_eq!(isoinfo_list(&image), want);

    let out = dir.path().join("x");
    xorriso_extract(&image, &out);
    for (name, data) in &files {
        assert_eq!(isoinfo_extract(&image, name), *data, "isoinfo {name}");
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            *data,
            "xorriso {name}"
        );
    }
}

/// cloud-init parses with PyYAML (YAML 1.1): every value must survive it as
/// the same string, even ones YAML 1.1 would read as numbers, booleans or dates.
#[test]
fn documents_survive_pyyaml() {
    let probe = Command::new("python3").args(["-c", "import yaml"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: python3 with PyYAML not available");
        return;
    }
    let mut c = cfg();
    c.mac = "52:54:00:12:34:56".into(); // base-60 integer in YAML 1.1
    c.user = "yes".into(); // boolean in YAML 1.1
    c.hostname = "2024-01-01".into(); // date in YAML 1.1
    c.instance_id = "0755".into(); // octal in YAML 1.1
    let dir = tempfile::tempdir().unwrap();
    for (name, doc) in [
        ("meta-data", meta_data(&c)),
        ("user-data", user_data(&c)),
        ("network-config", network_config(&c)),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &doc).unwrap();
        let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
        let parsed = run("python3", &["-c", script, s(&path)]);
        let via_pyyaml: serde_json::Value = serde_json::from_slice(&parsed).unwrap();
        let body = doc.strip_prefix("#cloud-config\n").unwrap_or(&doc);
        let intended: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(via_pyyaml, intended, "{name}");
    }
}
