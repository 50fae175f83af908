//! Inputs for kernel-upgrade tests: a box whose kernel is older than one the host's
//! archive offers, and the newer kernel's package file.
//!
//! A Debian suite's release pocket (`bookworm`) keeps the kernel of its last point
//! release while `-security`/`-updates` carry newer ones, so a box built from the
//! release pocket alone gets an older kernel than the host can download.

use crate::{hvbox_bin, test_cache_dir, TestBox};
use std::path::PathBuf;
use std::process::Command;

/// The kernel flavour of the test boxes.
const META: &str = "linux-image-cloud-amd64";

pub struct UpgradeFixture {
    pub old_box: TestBox,
    /// `uname -r` of the box's kernel and of the packaged one.
    pub old_version: String,
    pub new_version: String,
    pub new_package: PathBuf,
}

/// Build (or reuse) the old-kernel box and download the newer kernel package; Err
/// says why this host's archive cannot provide two kernel versions.
pub fn upgrade_fixture(suite: &str) -> Result<UpgradeFixture, String> {
    let offered = run("apt-cache", &["madison", META])?;
    let (release, newer) = release_and_newer(&offered, suite).ok_or_else(|| {
        format!(
            "the host's archive offers no newer {META} than the {suite} release pocket:\n{offered}"
        )
    })?;
    let old_version = abi_of(&release)?;
    let new_version = abi_of(&newer)?;

    let debs = test_cache_dir().join("kernel-debs");
    std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
    let package = format!("linux-image-{new_version}");
    let new_package = debs.join(format!("{package}_{newer}_amd64.deb").replace(':', "%3a"));
    if !new_package.is_file() {
        let out = Command::new("apt-get")
            .args(["download", &format!("{package}={newer}")])
            .current_dir(&debs)
            .output()
            .map_err(|e| format!("apt-get download: {e}"))?;
        if !out.status.success() || !new_package.is_file() {
            return Err(format!(
                "apt-get download {package}={newer} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    let sources = test_cache_dir().join(format!("{suite}-release-only.sources"));
    // Renamed into place: tests running side by side may write it at once, and a
    // half-written file would change the box's recipe.
    let partial = sources.with_extension(format!("sources.{}", std::process::id()));
    std::fs::write(&partial, release_pocket_sources(suite)?)
        .and_then(|()| std::fs::rename(&partial, &sources))
        .map_err(|e| e.to_string())?;
    let dir = test_cache_dir().join(format!("box-{suite}-release"));
    let out = Command::new(hvbox_bin())
        .args(["box", "build", "hvbox-release-kernel", "--suite", suite])
        .arg("--sources")
        .arg(&sources)
        .arg("--output")
        .arg(&dir)
        .output()
        .map_err(|e| format!("hvbox box build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the release-pocket box failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(UpgradeFixture {
        old_box: TestBox::from_dir(dir),
        old_version,
        new_version,
        new_package,
    })
}

/// From `apt-cache madison` lines (`pkg | version | uri suite/component arch`): the
/// version in the release pocket and the newest in another pocket of the suite.
fn release_and_newer(madison: &str, suite: &str) -> Option<(String, String)> {
    let mut release = None;
    let mut newer = None;
    for line in madison.lines() {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, version, source] = fields[..] else {
            continue;
        };
        let Some(pocket) = source.split_whitespace().nth(1) else {
            continue;
        };
        let pocket = pocket.split('/').next().unwrap_or_default();
        if pocket == suite {
            release.get_or_insert_with(|| version.to_string());
        } else if pocket.starts_with(&format!("{suite}-")) {
            // madison lists newest first.
            newer.get_or_insert_with(|| version.to_string());
        }
    }
    let (release, newer) = (release?, newer?);
    (release != newer).then_some((release, newer))
}

/// The kernel release (`uname -r`) the meta package version depends on.
fn abi_of(meta_version: &str) -> Result<String, String> {
    let shown = run("apt-cache", &["show", &format!("{META}={meta_version}")])?;
    shown
        .lines()
        .filter_map(|l| l.strip_prefix("Depends:"))
        .flat_map(|d| d.split(','))
        .filter_map(|dep| dep.split_whitespace().next())
        .find_map(|name| name.strip_prefix("linux-image-"))
        .map(str::to_string)
        .ok_or_else(|| format!("no linux-image dependency in {META}={meta_version}:\n{shown}"))
}

/// The host's apt entries for `suite` (as `hvbox box build` picks them), narrowed to
/// its release pocket, as one deb822 file.
fn release_pocket_sources(suite: &str) -> Result<String, String> {
    let host = hvbox_boxes::apt_sources::host_sources_for(suite).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for stanza in host.deb822.split("\n\n") {
        let suites = stanza
            .lines()
            .find_map(|l| l.strip_prefix("Suites:"))
            .unwrap_or_default();
        if suites.split_whitespace().any(|s| s == suite) {
            for line in stanza.lines() {
                match line.strip_prefix("Suites:") {
                    Some(_) => out.push_str(&format!("Suites: {suite}\n")),
                    None => out.push_str(&format!("{line}\n")),
                }
            }
            out.push('\n');
        }
    }
    // One-line entries `deb [opts] URI SUITE COMPONENTS` become deb822 stanzas.
    for line in host.one_line.lines() {
        let rest = line.trim_start_matches("deb ").trim_start();
        let (opts, rest) = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').unwrap_or(("", r)),
            None => ("", rest),
        };
        let mut fields = rest.split_whitespace();
        let (Some(uri), Some(s)) = (fields.next(), fields.next()) else {
            continue;
        };
        if s != suite {
            continue;
        }
        let components: Vec<&str> = fields.collect();
        out.push_str(&format!(
            "Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: {}\n",
            components.join(" ")
        ));
        if let Some(key) = opts
            .split_whitespace()
            .find_map(|o| o.strip_prefix("signed-by="))
        {
            out.push_str(&format!("Signed-By: {key}\n"));
        }
        out.push('\n');
    }
    if out.is_empty() {
        return Err(format!(
            "the host has no apt entry for the {suite} release pocket"
        ));
    }
    Ok(out)
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::release_and_newer;

    #[test]
    fn madison_pockets() {
        let m = " linux-image-cloud-amd64 | 6.1.192-2 | http://a.example/debian-security bookworm-security/main amd64 Packages\n linux-image-cloud-amd64 | 6.1.176-1 | http://a.example/debian bookworm/main amd64 Packages\n";
        assert_eq!(
            release_and_newer(m, "bookworm"),
            Some(("6.1.176-1".into(), "6.1.192-2".into()))
        );
        let same = " linux-image-cloud-amd64 | 6.1.176-1 | http://a.example/debian bookworm/main amd64 Packages\n";
        assert_eq!(release_and_newer(same, "bookworm"), None);
    }
}
