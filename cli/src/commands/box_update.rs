//! `hvbox box update`: resolve every box of the project again and rewrite
//! `hvbox.lock`.

use super::box_fetch::{describe, fetch_boxes, Resolve};
use crate::lockfile::{LockedBox, LOCK_FILE};
use crate::project::Project;
use crate::spec::ProjectSpec;
use anyhow::Result;
use hvbox_boxes::{Progress, Store};
use std::process::ExitCode;

pub fn run(quiet: bool) -> Result<ExitCode> {
    let project = Project::discover()?;
    let spec = ProjectSpec::load(&project.spec_path)?;
    let store = Store::open_default()?;
    let progress = if quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    };
    let boxes = spec.boxes();
    let got = fetch_boxes(&project, &spec, &boxes, &store, progress, Resolve::Fresh)?;
    for b in &got {
        let now = name_of(&b.locked);
        let digest = &b.locked.disk.digest;
        match &b.previous {
            Some(old) if old == &b.locked => println!("{now} is current ({digest})"),
            Some(old) => println!(
                "updated {LOCK_FILE}: {} ({}) -> {now} ({digest})",
                name_of(old),
                old.disk.digest
            ),
            None => println!("wrote {LOCK_FILE} for {now} ({digest})"),
        }
    }
    let (subject, verb) = if got.len() == 1 {
        ("it", "keeps its disk")
    } else {
        ("them", "keep their disks")
    };
    println!("machines created from now on use {subject}; existing machines {verb} (`hvbox destroy` then `hvbox up` to switch)");
    Ok(ExitCode::SUCCESS)
}

fn name_of(b: &LockedBox) -> String {
    describe(&b.name, b.version.as_deref())
}
