//! `hvbox list [--json]`: every machine of every project of this user, from the
//! projects the box cache has seen (`hvbox up` records each). Records of project
//! folders that are gone, or no longer hold a spec or machines, are forgotten, with
//! a note; folders that cannot be reached now (an unmounted drive) are kept.

use super::select::{Need, Selection};
use super::status::Row;
use super::table::print_table;
use crate::project::{Project, STATE_DIR};
use crate::spec::SPEC_FILE;
use anyhow::Result;
use hvbox_boxes::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(json: bool) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let folders = store.projects_pruning();
    for root in &folders.gone {
        eprintln!(
            "hvbox: note: forgot the project in {}: the folder is gone",
            root.display()
        );
    }
    for root in &folders.unreachable {
        eprintln!(
            "hvbox: note: the project in {} cannot be reached now (is its drive mounted?); it is listed again once it can",
            root.display()
        );
    }
    let mut rows: Vec<(PathBuf, Row)> = Vec::new();
    for root in folders.present {
        let spec = root.join(SPEC_FILE);
        if !spec.is_file() && !root.join(STATE_DIR).join("machines").is_dir() {
            store.forget_project(&root);
            eprintln!(
                "hvbox: note: forgot the project in {}: it has no {SPEC_FILE} and no machines any more",
                root.display()
            );
            continue;
        }
        let selection = match Selection::of(Project::of_spec(spec), Need::Names) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hvbox: warning: {}: {e}", root.display());
                continue;
            }
        };
        for target in selection.many(&[], true)? {
            rows.push((root.clone(), Row::new(&selection, &target)));
        }
    }
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(root, row)| {
                let mut value = row.json();
                value["project"] = serde_json::json!(root);
                value
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if rows.is_empty() {
        eprintln!("hvbox: no machines yet: `hvbox up` in a project folder creates them");
    } else {
        let cells: Vec<[String; 7]> = rows
            .iter()
            .map(|(root, row)| {
                let [name, state, engine, box_name, ssh] = row.cells();
                [
                    home_relative(root),
                    name,
                    state,
                    engine,
                    box_name,
                    ssh,
                    row.forwards_text(),
                ]
            })
            .collect();
        print_table(
            [
                "PROJECT", "NAME", "STATE", "ENGINE", "BOX", "SSH", "FORWARDS",
            ],
            &cells,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `~/src/app` for a folder under the home folder: the table stays narrow.
fn home_relative(root: &Path) -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home.as_deref().and_then(|h| root.strip_prefix(h).ok()) {
        Some(rest) if !rest.as_os_str().is_empty() => format!("~/{}", rest.display()),
        _ => root.display().to_string(),
    }
}
