//! One machine's folder under `.hvbox/machines/NAME/` and what is in it.

pub mod kernels;
pub mod lock;
pub mod private;
pub mod runtime;
pub mod snapshots;
pub mod state;
pub mod suspended;

pub use runtime::{RunInfo, RunState};
pub use state::MachineState;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Machine {
    pub name: String,
    pub dir: PathBuf,
}

impl Machine {
    pub fn new(name: &str, dir: PathBuf) -> Machine {
        Machine {
            name: name.to_string(),
            dir,
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn disk(&self) -> PathBuf {
        self.file("disk.raw")
    }
    pub fn seed(&self) -> PathBuf {
        self.file("seed.iso")
    }
    pub fn ssh_key(&self) -> PathBuf {
        self.file("id_ed25519")
    }
    pub fn host_key(&self) -> PathBuf {
        self.file("ssh_host_ed25519_key")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.file("known_hosts")
    }
    pub fn serial_log(&self) -> PathBuf {
        self.file("serial.log")
    }
    pub fn state_path(&self) -> PathBuf {
        self.file("state.json")
    }

    /// True once `hvbox up` finished creating the machine.
    pub fn is_created(&self) -> bool {
        self.state_path().is_file()
    }

    pub fn load_state(&self) -> Result<MachineState> {
        MachineState::load(&self.state_path())
    }

    /// Sockets live in a short runtime folder: UNIX socket paths are limited to 108
    /// bytes and a project folder can be deeper than that.
    pub fn runtime_dir(&self, instance_id: &str) -> PathBuf {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.is_dir())
            // SAFETY: getuid has no preconditions and cannot fail.
            .unwrap_or_else(|| PathBuf::from(format!("/tmp/hvbox-{}", unsafe { libc::getuid() })));
        base.join("hvbox").join(instance_id)
    }

    pub fn run_state(&self) -> RunState {
        runtime::run_state(self)
    }
}

/// Write `contents` to `path` through a temp file, fsync and rename, so a crash
/// leaves either the old file or the new one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().context("state file has no folder")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = private::create_file(
            &tmp,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true),
        )
        .map_err(std::io::Error::other)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}
