//! `hvbox.lock`: the boxes a project resolved to, byte for byte.
//!
//! Written beside `hvbox.yaml` the first time a box is resolved (by `hvbox up` or
//! `hvbox box update`), and committed with it: everyone who runs `hvbox up` on the
//! project then fetches the same URLs and verifies the same digests and sizes, with no
//! catalog lookup — so no network at all once the cache has the boxes. Each entry
//! names what the spec asked for; machines asking for the same box share one entry.
//! When the spec asks for something else, that box is resolved again and the lock
//! rewritten; entries nothing in the spec asks for any more are dropped. `hvbox box
//! update` re-resolves on purpose.
//!
//! Stable for version control: fixed key order, entries sorted by what was asked
//! for, no timestamps, nothing machine-local. A project with one box keeps the first
//! format (version 1, one `box:`); several boxes are written as version 2, a list
//! under `boxes:`. Both are read.

use crate::spec::{BoxArtifactsSpec, BoxSource};
use anyhow::{bail, Context, Result};
use hvbox_boxes::{Artifact, BoxArtifacts, Digest, FetchedBox, Format};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "hvbox.lock";
/// `box:`, one box.
const SINGLE_VERSION: u32 = 1;
/// `boxes:`, a list.
const LIST_VERSION: u32 = 2;
const HEADER_SINGLE: &str = "# hvbox.lock: the exact box this project boots. Written by hvbox; commit it.\n# `hvbox box update` resolves the box again and rewrites this file.\n";
const HEADER_LIST: &str = "# hvbox.lock: the exact boxes this project's machines boot. Written by hvbox; commit it.\n# `hvbox box update` resolves the boxes again and rewrites this file.\n";

/// Every box the project resolved, one entry per distinct request, sorted by it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockFile {
    boxes: Vec<LockedBox>,
}

/// The file as written: version 1 holds `box`, version 2 `boxes`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    version: u32,
    #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
    single: Option<LockedBox>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boxes: Option<Vec<LockedBox>>,
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
    /// Bytes of the disk it converts to: the cap on converting it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
}

impl LockedArtifact {
    fn from_entry(a: &Artifact, entry: &hvbox_boxes::Entry) -> LockedArtifact {
        let meta = entry.meta.as_ref();
        LockedArtifact {
            url: a.url.clone(),
            digest: a.digest.clone(),
            size: meta.map_or(0, |m| m.download_size),
            format: meta.map_or(Format::RAW, |m| m.format),
            disk_size: meta.filter(|m| !m.file).map(|m| m.disk_size),
        }
    }

    fn artifact(&self) -> Artifact {
        let mut a = Artifact::new(self.url.clone(), self.digest.clone());
        a.format = Some(self.format);
        // Entries cached by older hvbox versions did not record their size.
        a.size = (self.size > 0).then_some(self.size);
        a.disk_size = self.disk_size;
        a
    }
}

/// The spec's `box:` as one line: what a lock entry was resolved for.
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

impl LockedBox {
    /// The entry for artifacts just fetched (their sizes and formats come from the cache).
    pub fn new(source: &BoxSource, artifacts: &BoxArtifacts, fetched: &FetchedBox) -> LockedBox {
        let pair = |a: &Option<Artifact>, e: &Option<hvbox_boxes::Entry>| match (a, e) {
            (Some(a), Some(e)) => Some(LockedArtifact::from_entry(a, e)),
            _ => None,
        };
        LockedBox {
            requested: requested(source),
            name: artifacts.name.clone(),
            version: artifacts.version.clone(),
            disk: LockedArtifact::from_entry(&artifacts.disk, &fetched.disk),
            kernel: pair(&artifacts.kernel, &fetched.kernel),
            initrd: pair(&artifacts.initrd, &fetched.initrd),
        }
    }

    /// The artifacts to fetch, each with its locked size and format to check.
    pub fn artifacts(&self) -> BoxArtifacts {
        BoxArtifacts {
            name: self.name.clone(),
            version: self.version.clone(),
            disk: self.disk.artifact(),
            kernel: self.kernel.as_ref().map(LockedArtifact::artifact),
            initrd: self.initrd.as_ref().map(LockedArtifact::artifact),
        }
    }

    fn digests(&self) -> impl Iterator<Item = &Digest> {
        [Some(&self.disk), self.kernel.as_ref(), self.initrd.as_ref()]
            .into_iter()
            .flatten()
            .map(|a| &a.digest)
    }
}

impl LockFile {
    pub fn boxes(&self) -> &[LockedBox] {
        &self.boxes
    }

    /// The entry resolved for what `source` asks, if any.
    pub fn find(&self, source: &BoxSource) -> Option<&LockedBox> {
        let wanted = requested(source);
        self.boxes.iter().find(|b| b.requested == wanted)
    }

    /// Add `entry`, replacing the one for the same request.
    pub fn put(&mut self, entry: LockedBox) {
        self.boxes.retain(|b| b.requested != entry.requested);
        self.boxes.push(entry);
        self.boxes.sort_by(|a, b| a.requested.cmp(&b.requested));
    }

    /// Keep only the entries for these requests (what the spec asks for now).
    pub fn retain_requested(&mut self, wanted: &[String]) {
        self.boxes.retain(|b| wanted.contains(&b.requested));
    }

    /// Every digest the lock pins.
    pub fn digests(&self) -> Vec<Digest> {
        self.boxes
            .iter()
            .flat_map(LockedBox::digests)
            .cloned()
            .collect()
    }

    pub fn to_text(&self) -> String {
        let (header, raw) = match self.boxes.as_slice() {
            [one] => (
                HEADER_SINGLE,
                RawLock {
                    version: SINGLE_VERSION,
                    single: Some(one.clone()),
                    boxes: None,
                },
            ),
            several => (
                HEADER_LIST,
                RawLock {
                    version: LIST_VERSION,
                    single: None,
                    boxes: Some(several.to_vec()),
                },
            ),
        };
        let body = serde_yaml::to_string(&raw).expect("a lock file serialises");
        format!("{header}{body}")
    }

    pub fn parse(text: &str, file: &Path) -> Result<LockFile> {
        let raw: RawLock = serde_yaml::from_str(text).map_err(|e| {
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
        let boxes = match (raw.version, raw.single, raw.boxes) {
            (SINGLE_VERSION, Some(one), None) => vec![one],
            (LIST_VERSION, None, Some(list)) => list,
            (SINGLE_VERSION | LIST_VERSION, ..) => bail!(
                "{}: a version {} lock file holds {}; fix it, or delete it and run `hvbox box update` to write it again",
                file.display(),
                raw.version,
                if raw.version == SINGLE_VERSION { "one `box`" } else { "a list of `boxes` (and no `box`)" }
            ),
            (other, ..) => bail!(
                "{}: lock file version {other} is not supported (this hvbox reads versions {SINGLE_VERSION} and {LIST_VERSION}); run `hvbox box update` to rewrite it",
                file.display(),
            ),
        };
        let mut lock = LockFile::default();
        for entry in boxes {
            if lock.boxes.iter().any(|b| b.requested == entry.requested) {
                bail!(
                    "{}: box `{}` is listed twice; delete one entry, or the file and run `hvbox box update`",
                    file.display(),
                    entry.requested
                );
            }
            lock.put(entry);
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
    // Per process: two commands may write the lock at once; the last rename wins whole.
    let tmp = project_root.join(format!(".{LOCK_FILE}.tmp-{}", std::process::id()));
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

    fn entry(requested: &str, hex: &str) -> LockedBox {
        LockedBox {
            requested: requested.into(),
            name: requested.into(),
            version: Some("20240211-1654".into()),
            disk: LockedArtifact {
                url: format!("https://images.example.org/{requested}.tar.xz"),
                digest: format!("sha512:{}", hex.repeat(64)).parse().unwrap(),
                size: 123_456,
                format: "tar.xz".parse().unwrap(),
                disk_size: Some(2 << 30),
            },
            kernel: None,
            initrd: None,
        }
    }

    fn single() -> LockFile {
        let mut lock = LockFile::default();
        lock.put(entry("debian-12", "ab"));
        lock
    }

    #[test]
    fn one_box_keeps_the_first_format() {
        let lock = single();
        let text = lock.to_text();
        assert!(text.starts_with("# hvbox.lock: the exact box "), "{text}");
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body[0], "version: 1");
        assert_eq!(body[1], "box:");
        assert_eq!(body[2], "  requested: debian-12");
        assert!(body.iter().any(|l| l.trim() == "format: tar.xz"));
        assert!(!text.contains("kernel") && !text.contains("boxes"));
        let back = LockFile::parse(&text, Path::new("hvbox.lock")).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_text(), text, "writing again changes nothing");
        let a = back.boxes()[0].artifacts();
        assert_eq!(a.disk.size, Some(123_456));
        assert_eq!(a.disk.disk_size, Some(2 << 30), "the cap on converting it");
        assert_eq!(a.disk.format, Some("tar.xz".parse().unwrap()));
    }

    #[test]
    fn two_boxes_are_a_sorted_list() {
        let mut lock = LockFile::default();
        lock.put(entry("ubuntu-24.04", "cd"));
        lock.put(entry("debian-12", "ab"));
        let text = lock.to_text();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body[0], "version: 2");
        assert_eq!(body[1], "boxes:");
        assert_eq!(body[2], "- requested: debian-12");
        let second = body.iter().position(|l| *l == "- requested: ubuntu-24.04");
        assert!(second.is_some(), "{text}");
        assert!(!text.contains("\nbox:"), "{text}");
        let back = LockFile::parse(&text, Path::new("hvbox.lock")).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.to_text(), text, "writing again changes nothing");
        assert_eq!(back.digests().len(), 2);

        // Written in any order, read the same; the same request twice is refused.
        let mut reordered = LockFile::default();
        reordered.put(entry("debian-12", "ab"));
        reordered.put(entry("ubuntu-24.04", "cd"));
        assert_eq!(reordered.to_text(), text);
        let twice = text.replace("ubuntu-24.04", "debian-12");
        let err = LockFile::parse(&twice, Path::new("/p/hvbox.lock"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("box `debian-12` is listed twice"), "{err}");

        // Dropping what the spec no longer asks for leaves the first format.
        lock.retain_requested(&["ubuntu-24.04".to_string()]);
        assert!(lock
            .to_text()
            .contains("version: 1\nbox:\n  requested: ubuntu-24.04"));
    }

    #[test]
    fn entries_are_found_by_the_request_they_were_written_for() {
        let lock = single();
        assert!(lock
            .find(&BoxSource::Catalog(BoxRequest::named("debian-12")))
            .is_some());
        let mut pinned = BoxRequest::named("debian-12");
        pinned.version = Some("20240211-1654".into());
        assert!(lock.find(&BoxSource::Catalog(pinned)).is_none());
        assert!(lock
            .find(&BoxSource::Catalog(BoxRequest::named("debian-13")))
            .is_none());
        let mut replaced = lock.clone();
        replaced.put(entry("debian-12", "ef"));
        assert_eq!(replaced.boxes().len(), 1);
        assert_ne!(replaced, lock);
    }

    #[test]
    fn errors_say_where_and_what_to_do() {
        let err = LockFile::parse("version: 1\nbox:\n  nmae: x\n", Path::new("/p/hvbox.lock"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/p/hvbox.lock:3:"), "{err}");
        assert!(err.contains("hvbox box update"), "{err}");
        let err = LockFile::parse("version: 1\nboxes: []\n", Path::new("/p/hvbox.lock"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a version 1 lock file holds one `box`"),
            "{err}"
        );
        let err = LockFile::parse("version: 3\nboxes: []\n", Path::new("/p/hvbox.lock"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 3 is not supported"), "{err}");
    }
}
