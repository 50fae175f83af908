//! `hvbox box prune`: delete cache entries no project uses, and abandoned partial
//! downloads; say what machines' snapshots hold besides.

use super::box_list::{short_digest, usage};
use crate::machine::snapshots;
use anyhow::Result;
use hvbox_boxes::{format_bytes, Store};
use std::process::ExitCode;

pub fn run(dry_run: bool) -> Result<ExitCode> {
    let store = Store::open_default()?;
    // What a project on a drive that is away uses cannot be read: say so before
    // its boxes count as unused (the cache fetches them again on its next `up`).
    for root in store.projects_pruning().unreachable {
        eprintln!(
            "hvbox: note: the project in {} cannot be reached now; boxes only it uses count as unused here, and its next `hvbox up` fetches them again",
            root.display()
        );
    }
    let used = usage(&store);
    let mut freed = 0;
    let mut count = 0;
    for e in store.entries()? {
        if used.contains_key(&e.digest.to_string()) {
            continue;
        }
        let label = e
            .meta
            .as_ref()
            .map(|m| {
                let name = m.name.clone().unwrap_or_else(|| "-".into());
                match &m.version {
                    Some(v) => format!("{name} {v}"),
                    None => name,
                }
            })
            .unwrap_or_else(|| "-".into());
        let verb = if dry_run { "would remove" } else { "removed" };
        if !dry_run {
            store.remove(&e.digest)?;
        }
        println!(
            "{verb} {label} {} ({})",
            short_digest(&e.digest.to_string()),
            format_bytes(e.allocated)
        );
        freed += e.allocated;
        count += 1;
    }
    if !dry_run {
        freed += store.remove_partials()?;
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!(
        "{count} unused {}; {verb} {}",
        if count == 1 { "entry" } else { "entries" },
        format_bytes(freed)
    );
    // Snapshots are whole copies of machine disks, often the larger share of the
    // space: say what they hold, as prune leaves them alone.
    let (snapshots, bytes) = store
        .projects()
        .iter()
        .map(|root| snapshots::kept_in_project(root))
        .fold((0, 0), |(n, b), (m, c)| (n + m, b + c));
    if snapshots > 0 {
        println!(
            "machines' snapshots hold {} more in {snapshots} snapshot{} (not pruned: `hvbox snapshot list` and `hvbox snapshot delete NAME` in their projects)",
            format_bytes(bytes),
            if snapshots == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
