//! Debian's real cloud-init, run from an unpacked package to check documents.
//!
//! Installing the cloud-init package would configure the test host itself on
//! its next boot, so the .deb is only unpacked (`apt-get download`, `dpkg -x`)
//! into ~/.cache/hvbox-tests/cloud-init/VERSION, outside the checkout, and its
//! code runs from there with Debian's python3. The Python libraries it
//! imports come from the distro (scripts/install-deps installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub struct CloudInit {
    pub version: String,
    /// The unpacked package: `usr/bin/cloud-init`, `usr/lib/python3/dist-packages`.
    root: PathBuf,
}

const HINT: &str = "scripts/install-deps installs what cloud-init imports";

impl CloudInit {
    /// The unpacked cloud-init, fetched on first use. `Err` holds the reason
    /// to skip: this host has no apt to fetch Debian's package with. Every
    /// other failure panics, so a broken setup cannot pass for a valid seed.
    pub fn get() -> Result<&'static CloudInit, String> {
        static CELL: OnceLock<Result<CloudInit, String>> = OnceLock::new();
        CELL.get_or_init(fetch).as_ref().map_err(Clone::clone)
    }

    fn command(&self, args: &[&str]) -> Command {
        // Debian's interpreter: it has the distro's Python libraries on its path.
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(self.root.join("usr/bin/cloud-init"))
            .args(args)
            .env(
                "PYTHONPATH",
                self.root.join("usr/lib/python3/dist-packages"),
            )
            .env_remove("PYTHONHOME");
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cloud-init {args:?} with /usr/bin/python3: {e}"))
    }

    /// `cloud-init schema --config-file`: fails the test with cloud-init's own
    /// report on any schema error or deprecation.
    pub fn check_cloud_config(&self, path: &Path) {
        let out = self.output(&["schema", "--config-file", path.to_str().unwrap()]);
        let text = report(&out);
        assert!(
            out.status.success(),
            "cloud-init {} rejects {}:\n{text}\n({HINT})",
            self.version,
            path.display()
        );
        let deprecated = text
            .lines()
            .filter_map(|l| l.strip_prefix("Cloud config schema deprecations:"))
            .any(|rest| !rest.trim().is_empty());
        assert!(
            !deprecated,
            "cloud-init {} finds deprecated keys in {}:\n{text}",
            self.version,
            path.display()
        );
    }

    /// Whether this cloud-init can schema-check a network-config (newer than 22.4).
    pub fn has_network_schema(&self) -> bool {
        let out = self.output(&["schema", "--help"]);
        assert!(
            out.status.success(),
            "cloud-init schema --help failed:\n{}\n({HINT})",
            report(&out)
        );
        String::from_utf8_lossy(&out.stdout).contains("--schema-type")
    }

    /// `cloud-init schema --schema-type network-config`; call only when
    /// [`CloudInit::has_network_schema`].
    pub fn check_network_schema(&self, path: &Path) {
        let p = path.to_str().unwrap();
        let out = self.output(&[
            "schema",
            "--schema-type",
            "network-config",
            "--config-file",
            p,
        ]);
        assert!(
            out.status.success(),
            "cloud-init {} rejects network-config {p}:\n{}",
            self.version,
            report(&out)
        );
    }

    /// Renders a network-config for Debian's ifupdown, as the guest will,
    /// with the NIC `mac` present; returns /etc/network/interfaces.d's file.
    pub fn render_eni(&self, path: &Path, mac: &str, out_dir: &Path) -> String {
        self.render(
            path,
            mac,
            out_dir,
            "eni",
            "etc/network/interfaces.d/50-cloud-init",
        )
    }

    /// Renders a network-config for systemd-networkd, as hvbox's own boxes do;
    /// returns the `.network` file for eth0.
    pub fn render_networkd(&self, path: &Path, mac: &str, out_dir: &Path) -> String {
        self.render(
            path,
            mac,
            out_dir,
            "networkd",
            "etc/systemd/network/10-cloud-init-eth0.network",
        )
    }

    fn render(&self, path: &Path, mac: &str, out_dir: &Path, kind: &str, file: &str) -> String {
        let p = path.to_str().unwrap();
        let args = [
            "devel",
            "net-convert",
            "--network-data",
            p,
            "--kind",
            "yaml",
            "--directory",
            out_dir.to_str().unwrap(),
            "--distro",
            "debian",
            "--output-kind",
            kind,
            "--mac",
            &format!("eth0,{mac}"),
        ];
        let out = self.output(&args);
        assert!(
            out.status.success(),
            "cloud-init {} cannot render network-config {p} for {kind}:\n{}",
            self.version,
            report(&out)
        );
        let rendered = out_dir.join(file);
        std::fs::read_to_string(&rendered).unwrap_or_else(|e| {
            panic!(
                "net-convert wrote no {}: {e}\n{}",
                rendered.display(),
                report(&out)
            )
        })
    }
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tool_output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn fetch() -> Result<CloudInit, String> {
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err(
            "apt-get is not available: cloud-init's schema checks need Debian's cloud-init package"
                .into(),
        );
    }
    let cache = cache_root();
    let version = match candidate_version() {
        Some(v) => v,
        // Offline or without package lists: an earlier download still serves.
        None => newest_cached(&cache).unwrap_or_else(|| {
            panic!(
                "apt knows no cloud-init package and none is cached in {}: run `apt-get update`",
                cache.display()
            )
        }),
    };
    let root = cache.join(version.replace([':', '/'], "_"));
    if !root.join("usr/bin/cloud-init").exists() {
        unpack(&version, &cache, &root);
    }
    let ci = CloudInit { version, root };
    let out = ci.output(&["--version"]);
    assert!(
        out.status.success(),
        "the unpacked cloud-init does not start:\n{}\n({HINT})",
        report(&out)
    );
    Ok(ci)
}

/// `$XDG_CACHE_HOME` or `~/.cache`, then hvbox-tests/cloud-init.
fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME is set");
    base.join("hvbox-tests/cloud-init")
}

fn candidate_version() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["policy", "cloud-init"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))?
        .trim();
    (v != "(none)" && !v.is_empty()).then(|| v.to_owned())
}

fn newest_cached(cache: &Path) -> Option<String> {
    let mut found: Vec<String> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("usr/bin/cloud-init").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    found.sort();
    found.pop()
}

/// Downloads and unpacks into a scratch dir beside `root`, then renames it
/// into place, so concurrent test processes never see a half-unpacked tree.
fn unpack(version: &str, cache: &Path, root: &Path) {
    std::fs::create_dir_all(cache)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let scratch = tempfile::tempdir_in(cache).unwrap();
    let out = tool_output(
        Command::new("apt-get")
            .args(["download", &format!("cloud-init={version}")])
            .current_dir(scratch.path()),
    );
    assert!(
        out.status.success(),
        "apt-get download cloud-init={version} failed:\n{}",
        report(&out)
    );
    let deb = std::fs::read_dir(scratch.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download leaves a .deb");
    let tree = scratch.path().join("root");
    let out = tool_output(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree));
    assert!(
        out.status.success(),
        "dpkg -x {} failed:\n{}",
        deb.display(),
        report(&out)
    );
    if let Err(e) = std::fs::rename(&tree, root) {
        // Another test process may have won the race; its tree is as good.
        assert!(
            root.join("usr/bin/cloud-init").exists(),
            "cannot move cloud-init into {}: {e}",
            root.display()
        );
    }
}
