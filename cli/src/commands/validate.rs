//! `hvbox validate`: the spec's check, the one `up` runs (every problem, each at its
//! file:line:column; the files, disks and boxes it names), without touching any
//! machine.

use super::select::checked_spec;
use crate::project::Project;
use crate::spec::{find_spec, SPEC_FILE};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(file: Option<PathBuf>) -> Result<ExitCode> {
    let project = match file {
        Some(spec_path) => Project::of_spec(spec_path),
        None => {
            let cwd = std::env::current_dir()?;
            let spec_path = find_spec(&cwd).with_context(|| {
                format!("no {SPEC_FILE} in {} or any parent folder", cwd.display())
            })?;
            Project::of_spec(spec_path)
        }
    };
    let spec = checked_spec(&project)?;
    project.refresh_schema();
    let path = project.spec_path.display();
    if spec.is_named() {
        println!("{path}: ok (machines: {})", spec.names().join(", "));
    } else {
        println!("{path}: ok");
    }
    Ok(ExitCode::SUCCESS)
}
