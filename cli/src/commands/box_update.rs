//! `hvbox box update`: resolve the project's box again and rewrite `hvbox.lock`.

use super::box_fetch::{describe, fetch_project_box, Resolve};
use crate::project::Project;
use crate::spec::Spec;
use anyhow::Result;
use hvbox_boxes::{Progress, Store};
use std::process::ExitCode;

pub fn run(quiet: bool) -> Result<ExitCode> {
    let project = Project::discover()?;
    let spec = Spec::load(&project.spec_path)?;
    let store = Store::open_default()?;
    let progress = if quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    };
    let got = fetch_project_box(&project, &spec, &store, progress, Resolve::Fresh)?;
    let new = &got.lock.locked;
    let now = describe(&new.name, new.version.as_deref());
    match &got.previous {
        Some(old) if old == &got.lock => println!("{now} is current ({})", new.disk.digest),
        Some(old) => println!(
            "updated {}: {} ({}) -> {now} ({})",
            crate::lockfile::LOCK_FILE,
            describe(&old.locked.name, old.locked.version.as_deref()),
            old.locked.disk.digest,
            new.disk.digest
        ),
        None => println!(
            "wrote {} for {now} ({})",
            crate::lockfile::LOCK_FILE,
            new.disk.digest
        ),
    }
    println!("machines created from now on use it; an existing machine keeps its disk (`hvbox destroy` then `hvbox up` to switch)");
    Ok(ExitCode::SUCCESS)
}
