//! `hvbox box list [--json]`: what the box cache holds, and which projects use it.

use super::table::print_table;
use crate::lockfile;
use crate::machine::MachineState;
use crate::project::STATE_DIR;
use anyhow::Result;
use hvbox_boxes::{format_bytes, Entry, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// For each digest, the project folders that use it: their `hvbox.lock` pins it, or
/// one of their machines was created from it.
pub fn usage(store: &Store) -> BTreeMap<String, Vec<PathBuf>> {
    let mut used: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for root in store.projects() {
        let mut digests: Vec<String> = Vec::new();
        if let Ok(Some(lock)) = lockfile::load(&root) {
            digests.extend(lock.digests().iter().map(ToString::to_string));
        }
        let machines = root.join(STATE_DIR).join("machines");
        for dir in std::fs::read_dir(machines).into_iter().flatten().flatten() {
            if let Ok(state) = MachineState::load(&dir.path().join("state.json")) {
                digests.push(state.box_disk_digest);
            }
        }
        digests.sort();
        digests.dedup();
        for d in digests {
            used.entry(d).or_default().push(root.clone());
        }
    }
    used
}

pub fn run(json: bool) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let entries = store.entries()?;
    let used = usage(&store);
    let used_by = |e: &Entry| used.get(&e.digest.to_string()).cloned().unwrap_or_default();
    if json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let meta = e.meta.as_ref();
                serde_json::json!({
                    "name": meta.and_then(|m| m.name.clone()),
                    "version": meta.and_then(|m| m.version.clone()),
                    "digest": e.digest.to_string(),
                    "url": meta.map(|m| m.url.clone()),
                    "format": meta.map(|m| m.format.to_string()),
                    "download_size": meta.map(|m| m.download_size),
                    "size": meta.map(|m| m.disk_size),
                    "on_disk": e.allocated,
                    "kind": if meta.is_some_and(|m| m.file) { "file" } else { "disk" },
                    "path": e.path,
                    "used_by": used_by(e),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("the box cache ({}) is empty", store.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            let meta = e.meta.as_ref();
            let users = used_by(e);
            [
                meta.and_then(|m| m.name.clone())
                    .unwrap_or_else(|| "-".into()),
                meta.and_then(|m| m.version.clone())
                    .unwrap_or_else(|| "-".into()),
                short_digest(&e.digest.to_string()),
                meta.map_or("-".into(), |m| format_bytes(m.disk_size)),
                format_bytes(e.allocated),
                if users.is_empty() {
                    "-".into()
                } else {
                    users
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ]
        })
        .collect();
    print_table(
        ["NAME", "VERSION", "DIGEST", "SIZE", "ON DISK", "USED BY"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// `sha512:0123456789ab`: enough to tell entries apart and to pass to `box remove`.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => d.to_string(),
    }
}
