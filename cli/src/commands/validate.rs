//! `hvbox validate`: parse and check a spec (and that the files its provision steps
//! name exist) without touching any machine.

use crate::spec::{find_spec, ProjectSpec, SPEC_FILE};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(file: Option<PathBuf>) -> Result<ExitCode> {
    let path = match file {
        Some(p) => p,
        None => {
            let cwd = std::env::current_dir()?;
            find_spec(&cwd).with_context(|| {
                format!("no {SPEC_FILE} in {} or any parent folder", cwd.display())
            })?
        }
    };
    let spec = ProjectSpec::load(&path)?;
    spec.check_provision_files(&path)?;
    if spec.is_named() {
        println!(
            "{}: ok (machines: {})",
            path.display(),
            spec.names().join(", ")
        );
    } else {
        println!("{}: ok", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
