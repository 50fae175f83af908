//! Box names → artifacts: locally built boxes first, then built-in entries.
//!
//! A local box is a directory `local_boxes_dir()/<name>/` holding
//! [`LOCAL_DISK_FILE`] and a [`LOCAL_SUMS_FILE`] listing its SHA-512, as
//! written by `hvbox box build`. If the sums file also lists
//! [`LOCAL_KERNEL_FILE`] / [`LOCAL_INITRD_FILE`] and they exist, they become
//! the box's kernel and initrd.

use std::path::{Path, PathBuf};

use crate::{Algorithm, Artifact, BoxArtifacts, Digest, Error, Progress};

pub const LOCAL_DISK_FILE: &str = "disk.raw";
pub const LOCAL_SUMS_FILE: &str = "SHA512SUMS";
pub const LOCAL_KERNEL_FILE: &str = "vmlinuz";
pub const LOCAL_INITRD_FILE: &str = "initrd.img";

struct Builtin {
    name: &'static str,
    /// Directory URL holding both the image and its SHA512SUMS.
    base: &'static str,
    disk_file: &'static str,
}

// Debian's official cloud images; "latest" is re-published with each point
// release, which is why the digest is read from the sums file at resolve time
// instead of being pinned here.
const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "debian-12",
        base: "https://cloud.debian.org/images/cloud/bookworm/latest",
        disk_file: "debian-12-genericcloud-amd64.raw",
    },
    Builtin {
        name: "debian-13",
        base: "https://cloud.debian.org/images/cloud/trixie/latest",
        disk_file: "debian-13-genericcloud-amd64.raw",
    },
];

/// Resolve a box name: first a locally built box in
/// `local_boxes_dir()/<name>/`, then the built-in entries (which fetches the
/// distribution's SHA512SUMS to learn the current digest).
pub fn resolve(name: &str) -> Result<BoxArtifacts, Error> {
    resolve_in(&local_boxes_dir(), name)
}

/// [`resolve`] with an explicit local boxes directory.
pub fn resolve_in(boxes_dir: &Path, name: &str) -> Result<BoxArtifacts, Error> {
    if let Some(found) = resolve_local(boxes_dir, name)? {
        return Ok(found);
    }
    if let Some(builtin) = BUILTINS.iter().find(|b| b.name == name) {
        let sums_url = format!("{}/SHA512SUMS", builtin.base);
        let sums = crate::fetch_text(&sums_url, Progress::Quiet)?;
        let digest =
            digest_from_sums(&sums, builtin.disk_file, Algorithm::Sha512).ok_or_else(|| {
                Error::DigestNotInSums {
                    sums_url: sums_url.clone(),
                    file: builtin.disk_file.to_string(),
                    algorithm: Algorithm::Sha512,
                }
            })?;
        return Ok(BoxArtifacts {
            name: name.to_string(),
            disk: Artifact {
                url: format!("{}/{}", builtin.base, builtin.disk_file),
                digest,
            },
            kernel: None,
            initrd: None,
        });
    }
    Err(Error::UnknownBox {
        name: name.to_string(),
        builtin: builtin_names().join(", "),
        local: match local_names(boxes_dir).as_slice() {
            [] => "none".to_string(),
            names => names.join(", "),
        },
        dir: boxes_dir.to_path_buf(),
    })
}

/// Look up a locally built box in `boxes_dir/<name>/`. `Ok(None)` when no
/// such directory exists; an error when it exists but is incomplete, since
/// silently falling back to a built-in of the same name would surprise.
pub fn resolve_local(boxes_dir: &Path, name: &str) -> Result<Option<BoxArtifacts>, Error> {
    check_name(name)?;
    let dir = boxes_dir.join(name);
    if !dir.is_dir() {
        return Ok(None);
    }
    // file:// URLs need absolute paths.
    let dir = std::path::absolute(&dir).map_err(|e| Error::io(&dir, "resolving", e))?;
    let local_err = |reason: String| Error::LocalBox {
        dir: dir.clone(),
        reason,
    };
    let sums_path = dir.join(LOCAL_SUMS_FILE);
    let sums =
        std::fs::read_to_string(&sums_path).map_err(|e| Error::io(&sums_path, "reading", e))?;
    let artifact = |file: &str| -> Result<Option<Artifact>, Error> {
        let path = dir.join(file);
        let Some(digest) = digest_from_sums(&sums, file, Algorithm::Sha512) else {
            return Ok(None);
        };
        if !path.is_file() {
            return Ok(None);
        }
        let url = path
            .to_str()
            .map(|p| format!("file://{p}"))
            .ok_or_else(|| local_err(format!("path {} is not valid UTF-8", path.display())))?;
        Ok(Some(Artifact { url, digest }))
    };
    let disk = artifact(LOCAL_DISK_FILE)?.ok_or_else(|| {
        local_err(format!(
            "{LOCAL_DISK_FILE} is missing or not listed in {LOCAL_SUMS_FILE}"
        ))
    })?;
    Ok(Some(BoxArtifacts {
        name: name.to_string(),
        disk,
        kernel: artifact(LOCAL_KERNEL_FILE)?,
        initrd: artifact(LOCAL_INITRD_FILE)?,
    }))
}

/// Box names become directory names; keep them to a safe character set.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidBoxName {
            name: name.to_string(),
        })
    }
}

/// Names of local boxes (directories containing a disk image), sorted.
pub fn local_names(boxes_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(boxes_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(LOCAL_DISK_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Where `hvbox box build` stores boxes: `$HVBOX_DATA_DIR/boxes`, else
/// `$XDG_DATA_HOME/hvbox/boxes`, else `$HOME/.local/share/hvbox/boxes`.
pub fn local_boxes_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HVBOX_DATA_DIR") {
        return dir.join("boxes");
    }
    // Per the XDG spec, relative values are invalid and must be ignored.
    if let Some(dir) = var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return dir.join("hvbox").join("boxes");
    }
    // Without HOME there is no sensible per-user location; a relative path
    // keeps the function infallible and the error messages explicit.
    var("HOME")
        .unwrap_or_default()
        .join(".local/share/hvbox/boxes")
}

pub fn builtin_names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

/// Parse a SHA512SUMS/SHA256SUMS file (`<hex>  <name>` or `<hex> *<name>`
/// lines) and return the digest listed for file `name`. Lines that are
/// malformed or have the wrong length for `algorithm` are ignored.
pub fn digest_from_sums(text: &str, name: &str, algorithm: Algorithm) -> Option<Digest> {
    text.lines().find_map(|line| {
        let (hex, rest) = line.trim().split_once(' ')?;
        // GNU format: one space, then ' ' (text mode) or '*' (binary mode).
        let file = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .unwrap_or(rest);
        let file = file.strip_prefix("./").unwrap_or(file);
        if file != name {
            return None;
        }
        Digest::new(algorithm, &hex.to_ascii_lowercase()).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unsafe_names() {
        for bad in ["", "..", ".hidden", "a/b", "../x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["debian-12", "my_box.v2"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }
}
