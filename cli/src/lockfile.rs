//! `hvbox.lock`: the box a project resolved to, byte for byte.
//!
//! Written beside `hvbox.yaml` the first time a box is resolved (by `hvbox up` or
//! `hvbox box update`), and committed with it: everyone who runs `hvbox up` on the
//! project then fetches the same URLs and verifies the same digests and sizes, with no
//! catalog lookup — so no network at all once the cache has the box. The lock names
//! what the spec asked for; when the spec asks for something else, the box is
//! resolved again and the lock rewritten. `hvbox box update` re-resolves on purpose.
//!
//! Stable for version control: fixed key order, no timestamps, nothing machine-local.

use crate::spec::{BoxArtifactsSpec, BoxSource};
use anyhow::{bail, Context, Result};
use hvbox_boxes::{Artifact, BoxArtifacts, Digest, FetchedBox, Format};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "hvbox.lock";
const LOCK_VERSION: u32 = 1;
const HEADER: &str = "# hvbox.lock: the exact box this project boots. Written by hvbox; commit it.\n# `hvbox box update` resolves the box again and rewrites this file.\n";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(rename = "box")]
    pub locked: LockedBox,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBox {
    /// What hvbox.yaml asked for when this was resolved (see [`requested`]).
    pub requested: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub disk: LockedArtifact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<LockedArtifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<LockedArtifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedArtifact {
    pub url: String,
    pub digest: Digest,
    /// Bytes of the download.
    pub size: u64,
    pub format: Format,
}

impl LockedArtifact {
    fn from_entry(a: &Artifact, entry: &hvbox_boxes::Entry) -> LockedArtifact {
        let meta = entry.meta.as_ref();
        LockedArtifact {
            url: a.url.clone(),
            digest: a.digest.clone(),
            size: meta.map_or(0, |m| m.download_size),
            format: meta.map_or(Format::RAW, |m| m.format),
        }
    }

    fn artifact(&self) -> Artifact {
        let mut a = Artifact::new(self.url.clone(), self.digest.clone());
        a.format = Some(self.format);
        // Entries cached by older hvbox versions did not record their size.
        a.size = (self.size > 0).then_some(self.size);
        a
    }
}

/// The spec's `box:` as one line: what the lock was resolved for.
pub fn requested(source: &BoxSource) -> String {
    match source {
        BoxSource::Catalog(req) => req.to_string(),
        BoxSource::Artifacts(BoxArtifactsSpec {
            disk,
            kernel,
            initrd,
        }) => {
            let mut parts = vec![format!("disk {} {}", disk.url, disk.digest)];
            if let Some(k) = kernel {
                parts.push(format!("kernel {} {}", k.url, k.digest));
            }
            if let Some(i) = initrd {
                parts.push(format!("initrd {} {}", i.url, i.digest));
            }
            parts.join(", ")
        }
    }
}

pub fn path(project_root: &Path) -> PathBuf {
    project_root.join(LOCK_FILE)
}

impl LockFile {
    /// The lock for artifacts just fetched (their sizes and formats come from the cache).
    pub fn new(source: &BoxSource, artifacts: &BoxArtifacts, fetched: &FetchedBox) -> LockFile {
        let pair = |a: &Option<Artifact>, e: &Option<hvbox_boxes::Entry>| match (a, e) {
            (Some(a), Some(e)) => Some(LockedArtifact::from_entry(a, e)),
            _ => None,
        };
        LockFile {
            version: LOCK_VERSION,
            locked: LockedBox {
                requested: requested(source),
                name: artifacts.name.clone(),
                version: artifacts.version.clone(),
                disk: LockedArtifact::from_entry(&artifacts.disk, &fetched.disk),
                kernel: pair(&artifacts.kernel, &fetched.kernel),
                initrd: pair(&artifacts.initrd, &fetched.initrd),
            },
        }
    }

    /// Whether this lock was resolved for what the spec asks now.
    pub fn matches(&self, source: &BoxSource) -> bool {
        self.locked.requested == requested(source)
    }

    /// The artifacts to fetch, each with its locked size and format to check.
    pub fn artifacts(&self) -> BoxArtifacts {
        BoxArtifacts {
            name: self.locked.name.clone(),
            version: self.locked.version.clone(),
            disk: self.locked.disk.artifact(),
            kernel: self.locked.kernel.as_ref().map(LockedArtifact::artifact),
            initrd: self.locked.initrd.as_ref().map(LockedArtifact::artifact),
        }
    }

    /// Every digest the lock pins.
    pub fn digests(&self) -> Vec<Digest> {
        [
            Some(&self.locked.disk),
            self.locked.kernel.as_ref(),
            self.locked.initrd.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|a| a.digest.clone())
        .collect()
    }

    pub fn to_text(&self) -> String {
        let body = serde_yaml::to_string(self).expect("a lock file serialises");
        format!("{HEADER}{body}")
    }

    pub fn parse(text: &str, file: &Path) -> Result<LockFile> {
        let lock: LockFile = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            let message = e.to_string();
            let message = match message.rfind(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            anyhow::anyhow!(
                "{}{at}: {message}; fix it, or delete it and run `hvbox box update` to write it again",
                file.display()
            )
        })?;
        if lock.version != LOCK_VERSION {
            bail!(
                "{}: lock file version {} is not supported (this hvbox writes version {LOCK_VERSION}); run `hvbox box update` to rewrite it",
                file.display(),
                lock.version
            );
        }
        Ok(lock)
    }
}

/// The project's lock, if it has one.
pub fn load(project_root: &Path) -> Result<Option<LockFile>> {
    let file = path(project_root);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    LockFile::parse(&text, &file).map(Some)
}

/// Write the lock atomically (temp file, fsync, rename).
pub fn save(project_root: &Path, lock: &LockFile) -> Result<()> {
    use std::io::Write;
    let file = path(project_root);
    let tmp = project_root.join(format!(".{LOCK_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(lock.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &file)
    };
    write().with_context(|| format!("writing {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvbox_boxes::catalog::BoxRequest;

    fn sample() -> LockFile {
        LockFile {
            version: 1,
            locked: LockedBox {
                requested: "debian-12".into(),
                name: "debian-12".into(),
                version: Some("20240211-1654".into()),
                disk: LockedArtifact {
                    url: "https://cloud.debian.org/images/cloud/bookworm/20240211-1654/debian-12-genericcloud-amd64-20240211-1654.tar.xz".into(),
                    digest: format!("sha512:{}", "ab".repeat(64)).parse().unwrap(),
                    size: 123_456,
                    format: "tar.xz".parse().unwrap(),
                },
                kernel: None,
                initrd: None,
            },
        }
    }

    #[test]
    fn round_trips_in_a_stable_form() {
        let lock = sample();
        let text = lock.to_text();
        assert!(text.starts_with("# hvbox.lock"), "{text}");
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body[0], "version: 1");
        assert_eq!(body[1], "box:");
        assert_eq!(body[2], "  requested: debian-12");
        assert!(body.iter().any(|l| l.trim() == "format: tar.xz"));
        assert!(!text.contains("kernel"));
        let back = LockFile::parse(&text, Path::new("hvbox.lock")).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_text(), text, "writing again changes nothing");
        let a = back.artifacts();
        assert_eq!(a.disk.size, Some(123_456));
        assert_eq!(a.disk.format, Some("tar.xz".parse().unwrap()));
    }

    #[test]
    fn matches_only_the_request_it_was_written_for() {
        let lock = sample();
        assert!(lock.matches(&BoxSource::Catalog(BoxRequest::named("debian-12"))));
        let mut pinned = BoxRequest::named("debian-12");
        pinned.version = Some("20240211-1654".into());
        assert!(!lock.matches(&BoxSource::Catalog(pinned)));
        assert!(!lock.matches(&BoxSource::Catalog(BoxRequest::named("debian-13"))));
    }

    #[test]
    fn errors_say_where_and_what_to_do() {
        let err = LockFile::parse("version: 1\nbox:\n  nmae: x\n", Path::new("/p/hvbox.lock"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/p/hvbox.lock:3:"), "{err}");
        assert!(err.contains("hvbox box update"), "{err}");
    }
}
