//! A machine's snapshots, in `snapshots/NAME/` of its folder: the disk (a reflink
//! where the file system shares extents, else a sparse copy), the seed, the
//! machine's state.json and, for a suspended or live snapshot, the saved state.
//! Each is made in a temp folder renamed into place once complete, so a failed save
//! (a full disk) leaves no snapshot listed.

use super::{write_atomic, Machine};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const SNAPSHOTS_DIR: &str = "snapshots";
const RECORD_FILE: &str = "snapshot.json";
/// The machine files a snapshot holds, under the same names.
pub const DISK: &str = "disk.raw";
pub const SEED: &str = "seed.iso";
pub const STATE: &str = "state.json";
/// A saved state's files, under the names `state/` gives them.
pub const SAVED_STATE: &str = "vm.state";
pub const SAVED_RECORD: &str = "suspended.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    pub created_unix: u64,
    /// True when it holds a saved state: restoring it leaves the machine suspended.
    pub with_state: bool,
}

impl Snapshot {
    pub fn dir(machine: &Machine, name: &str) -> PathBuf {
        machine.file(SNAPSHOTS_DIR).join(name)
    }
}

/// Letters, digits, `.`, `_` and `-`, not starting with `.`, at most 64.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!("snapshot name {name:?}: use letters, digits, `.`, `_` and `-` (not first), at most 64 characters");
    }
    Ok(())
}

/// A snapshot being made: its temp folder, renamed to its name by [`Pending::commit`]
/// and removed if dropped before.
pub struct Pending {
    pub dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Pending {
    pub fn new(machine: &Machine, name: &str) -> Result<Pending> {
        check_name(name)?;
        let target = Snapshot::dir(machine, name);
        if target.exists() {
            bail!("snapshot `{name}` exists; `hvbox snapshot delete {name}` first");
        }
        let root = machine.file(SNAPSHOTS_DIR);
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        remove_partial(&root);
        let dir = root.join(format!(".{name}.tmp-{}", std::process::id()));
        super::private::create_machine_dir(&dir)?;
        Ok(Pending {
            dir,
            target,
            committed: false,
        })
    }

    pub fn commit(mut self, record: &Snapshot) -> Result<()> {
        write_atomic(
            &self.dir.join(RECORD_FILE),
            serde_json::to_string_pretty(record)?.as_bytes(),
        )?;
        std::fs::rename(&self.dir, &self.target)
            .with_context(|| format!("putting {} in place", self.target.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Temp folders of saves cut short (SIGKILL).
fn remove_partial(root: &Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The machine's snapshots, oldest first, each with the space it takes on disk.
pub fn list(machine: &Machine) -> Result<Vec<(Snapshot, u64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(machine.file(SNAPSHOTS_DIR))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        found.push((load(&entry.path())?, allocated(&entry.path())));
    }
    found.sort_by(|(a, _), (b, _)| (a.created_unix, &a.name).cmp(&(b.created_unix, &b.name)));
    Ok(found)
}

pub fn load(dir: &Path) -> Result<Snapshot> {
    let path = dir.join(RECORD_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
}

/// Bytes the files under `dir` take on disk (blocks, so holes and shared reflinked
/// extents count as the file system reports them).
/// How many snapshots the machines of the project at `root` keep, and what they
/// take on disk (for `box prune`, which does not touch them).
pub fn kept_in_project(root: &Path) -> (usize, u64) {
    let machines = root.join(crate::project::STATE_DIR).join("machines");
    let mut found = (0, 0);
    for machine in std::fs::read_dir(machines).into_iter().flatten().flatten() {
        let dir = machine.path().join(SNAPSHOTS_DIR);
        for snapshot in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            // Folders being made or deleted start with a dot.
            if !snapshot.file_name().to_string_lossy().starts_with('.') {
                found.0 += 1;
                found.1 += allocated(&snapshot.path());
            }
        }
    }
    found
}

pub fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| if m.is_dir() { 0 } else { m.blocks() * 512 })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_a_dropped_save_leaves_nothing() {
        assert!(check_name("before-upgrade_2.1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let machine = Machine::new("m", dir.path().to_path_buf());
        let pending = Pending::new(&machine, "one").unwrap();
        std::fs::write(pending.dir.join(DISK), b"disk").unwrap();
        drop(pending);
        assert!(list(&machine).unwrap().is_empty());

        let pending = Pending::new(&machine, "one").unwrap();
        std::fs::write(pending.dir.join(DISK), vec![1u8; 8192]).unwrap();
        let record = Snapshot {
            name: "one".into(),
            created_unix: 1,
            with_state: false,
        };
        pending.commit(&record).unwrap();
        let listed = list(&machine).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0.name, "one");
        assert!(listed[0].1 >= 8192, "{} bytes on disk", listed[0].1);
        let err = Pending::new(&machine, "one").err().unwrap().to_string();
        assert!(err.contains("exists"), "{err}");
    }
}
