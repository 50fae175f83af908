//! `hvbox box remove NAME[@VERSION]|DIGEST`: delete cache entries.

use super::box_list::{short_digest, usage};
use crate::args::BoxRemoveArgs;
use anyhow::{bail, Result};
use hvbox_boxes::{format_bytes, Entry, Store};
use std::process::ExitCode;

/// Entries a `box remove` argument names: a digest (or its start, as `box list`
/// shows it), or a name with an optional `@VERSION`.
pub fn matching<'a>(entries: &'a [Entry], what: &str) -> Vec<&'a Entry> {
    let looks_like_digest = what.starts_with("sha256:") || what.starts_with("sha512:");
    if looks_like_digest {
        return entries
            .iter()
            .filter(|e| e.digest.to_string().starts_with(what))
            .collect();
    }
    let (name, version) = match what.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (what, None),
    };
    entries
        .iter()
        .filter(|e| {
            e.meta.as_ref().is_some_and(|m| {
                m.name.as_deref() == Some(name)
                    && version.is_none_or(|v| m.version.as_deref() == Some(v))
            })
        })
        .collect()
}

pub fn run(args: &BoxRemoveArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let entries = store.entries()?;
    let found = matching(&entries, &args.what);
    if found.is_empty() {
        bail!(
            "no cached box matches {:?}: give a name, NAME@VERSION or a digest as `hvbox box list` shows them",
            args.what
        );
    }
    let used = usage(&store);
    if !args.force {
        for e in &found {
            if let Some(users) = used.get(&e.digest.to_string()) {
                let users: Vec<String> = users.iter().map(|p| p.display().to_string()).collect();
                bail!(
                    "{} is used by {}; remove it anyway with --force (machines keep their own disks; `hvbox up` would download it again)",
                    short_digest(&e.digest.to_string()),
                    users.join(", ")
                );
            }
        }
    }
    for e in found {
        store.remove(&e.digest)?;
        let label = e
            .meta
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_else(|| "-".into());
        println!(
            "removed {label} {} ({})",
            short_digest(&e.digest.to_string()),
            format_bytes(e.allocated)
        );
    }
    Ok(ExitCode::SUCCESS)
}
