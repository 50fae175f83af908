//! A suspended machine's saved state, in `state/` of its folder: the engine's state
//! file (`vm.state`) and what it was saved from (`suspended.json`, written last, so
//! its presence marks a complete state).

use super::{private, write_atomic, Machine};
use crate::engine::EngineKind;
use anyhow::{Context, Result};
use hvbox_vmm::MachineConfig;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::PathBuf;

const STATE_DIR: &str = "state";
const STATE_FILE: &str = "vm.state";
const RECORD_FILE: &str = "suspended.json";
/// Bumped when the record's meaning changes; another value is not resumed.
const RECORD_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suspended {
    pub format: u32,
    pub hvbox_version: String,
    pub engine: EngineKind,
    /// The engine program's version where the state needs the same one (QEMU).
    pub engine_version: Option<String>,
    /// The machine as the engine ran it: a resume runs exactly this again.
    pub config: MachineConfig,
    pub saved_unix: u64,
    pub state_bytes: u64,
}

impl Suspended {
    pub fn new(
        engine: EngineKind,
        engine_version: Option<String>,
        config: MachineConfig,
    ) -> Suspended {
        Suspended {
            format: RECORD_FORMAT,
            hvbox_version: env!("CARGO_PKG_VERSION").to_string(),
            engine,
            engine_version,
            config,
            saved_unix: super::kernels::now_unix(),
            state_bytes: 0,
        }
    }

    /// Why this state cannot be continued by this hvbox with `engine_version`, if so.
    pub fn mismatch(&self, engine_version: Option<&str>) -> Option<String> {
        if self.format != RECORD_FORMAT || self.hvbox_version != env!("CARGO_PKG_VERSION") {
            return Some(format!(
                "it was saved by hvbox {}, and this is hvbox {}",
                self.hvbox_version,
                env!("CARGO_PKG_VERSION")
            ));
        }
        match (&self.engine_version, engine_version) {
            (Some(saved), Some(now)) if saved != now => Some(format!(
                "it was saved by {saved}, and this host now has {now}"
            )),
            _ => None,
        }
    }
}

impl Machine {
    fn state_dir(&self) -> PathBuf {
        self.file(STATE_DIR)
    }

    /// The engine's state file of a suspended machine.
    pub fn saved_state(&self) -> PathBuf {
        self.state_dir().join(STATE_FILE)
    }

    /// The record of the machine's saved state; `None` when it has none.
    pub fn suspended(&self) -> Result<Option<Suspended>> {
        let path = self.state_dir().join(RECORD_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("{} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn is_suspended(&self) -> bool {
        self.state_dir().join(RECORD_FILE).exists()
    }

    /// A new, empty file for the state beside where it goes; [`Machine::keep_state`]
    /// puts it in place once complete.
    pub fn new_state_file(&self) -> Result<(PathBuf, File)> {
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // A save cut short (a SIGKILL) left its temp file: nothing refers to it.
        self.remove_partial_states();
        let tmp = dir.join(format!(".{STATE_FILE}.tmp-{}", std::process::id()));
        let file = private::create_file(
            &tmp,
            File::options().read(true).write(true).create_new(true),
        )?;
        Ok((tmp, file))
    }

    /// Make the written state at `tmp` the machine's saved state: synced, renamed
    /// into place, then the record that marks it complete.
    pub fn keep_state(
        &self,
        tmp: &std::path::Path,
        file: File,
        mut record: Suspended,
    ) -> Result<()> {
        file.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        record.state_bytes = file.metadata()?.len();
        drop(file);
        let _ = std::fs::remove_file(self.state_dir().join(RECORD_FILE));
        std::fs::rename(tmp, self.saved_state())
            .with_context(|| format!("putting {} in place", tmp.display()))?;
        write_atomic(
            &self.state_dir().join(RECORD_FILE),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )
    }

    /// The record goes first: a state without one is never resumed.
    pub fn discard_state(&self) -> Result<()> {
        let record = self.state_dir().join(RECORD_FILE);
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", record.display())),
        }
        let _ = std::fs::remove_file(self.saved_state());
        self.remove_partial_states();
        let _ = std::fs::remove_dir(self.state_dir());
        Ok(())
    }

    fn remove_partial_states(&self) {
        let Ok(entries) = std::fs::read_dir(self.state_dir()) else {
            return;
        };
        let prefix = format!(".{STATE_FILE}.tmp-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record() -> Suspended {
        Suspended::new(
            EngineKind::Qemu,
            Some("QEMU emulator version 7.2.22".into()),
            crate::engine::sample_config(),
        )
    }

    #[test]
    fn a_state_is_kept_only_once_complete_and_discarded_record_first() {
        let dir = tempfile::tempdir().unwrap();
        let machine = Machine::new("m", dir.path().to_path_buf());
        assert!(machine.suspended().unwrap().is_none());
        let (tmp, mut file) = machine.new_state_file().unwrap();
        file.write_all(b"state bytes").unwrap();
        // Written, not yet kept: the machine is not suspended.
        assert!(!machine.is_suspended());
        machine.keep_state(&tmp, file, record()).unwrap();
        assert!(machine.is_suspended());
        let kept = machine.suspended().unwrap().unwrap();
        assert_eq!(kept.state_bytes, 11);
        assert_eq!(
            std::fs::read(machine.saved_state()).unwrap(),
            b"state bytes"
        );
        assert!(!tmp.exists());

        // A save killed half-way leaves a temp file and the kept state as it was.
        let (tmp, mut file) = machine.new_state_file().unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert_eq!(machine.suspended().unwrap().unwrap().state_bytes, 11);
        assert!(tmp.exists());

        machine.discard_state().unwrap();
        assert!(!machine.is_suspended());
        assert!(!dir.path().join("state").exists());
    }

    #[test]
    fn a_state_from_another_version_is_refused_with_both_versions() {
        let saved = record();
        assert_eq!(saved.mismatch(Some("QEMU emulator version 7.2.22")), None);
        let why = saved.mismatch(Some("QEMU emulator version 8.2.1")).unwrap();
        assert!(why.contains("7.2.22") && why.contains("8.2.1"), "{why}");
        let old = Suspended {
            hvbox_version: "0.0.1".into(),
            ..record()
        };
        let why = old.mismatch(Some("QEMU emulator version 7.2.22")).unwrap();
        assert!(why.contains("hvbox 0.0.1"), "{why}");
    }
}
