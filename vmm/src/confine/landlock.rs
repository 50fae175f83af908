//! Landlock limits on the file system: once the machine is built (kernel read, disks,
//! /dev/kvm and TAP open), the VMM may touch only the machine's own folders (for its
//! sockets and logs), its disks (read-only ones read-only), the kernel and initrd,
//! /dev/kvm and /dev/net/tun. Landlock limits what is opened from then on; what is open
//! stays usable. Best effort: a kernel without landlock runs the VMM unlimited, and
//! the log says so.

use landlock::{
    path_beneath_rules, Access, AccessFs, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};
use std::path::PathBuf;

/// The newest landlock ABI hvbox asks for; an older kernel gets what it knows.
const ABI_WANTED: ABI = ABI::V5;

/// The paths a run may use, and how.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Folders the VMM makes and removes files and sockets in.
    pub folders: Vec<PathBuf>,
    /// Read and written (writable disks, the serial log, /dev/kvm, /dev/net/tun).
    pub read_write: Vec<PathBuf>,
    /// Only read (the kernel, the initrd, read-only disks).
    pub read: Vec<PathBuf>,
}

/// What became of the limits, for the machine log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Enforced { abi: i32, fully: bool },
    Unavailable(&'static str),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Enforced { abi, fully: true } => write!(
                f,
                "landlock: file system limited to the machine's own paths (landlock ABI {abi})"
            ),
            Outcome::Enforced { abi, fully: false } => write!(
                f,
                "landlock: file system limited to the machine's own paths, partly: this \
                 kernel's landlock ABI {abi} lacks some access rights"
            ),
            Outcome::Unavailable(why) => write!(
                f,
                "landlock: {why}; the VMM's file system access is not limited"
            ),
        }
    }
}

/// Limits the calling thread, and every thread it starts from now on, to `allowed`.
/// Call it before the machine's threads start: landlock applies to the caller and its
/// future children only.
pub fn restrict(allowed: &Allowed) -> Result<Outcome, landlock::RulesetError> {
    let all = AccessFs::from_all(ABI_WANTED);
    let read = AccessFs::from_read(ABI_WANTED);
    let read_write = read | AccessFs::WriteFile;
    let status = Ruleset::default()
        .handle_access(all)?
        .create()?
        .add_rules(path_beneath_rules(&allowed.folders, all))?
        .add_rules(path_beneath_rules(&allowed.read_write, read_write))?
        .add_rules(path_beneath_rules(&allowed.read, read))?
        .restrict_self()?;
    Ok(match (status.ruleset, status.landlock) {
        (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => {
            Outcome::Unavailable("not enabled in this kernel (lsm= on its command line)")
        }
        (RulesetStatus::NotEnforced, _) => Outcome::Unavailable("not supported by this kernel"),
        (ruleset, landlock) => Outcome::Enforced {
            abi: match landlock {
                LandlockStatus::Available {
                    effective_abi,
                    kernel_abi,
                } => kernel_abi.unwrap_or(effective_abi as i32),
                _ => 0,
            },
            fully: ruleset == RulesetStatus::FullyEnforced,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_says_what_happened() {
        let fully = Outcome::Enforced {
            abi: 7,
            fully: true,
        };
        assert!(fully.to_string().contains("landlock ABI 7"), "{fully}");
        let none = Outcome::Unavailable("not supported by this kernel");
        assert_eq!(
            none.to_string(),
            "landlock: not supported by this kernel; the VMM's file system access is not limited"
        );
    }
}
