//! Where a project's spec and machine state live.

use crate::machine::Machine;
use crate::spec::{find_spec, Hostname, SPEC_FILE};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Folder beside the spec that holds machine state; never committed.
pub const STATE_DIR: &str = ".hvbox";

#[derive(Debug, Clone)]
pub struct Project {
    pub spec_path: PathBuf,
    pub root: PathBuf,
}

impl Project {
    /// The project whose spec is in the current folder or the nearest parent.
    pub fn discover() -> Result<Project> {
        let cwd = std::env::current_dir().context("cannot read the current folder")?;
        let Some(spec_path) = find_spec(&cwd) else {
            bail!(
                "no {SPEC_FILE} in {} or any parent folder; run `hvbox init` to write one",
                cwd.display()
            );
        };
        Ok(Project::of_spec(spec_path))
    }

    /// The project of the spec at `spec_path`.
    pub fn of_spec(spec_path: PathBuf) -> Project {
        let root = match spec_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Project { spec_path, root }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    pub fn machine_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("machines").join(name)
    }

    pub fn machine(&self, name: &str) -> Machine {
        Machine::new(name, self.machine_dir(name))
    }

    /// The names of the machine folders under `.hvbox/machines/`, sorted: the
    /// machines that have state, whether or not the spec still names them.
    pub fn machine_folders(&self) -> Vec<String> {
        let dir = self.state_dir().join("machines");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Remove `.hvbox/` once no machine is left in it.
    pub fn prune_state_dir(&self) {
        let machines = self.state_dir().join("machines");
        let _ = std::fs::remove_dir(&machines);
        let _ = std::fs::remove_dir(self.state_dir());
    }

    /// A default hostname from the project folder's name.
    pub fn default_hostname(&self) -> String {
        Hostname::of_folder(&self.root).0
    }
}
