//! Box names → artifacts.
//!
//! A name is looked up, in order, in the project's catalog file
//! (`hvbox-catalog.yaml` beside `hvbox.yaml`), the user's
//! (`$XDG_CONFIG_HOME/hvbox/catalog.yaml`), the boxes built on this machine by
//! `hvbox box build`, and the built-in boxes (Debian and Ubuntu cloud images). The
//! first place that knows the name answers; a request may add a version and a digest
//! the result must have.

mod builtin;
mod file;
mod local;
mod sums;

use std::path::{Path, PathBuf};

pub use file::FileEntry;
pub use local::{
    data_dir, local_boxes_dir, local_names, resolve_local, LOCAL_DISK_FILE, LOCAL_INITRD_FILE,
    LOCAL_KERNEL_FILE, LOCAL_SUMS_FILE,
};
pub use sums::{any_digest_from_sums, compare_versions, digest_from_sums};

use builtin::{Builtin, BUILTINS};
pub use local::check_name;

use crate::fetch::{fetch_text_with, FetchOptions};
use crate::{Artifact, BoxArtifacts, Digest, Error, Progress};

/// The project's catalog file, beside `hvbox.yaml`.
pub const PROJECT_CATALOG: &str = "hvbox-catalog.yaml";
/// The user's catalog file, in hvbox's config folder.
pub const USER_CATALOG: &str = "catalog.yaml";
/// Build folders of a built-in box tried, newest first, when no version is asked for
/// (the newest may still be uploading).
const NEWEST_TRIED: usize = 3;

/// What a spec asks for: a box name, and optionally the version and digest it must be.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoxRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

impl BoxRequest {
    pub fn named(name: &str) -> BoxRequest {
        BoxRequest {
            name: name.to_string(),
            ..BoxRequest::default()
        }
    }
}

impl std::fmt::Display for BoxRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(v) = &self.version {
            write!(f, " version {v}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// A box the catalog can name, for `hvbox box list --available`-style listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    /// "built-in", "built here" or the catalog file.
    pub source: String,
}

/// Where box names are looked up.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Entries of catalog files, the most specific file first.
    files: Vec<FileEntry>,
    file_paths: Vec<PathBuf>,
    local_dir: PathBuf,
    options: FetchOptions,
    /// URL prefix rewrites (`from`, `to`): a local mirror of the distributions' servers.
    mirrors: Vec<(String, String)>,
    /// Where checksum files of build folders (which never change) are kept.
    text_cache: Option<PathBuf>,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog::new()
    }
}

impl Catalog {
    /// The built-in boxes and the boxes built here; mirrors from `HVBOX_MIRRORS`
    /// (`FROM=TO,…` URL prefixes).
    pub fn new() -> Catalog {
        let mirrors = std::env::var("HVBOX_MIRRORS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
            .filter(|(a, _)| !a.is_empty())
            .collect();
        Catalog {
            files: Vec::new(),
            file_paths: Vec::new(),
            local_dir: local_boxes_dir(),
            options: FetchOptions::from_env(),
            mirrors,
            text_cache: None,
        }
    }

    /// [`Catalog::new`] plus the project's catalog file (if `project_dir` is given)
    /// and the user's.
    pub fn standard(project_dir: Option<&Path>) -> Result<Catalog, Error> {
        let mut c = Catalog::new();
        if let Some(dir) = project_dir {
            c = c.with_file(&dir.join(PROJECT_CATALOG))?;
        }
        if let Some(path) = user_catalog_path() {
            c = c.with_file(&path)?;
        }
        Ok(c)
    }

    /// Add a catalog file, less specific than those added before. A missing file
    /// adds nothing.
    pub fn with_file(mut self, path: &Path) -> Result<Catalog, Error> {
        self.files.extend(file::load(path)?);
        self.file_paths.push(path.to_path_buf());
        Ok(self)
    }

    pub fn with_local_dir(mut self, dir: &Path) -> Catalog {
        self.local_dir = dir.to_path_buf();
        self
    }

    pub fn with_options(mut self, options: FetchOptions) -> Catalog {
        self.options = options;
        self
    }

    /// Fetch URLs starting with `from` from `to` instead.
    pub fn with_mirror(mut self, from: &str, to: &str) -> Catalog {
        self.mirrors.push((from.to_string(), to.to_string()));
        self
    }

    /// Keep checksum files of build folders in `dir`, so resolving a pinned version
    /// again needs no network.
    pub fn with_text_cache(mut self, dir: &Path) -> Catalog {
        self.text_cache = Some(dir.to_path_buf());
        self
    }

    fn mirrored(&self, url: &str) -> String {
        for (from, to) in &self.mirrors {
            if let Some(rest) = url.strip_prefix(from.as_str()) {
                return format!("{to}{rest}");
            }
        }
        url.to_string()
    }

    /// The artifacts a request names.
    pub fn resolve(&self, req: &BoxRequest) -> Result<BoxArtifacts, Error> {
        check_name(&req.name)?;
        let in_files: Vec<&FileEntry> = match self.files.iter().find(|e| e.name == req.name) {
            // Only the most specific file that lists the name counts.
            Some(first) => self
                .files
                .iter()
                .filter(|e| e.name == req.name && e.source == first.source)
                .collect(),
            None => Vec::new(),
        };
        if !in_files.is_empty() {
            return self.resolve_file_entry(req, &in_files);
        }
        if let Some(found) = resolve_local(&self.local_dir, &req.name)? {
            if let Some(v) = &req.version {
                return Err(Error::UnknownVersion {
                    name: req.name.clone(),
                    version: v.clone(),
                    known: "none (a box built here has no versions)".into(),
                });
            }
            check_pinned(
                req,
                &found.disk.digest,
                &format!(
                    "{}",
                    self.local_dir
                        .join(&req.name)
                        .join(LOCAL_SUMS_FILE)
                        .display()
                ),
            )?;
            return Ok(found);
        }
        if let Some(b) = BUILTINS.iter().find(|b| b.name == req.name) {
            return self.resolve_builtin(req, b);
        }
        Err(Error::UnknownBox {
            name: req.name.clone(),
            known: self.known_names(),
        })
    }

    /// Whether the name `req` asks for is known without asking the network: in a
    /// catalog file, built here (and complete), or built in. The error is the one
    /// [`Catalog::resolve`] gives for a name nothing knows.
    pub fn check_offline(&self, req: &BoxRequest) -> Result<(), Error> {
        check_name(&req.name)?;
        let known = self.files.iter().any(|e| e.name == req.name)
            || resolve_local(&self.local_dir, &req.name)?.is_some()
            || BUILTINS.iter().any(|b| b.name == req.name);
        if known {
            Ok(())
        } else {
            Err(Error::UnknownBox {
                name: req.name.clone(),
                known: self.known_names(),
            })
        }
    }

    fn known_names(&self) -> String {
        let mut parts = vec![format!("built-in boxes: {}", builtin_names().join(", "))];
        let local = local_names(&self.local_dir);
        parts.push(format!(
            "boxes built here ({}): {}",
            self.local_dir.display(),
            if local.is_empty() {
                "none".to_string()
            } else {
                local.join(", ")
            }
        ));
        let mut from_files: Vec<&str> = self.files.iter().map(|e| e.name.as_str()).collect();
        from_files.sort_unstable();
        from_files.dedup();
        if !from_files.is_empty() {
            parts.push(format!("from catalog files: {}", from_files.join(", ")));
        }
        parts.join("; ")
    }

    fn resolve_file_entry(
        &self,
        req: &BoxRequest,
        entries: &[&FileEntry],
    ) -> Result<BoxArtifacts, Error> {
        let entry = match &req.version {
            Some(v) => entries
                .iter()
                .find(|e| e.version.as_deref() == Some(v.as_str()))
                .ok_or_else(|| Error::UnknownVersion {
                    name: req.name.clone(),
                    version: v.clone(),
                    known: versions_of(entries),
                })?,
            None => entries
                .iter()
                .max_by(|a, b| match (&a.version, &b.version) {
                    (Some(x), Some(y)) => compare_versions(x, y),
                    (x, y) => x.is_some().cmp(&y.is_some()),
                })
                .expect("at least one entry"),
        };
        let url = self.mirrored(&entry.url);
        let digest = match (&entry.digest, &entry.checksums) {
            (Some(d), _) => d.clone(),
            (None, Some(sums_url)) => {
                let file = file_name(&entry.url);
                let text = fetch_text_with(
                    &self.mirrored(sums_url),
                    Progress::Quiet,
                    &self.options,
                    false,
                )?;
                let found = match &req.digest {
                    Some(d) => digest_from_sums(&text, file, d.algorithm),
                    None => any_digest_from_sums(&text, file),
                };
                found.ok_or_else(|| Error::DigestNotInSums {
                    sums_url: sums_url.clone(),
                    file: file.to_string(),
                    algorithm: req
                        .digest
                        .as_ref()
                        .map_or(crate::Algorithm::Sha256, |d| d.algorithm),
                })?
            }
            (None, None) => unreachable!("catalog files are checked on load"),
        };
        check_pinned(req, &digest, &entry.source.display().to_string())?;
        let mut disk = Artifact::new(url, digest);
        disk.format = entry.format;
        Ok(BoxArtifacts {
            name: req.name.clone(),
            version: entry.version.clone(),
            disk,
            kernel: None,
            initrd: None,
        })
    }

    fn resolve_builtin(&self, req: &BoxRequest, b: &Builtin) -> Result<BoxArtifacts, Error> {
        let artifacts = |version: &str, digest: Digest| {
            let mut disk = Artifact::new(self.mirrored(&b.disk_url(version)), digest);
            disk.format = Some(b.format());
            BoxArtifacts {
                name: b.name.to_string(),
                version: Some(version.to_string()),
                disk,
                kernel: None,
                initrd: None,
            }
        };
        if let Some(version) = &req.version {
            if !b.shape.matches(version) {
                return Err(Error::UnknownVersion {
                    name: b.name.to_string(),
                    version: version.clone(),
                    known: format!("the build folders listed at {}", b.index),
                });
            }
            // Pinned by version and digest: nothing to look up.
            if let Some(d) = &req.digest {
                return Ok(artifacts(version, d.clone()));
            }
            let digest = self.builtin_digest(b, version)?;
            return Ok(artifacts(version, digest));
        }
        let index = self.mirrored(b.index);
        let listing = fetch_text_with(&index, Progress::Quiet, &self.options, true)?;
        let mut versions: Vec<String> = sums::listing_entries(&listing)
            .iter()
            .filter_map(|e| b.version_of(e))
            .collect();
        versions.sort_by(|x, y| compare_versions(y, x));
        versions.dedup();
        if versions.is_empty() {
            return Err(Error::NoVersions {
                name: b.name.to_string(),
                url: index,
                detail: "the listing names no build folders".into(),
            });
        }
        let mut last_err = None;
        for version in versions.iter().take(NEWEST_TRIED) {
            match self.builtin_digest(b, version) {
                Ok(digest) => {
                    check_pinned(req, &digest, &b.sums_url(version))?;
                    return Ok(artifacts(version, digest));
                }
                Err(
                    e @ (Error::DigestNotInSums { .. } | Error::HttpStatus { status: 404, .. }),
                ) => {
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one version was tried"))
    }

    /// The digest `b`'s checksum file lists for its image in build folder `version`.
    fn builtin_digest(&self, b: &Builtin, version: &str) -> Result<Digest, Error> {
        let sums_url = self.mirrored(&b.sums_url(version));
        let text = self.fetch_immutable_text(&sums_url).map_err(|e| match e {
            Error::HttpStatus { status: 404, .. } => Error::UnknownVersion {
                name: b.name.to_string(),
                version: version.to_string(),
                known: format!(
                    "the build folders listed at {} ({sums_url} does not exist)",
                    b.index
                ),
            },
            e => e,
        })?;
        let file = b.file_name(version);
        digest_from_sums(&text, &file, b.algorithm).ok_or(Error::DigestNotInSums {
            sums_url,
            file,
            algorithm: b.algorithm,
        })
    }

    /// A document that never changes once published, through the text cache.
    fn fetch_immutable_text(&self, url: &str) -> Result<String, Error> {
        let cached = self.text_cache.as_ref().map(|dir| {
            let mut h = crate::Hasher::new(crate::Algorithm::Sha256);
            h.update(url.as_bytes());
            dir.join(&h.finish().hex[..32])
        });
        if let Some(text) = cached
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            return Ok(text);
        }
        let text = fetch_text_with(url, Progress::Quiet, &self.options, false)?;
        if let Some(path) = cached {
            if std::fs::create_dir_all(path.parent().expect("has a folder")).is_ok() {
                let _ = crate::store::write_atomically(&path, text.as_bytes());
            }
        }
        Ok(text)
    }

    /// Every box this catalog can name without asking the network.
    pub fn list(&self) -> Vec<Listing> {
        let mut out: Vec<Listing> = self
            .files
            .iter()
            .map(|e| Listing {
                name: e.name.clone(),
                version: e.version.clone(),
                description: e.description.clone(),
                source: e.source.display().to_string(),
            })
            .collect();
        out.extend(
            local_names(&self.local_dir)
                .into_iter()
                .map(|name| Listing {
                    name,
                    version: None,
                    description: None,
                    source: "built here".into(),
                }),
        );
        out.extend(BUILTINS.iter().map(|b| Listing {
            name: b.name.to_string(),
            version: None,
            description: Some(b.description.to_string()),
            source: "built-in".into(),
        }));
        out
    }
}

fn versions_of(entries: &[&FileEntry]) -> String {
    let mut v: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.version.as_deref())
        .collect();
    v.sort_by(|a, b| compare_versions(a, b));
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The last path segment of a URL: the name a checksum file lists.
fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// A digest the request pins must be the one found.
fn check_pinned(req: &BoxRequest, found: &Digest, source: &str) -> Result<(), Error> {
    match &req.digest {
        Some(pinned) if pinned.algorithm == found.algorithm && pinned != found => {
            Err(Error::PinnedDigestDiffers {
                name: req.name.clone(),
                pinned: pinned.clone(),
                listed: found.clone(),
                source_name: source.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// The user's catalog file: `$HVBOX_CONFIG_DIR/catalog.yaml`, else
/// `$XDG_CONFIG_HOME/hvbox/catalog.yaml`, else `~/.config/hvbox/catalog.yaml`.
pub fn user_catalog_path() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HVBOX_CONFIG_DIR") {
        return Some(dir.join(USER_CATALOG));
    }
    if let Some(dir) = var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Some(dir.join("hvbox").join(USER_CATALOG));
    }
    var("HOME").map(|h| h.join(".config").join("hvbox").join(USER_CATALOG))
}

/// Resolve a box name with the standard catalog and no project.
pub fn resolve(name: &str) -> Result<BoxArtifacts, Error> {
    Catalog::standard(None)?.resolve(&BoxRequest::named(name))
}

/// [`resolve`] with an explicit local boxes directory (and no catalog files).
pub fn resolve_in(boxes_dir: &Path, name: &str) -> Result<BoxArtifacts, Error> {
    Catalog::new()
        .with_local_dir(boxes_dir)
        .resolve(&BoxRequest::named(name))
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_names() {
        for bad in ["", "..", ".hidden", "a/b", "../x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["debian-12", "my_box.v2", "ubuntu-24.04"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }
}
