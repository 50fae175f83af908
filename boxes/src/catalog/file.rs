//! Catalog files: boxes a user (`~/.config/hvbox/catalog.yaml`) or a project
//! (`hvbox-catalog.yaml` beside `hvbox.yaml`) adds.
//!
//! ```yaml
//! boxes:
//!   - name: team-base
//!     version: "2024.06"                 # optional
//!     url: https://images.example.org/team-base-2024.06.qcow2
//!     digest: sha256:…                   # or:
//!     checksums: https://images.example.org/SHA256SUMS   # lists the URL's file name
//!     format: qcow2                      # optional: checked against the bytes
//!     description: Our base image        # optional
//! ```
//!
//! A `url` or `checksums` without a scheme is a path relative to the catalog file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Digest, Error, Format};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    boxes: Vec<EntrySpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    name: String,
    version: Option<String>,
    url: String,
    digest: Option<Digest>,
    checksums: Option<String>,
    format: Option<Format>,
    description: Option<String>,
}

/// One box a catalog file lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub version: Option<String>,
    pub url: String,
    pub digest: Option<Digest>,
    pub checksums: Option<String>,
    pub format: Option<Format>,
    pub description: Option<String>,
    /// The catalog file it comes from.
    pub source: PathBuf,
}

/// Read a catalog file; a missing file is an empty catalog.
pub fn load(path: &Path) -> Result<Vec<FileEntry>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, "reading", e)),
    };
    parse(&text, path)
}

pub fn parse(text: &str, path: &Path) -> Result<Vec<FileEntry>, Error> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let spec: FileSpec = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location();
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        Error::CatalogFile {
            path: path.to_path_buf(),
            line: loc.as_ref().map_or(0, |l| l.line()),
            column: loc.as_ref().map_or(0, |l| l.column()),
            message,
        }
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let dir = std::path::absolute(dir).map_err(|e| Error::io(dir, "resolving", e))?;
    spec.boxes
        .into_iter()
        .map(|e| {
            let bad = |message: String| Error::CatalogEntry {
                path: path.to_path_buf(),
                message,
            };
            super::check_name(&e.name)?;
            match (&e.digest, &e.checksums) {
                (Some(_), Some(_)) => {
                    return Err(bad(format!(
                        "box {}: give `digest` or `checksums`, not both",
                        e.name
                    )))
                }
                (None, None) => {
                    return Err(bad(format!(
                        "box {}: needs `digest` (sha256:… or sha512:…) or `checksums` (a SHA256SUMS/SHA512SUMS URL): hvbox verifies every download",
                        e.name
                    )))
                }
                _ => {}
            }
            let url = absolute_url(&e.url, &dir);
            crate::check_url(&url).map_err(|err| bad(format!("box {}: {err}", e.name)))?;
            Ok(FileEntry {
                name: e.name,
                version: e.version,
                url,
                digest: e.digest,
                checksums: e.checksums.map(|c| absolute_url(&c, &dir)),
                format: e.format,
                description: e.description,
                source: path.to_path_buf(),
            })
        })
        .collect()
}

/// A URL as written, or a path relative to `dir` as a file:// URL.
fn absolute_url(s: &str, dir: &Path) -> String {
    if s.contains("://") {
        s.to_string()
    } else {
        format!("file://{}", dir.join(s).display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_resolve_relative_paths_and_check_fields() {
        let path = Path::new("/proj/hvbox-catalog.yaml");
        let entries = parse(
            "boxes:\n  - name: base\n    version: \"1.2\"\n    url: images/base.qcow2\n    checksums: images/SHA256SUMS\n    format: qcow2\n",
            path,
        )
        .unwrap();
        assert_eq!(entries[0].url, "file:///proj/images/base.qcow2");
        assert_eq!(
            entries[0].checksums.as_deref(),
            Some("file:///proj/images/SHA256SUMS")
        );
        assert_eq!(entries[0].format, Some("qcow2".parse().unwrap()));

        let err = parse("boxes:\n  - name: base\n    url: x.raw\n", path).unwrap_err();
        assert!(err.to_string().contains("needs `digest`"), "{err}");
        let err = parse("boxes:\n  - name: base\n    url: x.raw\n    sha: 1\n", path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/proj/hvbox-catalog.yaml:4:"), "{msg}");
        assert!(msg.contains("unknown field `sha`"), "{msg}");
    }
}
