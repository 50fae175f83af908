//! Machine state is its owner's alone: the disk holds the guest's ssh host key and all
//! its data, the folder the login key. Folders are 0700 and files 0600 whatever the
//! umask, and the supervisor runs its engine with a umask that keeps what they create
//! (logs, sockets) 0600 too.

use anyhow::{Context, Result};
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;
/// For the supervisor and the processes it starts: files and sockets 0600. They
/// create no folders.
pub const CHILD_UMASK: u32 = 0o177;

/// Create `machine_dir` (`.hvbox/machines/NAME`) and the state folders above it,
/// each 0700.
pub fn create_machine_dir(machine_dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(machine_dir)
        .with_context(|| format!("creating {}", machine_dir.display()))?;
    // `machines/` and `.hvbox/` are hvbox's too; the umask may have widened none of
    // them, but an older hvbox made them 0755.
    for dir in machine_dir.ancestors().take(3) {
        set_mode(dir, DIR_MODE)?;
    }
    Ok(())
}

/// Bring an existing machine folder to 0700 and every file in it to 0600 (machines
/// made by an older hvbox, files a tool made with a wider umask).
pub fn tighten(machine_dir: &Path) -> Result<()> {
    create_machine_dir(machine_dir)?;
    let entries = std::fs::read_dir(machine_dir)
        .with_context(|| format!("reading {}", machine_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", machine_dir.display()))?;
        // Regular files only: a symlink's mode is its target's business.
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            set_mode(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// A new file open for writing, 0600 from the start.
pub fn create_file(path: &Path, options: &mut OpenOptions) -> Result<File> {
    let file = options
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // `mode` is masked by the umask, which may take away the owner's own bits.
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(file)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn state_folders_and_files_are_the_owners_alone() {
        let project = tempfile::tempdir().unwrap();
        let state = project.path().join(".hvbox");
        let machine = state.join("machines/web");
        create_machine_dir(&machine).unwrap();
        for dir in [&state, &state.join("machines"), &machine] {
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
        }
        // The project folder itself is the user's: left as it was.
        assert_ne!(mode(project.path()), 0o700);

        // As an older hvbox left it: a 0755 folder with world-readable files.
        std::fs::set_permissions(&machine, Permissions::from_mode(0o755)).unwrap();
        std::fs::write(machine.join("disk.raw"), "guest data").unwrap();
        std::fs::set_permissions(machine.join("disk.raw"), Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", machine.join("link")).unwrap();
        tighten(&machine).unwrap();
        assert_eq!(mode(&machine), 0o700);
        assert_eq!(mode(&machine.join("disk.raw")), 0o600);
        assert_eq!(mode(Path::new("/etc/hostname")) & 0o044, 0o044);

        let file = machine.join("state.json");
        create_file(&file, OpenOptions::new().write(true).create_new(true)).unwrap();
        assert_eq!(mode(&file), 0o600);
    }
}
