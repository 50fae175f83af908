//! `hvbox box …` and the box side of `hvbox up`, driving the binary against a
//! loopback HTTP server: catalog files, hvbox.lock, list/add/remove/prune, and an
//! `up` that makes no network request once the lock and the cache have the box.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Serves files from a folder; counts requests per path.
struct Server {
    port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn serve(root: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let counts = Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                *counts.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let mut out = stream;
                match std::fs::read(root.join(path.trim_start_matches('/'))) {
                    Ok(body) => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = out.write_all(&body);
                    }
                    Err(_) => {
                        let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            }
        });
        Server { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    fn hits(&self, path: &str) -> usize {
        *self
            .hits
            .lock()
            .unwrap()
            .get(&format!("/{path}"))
            .unwrap_or(&0)
    }
}

const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in ["cache", "data", "config", "project", "served"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Env { _dir: dir, root }
    }

    fn project(&self) -> PathBuf {
        self.root.join("project")
    }

    fn hvbox(&self, args: &[&str]) -> Output {
        self.hvbox_with(args, &[])
    }

    /// [`Env::hvbox`] with these environment variables set, and the proxy variables
    /// only as given.
    fn hvbox_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hvbox"));
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        command
            .envs(vars.iter().copied())
            .args(args)
            .current_dir(self.project())
            .env("HVBOX_CACHE_DIR", self.root.join("cache"))
            .env("HVBOX_DATA_DIR", self.root.join("data"))
            .env("HVBOX_CONFIG_DIR", self.root.join("config"))
            .env("HVBOX_HTTP_ATTEMPTS", "1")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.hvbox(args);
        assert!(
            out.status.success(),
            "hvbox {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["box", "list", "--json"])).unwrap()
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A gzip-compressed raw disk of `len` bytes in `dir`, and its SHA256SUMS line.
fn make_image(dir: &Path, name: &str, len: usize, seed: u8) -> String {
    let mut x = 0x1234_5678u32 ^ u32::from(seed);
    let data: Vec<u8> = (0..len)
        .map(|i| {
            if i % 8192 < 4096 {
                0
            } else {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }
        })
        .collect();
    std::fs::write(dir.join("tmp.raw"), &data).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c tmp.raw > {name} && rm tmp.raw"))
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success());
    format!("{}  {name}\n", sha256(&dir.join(name)))
}

#[test]
fn catalog_files_lock_list_add_remove_prune() {
    let env = Env::new();
    let served = env.root.join("served");
    let mut sums = make_image(&served, "base-1.0.raw.gz", 1 << 20, 1);
    sums.push_str(&make_image(&served, "base-1.1.raw.gz", 1 << 20, 2));
    std::fs::write(served.join("SHA256SUMS"), &sums).unwrap();
    let server = Server::serve(served.clone());
    std::fs::write(
        env.project().join("hvbox-catalog.yaml"),
        format!(
            "boxes:\n  - name: team-base\n    version: \"1.0\"\n    url: {}\n    checksums: {}\n  - name: team-base\n    version: \"1.1\"\n    url: {}\n    checksums: {}\n    format: raw.gz\n",
            server.url("base-1.0.raw.gz"),
            server.url("SHA256SUMS"),
            server.url("base-1.1.raw.gz"),
            server.url("SHA256SUMS"),
        ),
    )
    .unwrap();
    std::fs::write(
        env.project().join("hvbox.yaml"),
        "box: team-base\nengine: qemu\n",
    )
    .unwrap();

    // Resolves to the newest version, downloads it, writes the lock.
    let out = env.ok(&["box", "update", "--quiet"]);
    assert!(out.contains("wrote hvbox.lock for team-base 1.1"), "{out}");
    let lock = std::fs::read_to_string(env.project().join("hvbox.lock")).unwrap();
    let digest11 = format!("sha256:{}", sha256(&served.join("base-1.1.raw.gz")));
    for needle in [
        "requested: team-base\n",
        "name: team-base\n",
        "version: '1.1'",
        &format!("url: {}", server.url("base-1.1.raw.gz")),
        &format!("digest: {digest11}"),
        &format!(
            "size: {}",
            std::fs::metadata(served.join("base-1.1.raw.gz"))
                .unwrap()
                .len()
        ),
        "format: raw.gz",
    ] {
        assert!(lock.contains(needle), "{needle:?} missing from:\n{lock}");
    }
    assert!(!lock.contains("1.0"), "{lock}");

    // Updating again: current, the image is not downloaded twice.
    let out = env.ok(&["box", "update", "--quiet"]);
    assert!(out.contains("team-base 1.1 is current"), "{out}");
    assert_eq!(server.hits("base-1.1.raw.gz"), 1);
    assert_eq!(
        std::fs::read_to_string(env.project().join("hvbox.lock")).unwrap(),
        lock
    );

    let list = env.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "team-base");
    assert_eq!(list[0]["version"], "1.1");
    assert_eq!(list[0]["digest"], digest11);
    assert_eq!(list[0]["size"], 1 << 20);
    assert_eq!(list[0]["format"], "raw.gz");
    let project = std::fs::canonicalize(env.project()).unwrap();
    assert_eq!(list[0]["used_by"][0], project.display().to_string());
    let table = env.ok(&["box", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("team-base  1.1"), "{table}");
    assert!(table.contains("1 MiB"), "{table}");

    // A box added by URL is unused; prune removes it and keeps the used one.
    let extra_sum = make_image(&served, "extra.raw.gz", 300_000, 3);
    let extra_digest = format!("sha256:{}", extra_sum.split_whitespace().next().unwrap());
    let out = env.ok(&[
        "box",
        "add",
        &server.url("extra.raw.gz"),
        "--digest",
        &extra_digest,
        "--name",
        "extra",
        "--quiet",
    ]);
    assert!(out.contains("extra: sha256:"), "{out}");
    let out = env.hvbox(&["box", "add", &server.url("extra.raw.gz")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --digest"));
    assert_eq!(env.list().len(), 2);
    let out = env.ok(&["box", "prune", "--dry-run"]);
    assert!(out.contains("would remove extra"), "{out}");
    assert_eq!(env.list().len(), 2);
    // A machine's snapshot (a whole disk copy) is counted, not pruned.
    let snapshot = env
        .project()
        .join(".hvbox/machines/default/snapshots/before-upgrade");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(snapshot.join("disk.raw"), vec![7u8; 3 << 20]).unwrap();
    let out = env.ok(&["box", "prune"]);
    assert!(
        out.contains("removed extra") && out.contains("1 unused entry"),
        "{out}"
    );
    assert!(
        out.contains("machines' snapshots hold 3 MiB more in 1 snapshot (not pruned"),
        "{out}"
    );
    assert!(snapshot.join("disk.raw").exists());
    let list = env.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "team-base");

    // Removing a used box needs --force.
    let out = env.hvbox(&["box", "remove", "team-base"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is used by") && err.contains("--force"),
        "{err}"
    );
    // What hvbox derived from the disk (a machine's first boot keeps its boot files
    // there) goes with it.
    let digest = list[0]["digest"].as_str().unwrap().replace(':', "/");
    let derived = env.root.join("cache/derived").join(digest);
    std::fs::create_dir_all(derived.join("boot")).unwrap();
    std::fs::write(derived.join("boot/vmlinuz"), b"kept").unwrap();
    let out = env.ok(&["box", "remove", "team-base@1.1", "--force"]);
    assert!(out.contains("removed team-base"), "{out}");
    assert!(env.list().is_empty());
    assert!(!derived.exists(), "{} is left", derived.display());
}

#[test]
fn up_uses_the_lock_and_the_cache_without_network() {
    let env = Env::new();
    let served = env.root.join("served");
    let sums = make_image(&served, "disk.raw.gz", 2 << 20, 4);
    std::fs::write(served.join("SHA256SUMS"), &sums).unwrap();
    let server = Server::serve(served.clone());
    std::fs::write(
        env.root.join("config").join("catalog.yaml"),
        format!(
            "boxes:\n  - name: user-box\n    url: {}\n    checksums: {}\n",
            server.url("disk.raw.gz"),
            server.url("SHA256SUMS")
        ),
    )
    .unwrap();
    std::fs::write(
        env.project().join("hvbox.yaml"),
        "box: user-box\nengine: qemu\n",
    )
    .unwrap();

    // The disk is no bootable image: `up` gets through fetching, locking and
    // creating the machine, and stops at finding a kernel.
    let out = env.hvbox(&["up", "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("kernel"), "{stderr}");
    assert!(env.project().join("hvbox.lock").is_file());
    let fetched = server.total();
    assert_eq!(server.hits("disk.raw.gz"), 1);

    // Again from scratch: the lock answers, the cache has the box; no request.
    env.ok(&["destroy", "--force"]);
    let out = env.hvbox(&["up", "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kernel"), "{stderr}");
    assert_eq!(server.total(), fetched, "up made a network request");

    // A teammate with an empty cache and the committed lock gets the same bytes,
    // from the locked URL, without the catalog (no SHA256SUMS request).
    env.ok(&["destroy", "--force"]);
    std::fs::remove_dir_all(env.root.join("cache")).unwrap();
    std::fs::remove_file(env.root.join("config").join("catalog.yaml")).unwrap();
    let sums_before = server.hits("SHA256SUMS");
    let out = env.hvbox(&["up", "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kernel"), "{stderr}");
    assert_eq!(server.hits("SHA256SUMS"), sums_before);
    assert_eq!(server.hits("disk.raw.gz"), 2);

    // A changed file on the server no longer matches the lock: clear error.
    env.ok(&["destroy", "--force"]);
    std::fs::remove_dir_all(env.root.join("cache")).unwrap();
    let mut bytes = Vec::new();
    std::fs::File::open(served.join("disk.raw.gz"))
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes.push(0);
    std::fs::write(served.join("disk.raw.gz"), bytes).unwrap();
    let out = env.hvbox(&["up", "--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("hvbox.lock records"), "{stderr}");
    assert!(!env.project().join(".hvbox").exists());
}

#[test]
fn machines_with_different_boxes_share_one_lock_file() {
    let env = Env::new();
    let served = env.root.join("served");
    let mut sums = make_image(&served, "base.raw.gz", 1 << 20, 5);
    sums.push_str(&make_image(&served, "tools.raw.gz", 1 << 20, 6));
    std::fs::write(served.join("SHA256SUMS"), &sums).unwrap();
    let server = Server::serve(served.clone());
    let mut catalog = String::from("boxes:\n");
    for name in ["base", "tools"] {
        catalog.push_str(&format!(
            "  - name: team-{name}\n    version: \"1.0\"\n    url: {}\n    checksums: {}\n",
            server.url(&format!("{name}.raw.gz")),
            server.url("SHA256SUMS"),
        ));
    }
    std::fs::write(env.project().join("hvbox-catalog.yaml"), catalog).unwrap();
    // `web` and `db` take the top level's box; `ci` names its own.
    std::fs::write(
        env.project().join("hvbox.yaml"),
        "box: team-base\nengine: qemu\nmachines:\n  web:\n  ci:\n    box: team-tools\n  db:\n",
    )
    .unwrap();

    let out = env.ok(&["box", "update", "--quiet"]);
    assert!(out.contains("wrote hvbox.lock for team-base 1.0"), "{out}");
    assert!(out.contains("wrote hvbox.lock for team-tools 1.0"), "{out}");
    let lock = std::fs::read_to_string(env.project().join("hvbox.lock")).unwrap();
    let body: Vec<&str> = lock.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        body[..3],
        ["version: 2", "boxes:", "- requested: team-base"],
        "{lock}"
    );
    assert!(lock.contains("\n- requested: team-tools\n"), "{lock}");
    assert_eq!(lock.matches("requested:").count(), 2, "{lock}");
    // Both are in the cache, and `box list` knows who uses them.
    let project = std::fs::canonicalize(env.project()).unwrap();
    let list = env.list();
    assert_eq!(list.len(), 2);
    for entry in &list {
        assert_eq!(
            entry["used_by"][0],
            project.display().to_string(),
            "{entry}"
        );
    }
    // Again: nothing changes, nothing is downloaded twice.
    let out = env.ok(&["box", "update", "--quiet"]);
    assert!(out.contains("team-base 1.0 is current") && out.contains("team-tools 1.0 is current"));
    assert_eq!(
        std::fs::read_to_string(env.project().join("hvbox.lock")).unwrap(),
        lock
    );
    assert_eq!(server.hits("base.raw.gz") + server.hits("tools.raw.gz"), 2);

    // `up --jobs 1` goes through the machines in order and stops at the first that
    // fails (these disks have no kernel), naming it and the ones it did not reach.
    let out = env.hvbox(&["up", "--quiet", "--jobs", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stdout.contains("==> web: creating machine from box team-base 1.0"),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("hvbox: error: machine `web` (not reached: ci, db): "),
        "{stderr}"
    );
    assert!(stderr.contains("kernel"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(env.project().join("hvbox.lock")).unwrap(),
        lock
    );

    // A spec down to one box: the next resolution leaves the lock in its first form.
    std::fs::write(
        env.project().join("hvbox.yaml"),
        "box: team-base\nengine: qemu\nmachines:\n  web:\n  db:\n",
    )
    .unwrap();
    let out = env.hvbox(&["up", "db", "--quiet"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("machine `db`"));
    let lock = std::fs::read_to_string(env.project().join("hvbox.lock")).unwrap();
    assert!(
        lock.contains("version: 1\nbox:\n  requested: team-base\n"),
        "{lock}"
    );
    assert!(!lock.contains("team-tools"), "{lock}");
    assert_eq!(server.hits("base.raw.gz"), 1, "up downloaded again");
}

/// `hvbox box search` lists what a spec can name, with the versions known here,
/// and asks no server: the project's catalog (two versions, one downloaded and
/// locked), the user's (a name that hides a built-in box), the built-in boxes.
#[test]
fn box_search_lists_the_catalog_with_versions_offline() {
    let env = Env::new();
    let served = env.root.join("served");
    let mut sums = make_image(&served, "base-1.0.raw.gz", 1 << 16, 1);
    sums.push_str(&make_image(&served, "base-1.1.raw.gz", 1 << 16, 2));
    std::fs::write(served.join("SHA256SUMS"), &sums).unwrap();
    let server = Server::serve(served.clone());
    let mut catalog = String::from("boxes:\n");
    for v in ["1.0", "1.1"] {
        catalog.push_str(&format!(
            "  - name: team-base\n    version: \"{v}\"\n    url: {}\n    checksums: {}\n    description: Our team's base image\n",
            server.url(&format!("base-{v}.raw.gz")),
            server.url("SHA256SUMS"),
        ));
    }
    std::fs::write(env.project().join("hvbox-catalog.yaml"), catalog).unwrap();
    std::fs::write(
        env.root.join("config/catalog.yaml"),
        format!(
            "boxes:\n  - name: debian-12\n    version: \"12.5-mirror\"\n    url: {}\n    checksums: {}\n",
            server.url("base-1.0.raw.gz"),
            server.url("SHA256SUMS"),
        ),
    )
    .unwrap();
    std::fs::write(env.project().join("hvbox.yaml"), "box: team-base\n").unwrap();
    env.ok(&["box", "update", "--quiet"]);
    let before = server.total();

    let table = env.ok(&["box", "search"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("VERSIONS"),
        "{table}"
    );
    let line = |name: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{table}"))
    };
    assert!(
        line("team-base").contains("1.1 (cached, locked), 1.0")
            && line("team-base").contains("Our team's base image"),
        "{table}"
    );
    let ubuntu: Vec<&str> = line("ubuntu-24.04")
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(ubuntu[1..3], ["newest online", "built-in"], "{table}");
    let debian: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("debian-12 "))
        .collect();
    assert_eq!(debian.len(), 2, "{table}");
    assert!(debian[0].contains("12.5-mirror") && debian[0].contains("catalog.yaml"));
    assert!(debian[1].contains("built-in (hidden by"), "{table}");

    // A term filters by name or description, any case.
    let table = env.ok(&["box", "search", "TEAM'S"]);
    assert_eq!(table.lines().count(), 2, "{table}");
    let out = env.ok(&["box", "search", "no-such-box"]);
    assert_eq!(out, "no box known here matches \"no-such-box\"\n");

    let json: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["box", "search", "team", "--json"])).unwrap();
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["name"], "team-base");
    assert_eq!(json[0]["resolved_online"], false);
    assert_eq!(json[0]["shadowed_by"], serde_json::Value::Null);
    assert_eq!(
        json[0]["versions"],
        serde_json::json!([
            {"version": "1.1", "cached": true, "locked": true},
            {"version": "1.0", "cached": false, "locked": false},
        ])
    );
    let project_catalog = std::fs::canonicalize(env.project())
        .unwrap()
        .join("hvbox-catalog.yaml");
    assert_eq!(json[0]["source"], project_catalog.display().to_string());
    assert_eq!(server.total(), before, "box search asked the server");
}

/// Downloads go through the proxy `http_proxy` (or `HTTP_PROXY`) names, and
/// straight to the server for a host `no_proxy` lists.
#[test]
fn downloads_honour_the_proxy_variables() {
    let env = Env::new();
    let served = env.root.join("served");
    let mut digests = HashMap::new();
    for (i, name) in ["lower.raw.gz", "upper.raw.gz", "bypass.raw.gz"]
        .iter()
        .enumerate()
    {
        let sum = make_image(&served, name, 1 << 16, 10 + i as u8);
        digests.insert(
            *name,
            format!("sha256:{}", sum.split_whitespace().next().unwrap()),
        );
    }
    let server = Server::serve(served.clone());
    let proxy = hvbox_test_support::http_proxy::HttpProxy::start();
    let add = |name: &str, vars: &[(&str, &str)]| {
        let out = env.hvbox_with(
            &[
                "box",
                "add",
                &server.url(name),
                "--digest",
                &digests[name],
                "--name",
                name,
                "--quiet",
            ],
            vars,
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    add("lower.raw.gz", &[("http_proxy", &proxy.url())]);
    assert_eq!(proxy.requested(), [server.url("lower.raw.gz")]);
    assert_eq!(server.hits("lower.raw.gz"), 1);

    add("upper.raw.gz", &[("HTTP_PROXY", &proxy.url())]);
    assert_eq!(proxy.requested().last(), Some(&server.url("upper.raw.gz")));
    assert_eq!(server.hits("upper.raw.gz"), 1);

    let proxied = proxy.requested().len();
    add(
        "bypass.raw.gz",
        &[
            ("http_proxy", &proxy.url()),
            ("no_proxy", "example.org,127.0.0.1"),
        ],
    );
    assert_eq!(proxy.requested().len(), proxied, "{:?}", proxy.requested());
    assert_eq!(server.hits("bypass.raw.gz"), 1);

    // A proxy that is not there is named in the error, its password masked.
    let absent = format!("sha256:{}", "ab".repeat(32));
    let out = env.hvbox_with(
        &[
            "box",
            "add",
            &server.url("lower.raw.gz"),
            "--digest",
            &absent,
            "--name",
            "none",
            "--quiet",
        ],
        &[("http_proxy", "http://me:s3cret@127.0.0.1:1")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "http_proxy is set to http://me:***@127.0.0.1:1: downloads go through that proxy"
        ),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
