//! `hvbox validate`: the spec's check, the one `up` runs (every problem, each at its
//! file:line:column; the files, disks and boxes it names), without touching any
//! machine; then every host path outside the project folder the spec reaches.

use super::select::checked_spec;
use crate::project::Project;
use crate::spec::{find_spec, host_paths, SPEC_FILE};
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
    let outside = host_paths::outside_project(&spec, &project.spec_path)?;
    if !outside.is_empty() {
        println!(
            "{path} reaches these host paths outside its project folder {}:",
            project.root.display()
        );
        for reached in outside {
            println!("  {reached}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
