//! Where a project's spec and machine state live.

use crate::machine::Machine;
use crate::spec::{find_spec, Hostname, SPEC_FILE};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

/// Folder beside the spec that holds machine state; never committed.
pub const STATE_DIR: &str = ".hvbox";

/// hvbox.yaml's JSON Schema, as the hvbox that runs writes it into [`STATE_DIR`]:
/// the path is the same for everyone, so a committed spec can point editors to it.
pub const SCHEMA_FILE: &str = "hvbox.schema.json";

/// The first line of a spec `hvbox init` writes: editors with the YAML language
/// server check the spec against the schema it names (relative to the spec).
pub fn schema_modeline() -> String {
    format!("# yaml-language-server: $schema={STATE_DIR}/{SCHEMA_FILE}")
}

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

    pub fn schema_path(&self) -> PathBuf {
        self.state_dir().join(SCHEMA_FILE)
    }

    /// Keep [`SCHEMA_FILE`] this hvbox's schema, so an editor checks the spec against
    /// the version that runs it: written when it differs, or when it is missing and
    /// the spec refers to it. A failure only warns: the schema is for editors.
    pub fn refresh_schema(&self) {
        if let Err(e) = self.write_schema(false) {
            eprintln!(
                "hvbox: warning: cannot write {}: {e}",
                self.schema_path().display()
            );
        }
    }

    /// Write the schema unless it is there already; when it is missing, only if
    /// `always` or the spec refers to it. True when written.
    pub fn write_schema(&self, always: bool) -> std::io::Result<bool> {
        let path = self.schema_path();
        let wanted = crate::spec::schema::text();
        match std::fs::read_to_string(&path) {
            Ok(old) if old == wanted => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {
                let spec = std::fs::read_to_string(&self.spec_path).unwrap_or_default();
                let named = format!("$schema={STATE_DIR}/{SCHEMA_FILE}");
                if !always && !spec.contains(&named) {
                    return Ok(false);
                }
            }
        }
        if !self.state_dir().exists() {
            // As machine state is: the owner's alone (see machine::private).
            std::fs::DirBuilder::new()
                .mode(crate::machine::private::DIR_MODE)
                .create(self.state_dir())?;
        }
        // Renamed into place, so an editor never reads half a schema.
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, wanted)?;
        std::fs::rename(&partial, &path)?;
        Ok(true)
    }

    /// A default hostname from the project folder's name.
    pub fn default_hostname(&self) -> String {
        Hostname::of_folder(&self.root).0
    }
}
