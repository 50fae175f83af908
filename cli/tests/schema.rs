//! `hvbox schema` against a real JSON Schema validator (python3's jsonschema, draft
//! 2020-12): the examples and the README's specs pass it, and specs the parser
//! refuses fail it; `hvbox init` points editors to a copy that `up` and `validate`
//! keep current.

mod common;

use common::{hvbox_isolated, text};
use std::path::{Path, PathBuf};
use std::process::Command;

const PYTHON: &str = "/usr/bin/python3";

/// Validates each YAML file given against the schema; prints `ok` or the first
/// error per file, one line each.
const VALIDATE: &str = r#"
import json, sys, yaml
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
for path in sys.argv[2:]:
    errors = list(validator.iter_errors(yaml.safe_load(open(path))))
    print("ok" if not errors else "invalid: " + errors[0].message.replace("\n", " "))
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Why this host cannot run the validator, if it cannot.
fn validator_missing() -> Option<String> {
    let out = Command::new(PYTHON)
        .args([
            "-c",
            "import jsonschema, yaml; jsonschema.Draft202012Validator",
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "{PYTHON} has no jsonschema (with Draft202012Validator) or yaml module: {}",
            text(&out.stderr).trim()
        )),
        Err(e) => Some(format!("{PYTHON} cannot run: {e}")),
    }
}

/// Verdicts of the validator on each spec text, in order.
fn verdicts(schema: &Path, specs: &[(String, String)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = specs
        .iter()
        .enumerate()
        .map(|(i, (_, spec))| {
            let file = dir.path().join(format!("{i}.yaml"));
            std::fs::write(&file, spec).unwrap();
            file
        })
        .collect();
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(VALIDATE)
        .arg(schema)
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// The ```yaml blocks of the README's spec reference (from "## Spec reference" to
/// the next "## "), those at the start of a line: the catalog and lock file
/// examples sit indented in the list about boxes. Digests written `…` get digits.
fn readme_specs() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("\n## Spec reference")
        .expect("a spec reference");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut specs = Vec::new();
    let mut lines = section.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line != "```yaml" {
            continue;
        }
        let block: String = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| *l != "```")
            .map(|l| format!("{l}\n"))
            .collect();
        let block = block
            .replace("\"sha512:…\"", &format!("\"sha512:{}\"", "0".repeat(128)))
            .replace("\"sha256:…\"", &format!("\"sha256:{}\"", "0".repeat(64)));
        assert!(
            block.lines().any(|l| l.starts_with("box:") || l.starts_with("machines:")),
            "the README's spec reference has a yaml block that is no spec (line {} of the section):\n{block}",
            n + 1
        );
        specs.push((
            format!("README spec reference block {}", specs.len() + 1),
            block,
        ));
    }
    specs
}

fn example_specs() -> Vec<(String, String)> {
    let mut specs = Vec::new();
    for entry in std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .flatten()
    {
        let spec = entry.path().join("hvbox.yaml");
        if spec.is_file() {
            specs.push((
                spec.display().to_string(),
                std::fs::read_to_string(&spec).unwrap(),
            ));
        }
    }
    specs
}

#[test]
fn the_examples_and_the_readme_pass_the_schema_and_mistakes_fail_it() {
    if let Some(why) = validator_missing() {
        return hvbox_test_support::skip(why);
    }
    let work = tempfile::tempdir().unwrap();
    let out = hvbox_isolated(work.path(), work.path(), &["schema"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema["properties"]["machines"].is_object());
    let schema_file = work.path().join("hvbox.schema.json");
    std::fs::write(&schema_file, &out.stdout).unwrap();

    let examples = example_specs();
    let readme = readme_specs();
    assert!(examples.len() >= 5, "examples: {examples:?}");
    assert!(readme.len() >= 4, "README blocks: {readme:?}");
    let good: Vec<(String, String)> = examples.into_iter().chain(readme).collect();
    for ((name, spec), verdict) in good.iter().zip(verdicts(&schema_file, &good)) {
        assert_eq!(verdict, "ok", "{name} fails the schema:\n{spec}");
    }

    // The hand-written schemas accept what the parser accepts.
    let fine: Vec<(String, String)> = [
        "box: debian-12\nmemory: 1.5G\ndisk: 20GiB\n",
        "box: debian-12\nmemory: \" 512 mib \"\ndisk: .5T\n",
        "box: {name: debian-12, version: 20240211}\n",
        "box: {name: debian-12, version: \"2024.06\"}\n",
        "box: debian-12\nhostname: web-1.Example\nssh: {user: _ops-1, groups: [docker]}\ncpus: 255\n",
        "box: debian-12\nports: [{host: 65535, guest: 1, protocol: udp, address: \"::\"}]\n",
        "box: debian-12\nports: [{auto: false}, {host: 8080, guest: 80}]\n",
        "box: debian-12\nnetwork: {addresses: [\"fd00::20/64\", 10.0.2.20/24], gateway4: 10.0.2.2}\n",
        "box: debian-12\nkernel: {cmdline: root=/dev/vda1 ro, cmdline_append: quiet}\n",
        "box: debian-12\nprovision:\n  - {shell: echo, args: [1.5, true, x], privileged: false, name: \" set up \"}\n  - {file: conf, destination: etc/}\n",
        "box: debian-12\nmachines:\n  web-1:\n  db:\n    hostname: ~\n    disk: ~\n",
        "machines:\n  a:\n    box: debian-12\n",
    ]
    .iter()
    .map(|spec| (spec.to_string(), spec.to_string()))
    .collect();
    for ((_, spec), verdict) in fine.iter().zip(verdicts(&schema_file, &fine)) {
        assert_eq!(verdict, "ok", "the schema refuses:\n{spec}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hvbox.yaml"), spec).unwrap();
        std::fs::write(dir.path().join("conf"), "").unwrap();
        let out = hvbox_isolated(dir.path(), dir.path(), &["validate"]);
        assert!(
            out.status.success(),
            "the parser refuses:\n{spec}{}",
            text(&out.stderr)
        );
    }

    // Each of these the parser refuses, and so must the schema.
    let digest = format!("sha256:{}", "d".repeat(64));
    let bad: Vec<(String, String)> = [
        "box: debian-12\nmemroy: 1G\n",
        "box: debian-12\ncpus: 0\n",
        "box: debian-12\ncpus: 256\n",
        "box: debian-12\nmemory: lots\n",
        "box: debian-12\nmemory: 0G\n",
        "box: debian-12\nmemory: 1024\n",
        "box: debian-12\nmemory:\n",
        &format!("box:\n  name: debian-12\n  disk: {{url: http://x/d, digest: \"{digest}\"}}\n"),
        "box:\n  disk: {url: http://x/d, digest: \"md5:00\"}\n",
        "box: {name: debian-12, version: 2024.06}\n",
        "box: debian-12\nhostname: -bad\n",
        "box: debian-12\nssh: {user: root}\n",
        "box: debian-12\nssh: {user: dev, port: 22}\n",
        "box: debian-12\nports: [{host: 70000, guest: 22}]\n",
        "box: debian-12\nports: [{auto: false, host: 8080, guest: 80}]\n",
        "box: debian-12\nports: [{auto: \"no\"}]\n",
        "box: debian-12\nnetwork: {addresses: [10.0.2.20]}\n",
        "box: debian-12\nkernel: {cmdline_append: \"a\\nb\"}\n",
        "box: debian-12\nprovision:\n  - shell: echo\n    script: a.sh\n",
        "box: debian-12\nprovision:\n  - file: a.conf\n",
        "box: debian-12\nprovision:\n  - script: ~/a.sh\n",
        "cpus: 1\n",
        "box: debian-12\nmachines: {}\n",
        "box: debian-12\nmachines:\n  Web:\n",
        "box: debian-12\nhostname: dev\nmachines:\n  web:\n",
        "machines:\n  web:\n    box: debian-12\n  db:\n",
        "box: debian-12\nmachines:\n  web:\n    machines: {}\n",
    ]
    .iter()
    .map(|spec| (spec.to_string(), spec.to_string()))
    .collect();
    for ((_, spec), verdict) in bad.iter().zip(verdicts(&schema_file, &bad)) {
        assert!(
            verdict.starts_with("invalid"),
            "the schema accepts:\n{spec}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hvbox.yaml"), spec).unwrap();
        let out = hvbox_isolated(dir.path(), dir.path(), &["validate"]);
        assert!(!out.status.success(), "the parser accepts:\n{spec}");
    }
}

#[test]
fn init_points_editors_to_a_schema_that_up_and_validate_keep_current() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| hvbox_isolated(dir.path(), home.path(), args);
    let schema = text(&run(&["schema"]).stdout);
    assert!(run(&["init"]).status.success());
    let spec = std::fs::read_to_string(dir.path().join("hvbox.yaml")).unwrap();
    assert_eq!(
        spec.lines().next(),
        Some("# yaml-language-server: $schema=.hvbox/hvbox.schema.json")
    );
    let copy = dir.path().join(".hvbox/hvbox.schema.json");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), schema);

    // Another hvbox's schema, or none (a fresh clone: .hvbox/ is not committed),
    // is replaced by this one's.
    std::fs::write(&copy, "{}").unwrap();
    let out = run(&["validate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{}: ok\n", dir.path().join("hvbox.yaml").display())
    );
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), schema);
    std::fs::remove_dir_all(dir.path().join(".hvbox")).unwrap();
    assert!(run(&["validate"]).status.success());
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), schema);

    // A spec that does not name it gets no copy.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("hvbox.yaml"), "box: debian-12\n").unwrap();
    assert!(hvbox_isolated(other.path(), home.path(), &["validate"])
        .status
        .success());
    assert!(!other.path().join(".hvbox").exists());
}
