//! The machine's kernel history: every distinct kernel it booted, in order, so
//! `hvbox kernels` can show it and `hvbox upgrade-kernel --rollback` can go back.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// Release as the kernel reports it (`uname -r`).
    pub version: String,
    pub kernel_sha256: String,
    pub initrd_sha256: Option<String>,
    /// The command line it booted with.
    pub cmdline: String,
    /// Where it was found inside the guest's disk.
    pub guest_path: String,
    pub first_booted_unix: u64,
    pub last_booted_unix: u64,
}

impl KernelRecord {
    /// The same boot files and command line: booting it again is no change.
    fn same_boot(&self, other: &KernelRecord) -> bool {
        self.version == other.version
            && self.kernel_sha256 == other.kernel_sha256
            && self.initrd_sha256 == other.initrd_sha256
            && self.cmdline == other.cmdline
    }
}

/// What booting a record did to the history.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    First,
    Same,
    /// Boot files or command line differ from the last boot; the previous version.
    Changed {
        previous: String,
    },
}

/// Note a boot: the last entry is refreshed when nothing changed, otherwise the boot
/// is appended.
pub fn record_boot(history: &mut Vec<KernelRecord>, mut boot: KernelRecord) -> Change {
    match history.last_mut() {
        Some(last) if last.same_boot(&boot) => {
            last.last_booted_unix = boot.last_booted_unix;
            Change::Same
        }
        Some(last) => {
            let previous = last.version.clone();
            boot.first_booted_unix = boot.last_booted_unix;
            history.push(boot);
            Change::Changed { previous }
        }
        None => {
            history.push(boot);
            Change::First
        }
    }
}

/// The newest version in the history older than the current boot's that is not the
/// current version: what `--rollback` returns to.
pub fn previous_version(history: &[KernelRecord]) -> Option<&str> {
    let current = &history.last()?.version;
    history
        .iter()
        .rev()
        .map(|r| r.version.as_str())
        .find(|v| v != current)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    // Boot files are tens of MiB: io::copy's 8 KiB reads would be thousands of calls.
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(version: &str, digest: &str, cmdline: &str, at: u64) -> KernelRecord {
        KernelRecord {
            version: version.into(),
            kernel_sha256: digest.into(),
            initrd_sha256: Some(format!("i-{digest}")),
            cmdline: cmdline.into(),
            guest_path: format!("/boot/vmlinuz-{version}"),
            first_booted_unix: at,
            last_booted_unix: at,
        }
    }

    #[test]
    fn history_grows_only_on_change() {
        let mut h = Vec::new();
        assert_eq!(
            record_boot(&mut h, rec("6.1.0-50", "a", "ro", 1)),
            Change::First
        );
        assert_eq!(
            record_boot(&mut h, rec("6.1.0-50", "a", "ro", 2)),
            Change::Same
        );
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].first_booted_unix, h[0].last_booted_unix), (1, 2));
        assert_eq!(
            record_boot(&mut h, rec("6.1.0-56", "b", "ro", 3)),
            Change::Changed {
                previous: "6.1.0-50".into()
            }
        );
        // A new command line is a change too, even on the same kernel.
        assert!(matches!(
            record_boot(&mut h, rec("6.1.0-56", "b", "ro quiet", 4)),
            Change::Changed { .. }
        ));
        assert_eq!(h.len(), 3);
        assert_eq!(previous_version(&h), Some("6.1.0-50"));
    }

    #[test]
    fn no_previous_version_with_one_kernel() {
        let mut h = Vec::new();
        assert_eq!(previous_version(&h), None);
        record_boot(&mut h, rec("6.1.0-50", "a", "ro", 1));
        record_boot(&mut h, rec("6.1.0-50", "a", "ro quiet", 2));
        assert_eq!(previous_version(&h), None);
    }
}
