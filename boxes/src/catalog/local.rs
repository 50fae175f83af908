//! Boxes built on this machine by `hvbox box build`: a directory
//! `local_boxes_dir()/<name>/` holding [`LOCAL_DISK_FILE`] and a [`LOCAL_SUMS_FILE`]
//! listing its SHA-512. If the sums file also lists [`LOCAL_KERNEL_FILE`] /
//! [`LOCAL_INITRD_FILE`] and they exist, they become the box's kernel and initrd.

use std::path::{Path, PathBuf};

use super::digest_from_sums;
use crate::{Algorithm, Artifact, BoxArtifacts, Error};

pub const LOCAL_DISK_FILE: &str = "disk.raw";
pub const LOCAL_SUMS_FILE: &str = "SHA512SUMS";
pub const LOCAL_KERNEL_FILE: &str = "vmlinuz";
pub const LOCAL_INITRD_FILE: &str = "initrd.img";

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
        Ok(Some(Artifact::new(url, digest)))
    };
    let disk = artifact(LOCAL_DISK_FILE)?.ok_or_else(|| {
        local_err(format!(
            "{LOCAL_DISK_FILE} is missing or not listed in {LOCAL_SUMS_FILE}"
        ))
    })?;
    Ok(Some(BoxArtifacts {
        name: name.to_string(),
        version: None,
        disk,
        kernel: artifact(LOCAL_KERNEL_FILE)?,
        initrd: artifact(LOCAL_INITRD_FILE)?,
    }))
}

/// Box names become directory names; keep them to a safe character set.
pub fn check_name(name: &str) -> Result<(), Error> {
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

/// Where `hvbox box build` stores boxes: `boxes` in [`data_dir`].
pub fn local_boxes_dir() -> PathBuf {
    data_dir().join("boxes")
}

/// hvbox's per-user data folder: `$HVBOX_DATA_DIR`, else `$XDG_DATA_HOME/hvbox`,
/// else `$HOME/.local/share/hvbox`.
pub fn data_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HVBOX_DATA_DIR") {
        return dir;
    }
    // Per the XDG spec, relative values are invalid and must be ignored.
    if let Some(dir) = var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return dir.join("hvbox");
    }
    // Without HOME there is no sensible per-user location; a relative path
    // keeps the function infallible and the error messages explicit.
    var("HOME").unwrap_or_default().join(".local/share/hvbox")
}
