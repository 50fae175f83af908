//! Checks the seed image with the tools a guest-side reader would resemble:
//! blkid (how cloud-init finds the `cidata` label), isoinfo and xorriso
//! (independent Rock Ridge readers). Needs util-linux, genisoimage, xorriso.

mod common;

use std::path::{Path, PathBuf};

use common::{full, plain, python_with_pyyaml, rich, run, s};
use hvbox_cloud_init::{
    iso, meta_data, network_config, seed_bytes, user_data, write_seed, SeedConfig, UserData,
};

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

/// Each fixture's image is found by blkid as cloud-init's NoCloud finds it,
/// and both Rock Ridge readers return exactly the three documents.
#[test]
fn seed_is_found_and_readable() {
    for (name, c) in [("plain", plain()), ("full", full()), ("rich", rich())] {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("seed.iso");
        assert!(
            write_seed(&c, &image).unwrap(),
            "{name}: a new file is a change"
        );

        let blkid = String::from_utf8(run("blkid", &["-p", "-o", "export", s(&image)])).unwrap();
        assert!(
            blkid.lines().any(|l| l == "LABEL=cidata"),
            "{name}: {blkid}"
        );
        assert!(
            blkid.lines().any(|l| l == "TYPE=iso9660"),
            "{name}: {blkid}"
        );

        assert_eq!(
            isoinfo_list(&image),
            ["/meta-data", "/network-config", "/user-data"],
            "{name}"
        );

        let expected = [
            ("meta-data", meta_data(&c)),
            ("user-data", user_data(&c).unwrap()),
            ("network-config", network_config(&c).unwrap()),
        ];
        let out = dir.path().join("xorriso");
        xorriso_extract(&image, &out);
        for (file, want) in &expected {
            assert_eq!(
                String::from_utf8(isoinfo_extract(&image, file)).unwrap(),
                *want,
                "{name}: isoinfo {file}"
            );
            assert_eq!(
                std::fs::read_to_string(out.join(file)).unwrap(),
                *want,
                "{name}: xorriso {file}"
            );
        }
        let mut extracted: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        extracted.sort();
        assert_eq!(
            extracted,
            ["meta-data", "network-config", "user-data"],
            "{name}"
        );
    }
}

#[test]
fn seed_overwrites_atomically_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("seed.iso");
    std::fs::write(&image, b"stale").unwrap();
    assert!(write_seed(&plain(), &image).unwrap());
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
    let err = write_seed(&plain(), &image).unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

#[test]
fn same_inputs_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (i, make) in [plain, full, rich].into_iter().enumerate() {
        let (a, b) = (
            dir.path().join(format!("a{i}.iso")),
            dir.path().join(format!("b{i}.iso")),
        );
        write_seed(&make(), &a).unwrap();
        write_seed(&make(), &b).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(bytes, std::fs::read(&b).unwrap());
        assert_eq!(
            bytes,
            seed_bytes(&make()).unwrap(),
            "seed_bytes is what write_seed writes"
        );
    }
}

/// The caller learns from write_seed whether the seed must be re-attached.
#[test]
fn write_seed_reports_whether_bytes_changed() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("seed.iso");
    assert!(write_seed(&plain(), &image).unwrap(), "first write");
    let before = std::fs::metadata(&image).unwrap().modified().unwrap();
    assert!(
        !write_seed(&plain(), &image).unwrap(),
        "same spec, same bytes"
    );
    assert_eq!(
        std::fs::metadata(&image).unwrap().modified().unwrap(),
        before,
        "left alone"
    );

    let changes: [fn(&mut SeedConfig); 4] = [
        |c| c.packages.push("htop".into()),
        |c| c.network.dhcp6 = false,
        |c| c.timezone = Some("UTC".into()),
        |c| c.user_data = Some(UserData::parse("#cloud-config\nruncmd: [ls]\n", "u").unwrap()),
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let mut c = plain();
        change(&mut c);
        assert_ne!(
            seed_bytes(&c).unwrap(),
            seed_bytes(&plain()).unwrap(),
            "change {i}"
        );
        assert!(write_seed(&c, &image).unwrap(), "change {i}");
        assert_eq!(
            std::fs::read(&image).unwrap(),
            seed_bytes(&c).unwrap(),
            "change {i}"
        );
    }
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
/// the same string, even ones YAML 1.1 would read as numbers, booleans or
/// dates, and the merged rich document must reach it unchanged.
#[test]
fn documents_survive_pyyaml() {
    let Some(python) = python_with_pyyaml() else {
        return hvbox_test_support::skip(
            "no python3 with PyYAML (scripts/install-deps installs python3-yaml)",
        );
    };
    let mut c = rich();
    c.mac = "52:54:00:12:34:56".into(); // base-60 integer in YAML 1.1
    c.user = "yes".into(); // boolean in YAML 1.1
    c.hostname = "2024-01-01".into(); // date in YAML 1.1
    c.instance_id = "0755".into(); // octal in YAML 1.1
    c.authorized_keys
        .push("key with \u{85}NEL, \u{2028}LS, \u{7f}DEL and \u{9b}CSI".into());
    c.user_data = None; // it names user `hv` and host `web1`
    let tricky = c.clone();
    let dir = tempfile::tempdir().unwrap();
    for (cfg, which) in [(&tricky, "tricky"), (&rich(), "rich")] {
        for (name, doc) in [
            ("meta-data", meta_data(cfg)),
            ("user-data", user_data(cfg).unwrap()),
            ("network-config", network_config(cfg).unwrap()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &doc).unwrap();
            let parsed = run(python, &["-c", PYYAML_TO_JSON, s(&path)]);
            let via_pyyaml: serde_json::Value = serde_json::from_slice(&parsed).unwrap();
            let body = doc.strip_prefix("#cloud-config\n").unwrap_or(&doc);
            let intended: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(via_pyyaml, intended, "{which} {name}");
        }
    }
}

/// Loads a file with PyYAML's safe_load, as cloud-init does, and prints JSON
/// (dates as their text, which is what hvbox keeps them as).
const PYYAML_TO_JSON: &str =
    "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), default=str))";

/// hvbox types the user's YAML as PyYAML does; here PyYAML itself is the judge.
#[test]
fn user_data_is_typed_like_pyyaml() {
    let Some(python) = python_with_pyyaml() else {
        return hvbox_test_support::skip(
            "no python3 with PyYAML (scripts/install-deps installs python3-yaml)",
        );
    };
    let scalars = [
        "yes",
        "No",
        "ON",
        "off",
        "true",
        "False",
        "y",
        "n",
        "~",
        "null",
        "",
        "0644",
        "0o644",
        "09",
        "0x1F",
        "0b101",
        "-0x1A",
        "+12",
        "1_000",
        "190:20:30",
        "52:54:00:12:34:56",
        "52:54:00:ab:cd:ef",
        "3.10",
        "-1.5",
        "1.",
        ".5",
        "-.5",
        "1e3",
        "1.0e3",
        "1.0e+3",
        "6.8523015e+5",
        "1:30.5",
        "1.2.3",
        "2024-01-01",
        "12:30",
        "0:30",
        "hello world",
        "'quoted yes'",
        "\"0644\"",
        "!!str 0644",
        "!!int '0644'",
        "!!float '1'",
        "!!bool 'yes'",
    ];
    let mut doc = String::from("#cloud-config\nvalues:\n");
    for v in scalars {
        doc += &format!("  - {v}\n");
    }
    doc += "base: &b {x: 1, y: [a]}\nmerged: {<<: *b, y: [b], z: on}\nrepeated: 1\nrepeated: 2\n";
    let ours = serde_json::Value::Object(UserData::parse(&doc, "t").unwrap().to_json());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user.yaml");
    std::fs::write(&path, &doc).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&run(python, &["-c", PYYAML_TO_JSON, s(&path)])).unwrap();
    for (i, v) in scalars.iter().enumerate() {
        assert_eq!(ours["values"][i], theirs["values"][i], "`{v}`");
    }
    assert_eq!(ours, theirs);
}
