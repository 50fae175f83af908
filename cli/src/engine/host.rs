//! What this host offers for running guests, and what to do when hardware
//! virtualization is there but this user cannot reach it.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const KVM: &str = "/dev/kvm";

#[derive(Debug, Clone)]
pub struct HostVirt {
    /// `/dev/kvm` is usable and the CPU has vmx or svm, so guests run at native speed.
    pub hardware: bool,
    pub detail: String,
    /// The CPU has hardware virtualization but this user cannot use it; says why and
    /// how to fix it. Machines then run 10–50× slower under software emulation.
    pub unreachable: Option<String>,
}

impl HostVirt {
    pub fn probe() -> HostVirt {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags_have = |flag: &str| {
            cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == flag))
        };
        let vt = flags_have("vmx") || flags_have("svm");
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .open(KVM)
            .map(drop);
        classify(opened, vt, &KvmAccess::read())
    }
}

/// Who may open /dev/kvm, for the advice when this user may not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvmAccess {
    /// The group owning /dev/kvm (`kvm` on most distributions), when that group may
    /// read and write it and is not root's: joining it is then the fix.
    pub group: Option<String>,
    /// This user's name.
    pub user: Option<String>,
    /// Whether /etc/group lists this user in that group (added, but this login
    /// session predates it).
    pub listed_in_group: bool,
    /// Whether this process has that group already (so a group is not the problem).
    pub has_group: bool,
}

impl KvmAccess {
    fn read() -> KvmAccess {
        let meta = std::fs::metadata(KVM).ok();
        // Only a group that the device grants read and write, and not root's, is
        // worth joining.
        let gid = meta
            .filter(|m| m.mode() & 0o060 == 0o060 && m.gid() != 0)
            .map(|m| m.gid());
        let has_group = gid.is_some_and(|gid| {
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.strip_prefix("Groups:"))
                .flat_map(str::split_whitespace)
                .any(|g| g.parse() == Ok(gid))
        });
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
        let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
        // name:password:gid:member,member
        let entry = gid.and_then(|gid| {
            groups.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() == 4 && fields[2].parse() == Ok(gid))
                    .then(|| (fields[0].to_string(), fields[3].to_string()))
            })
        });
        let listed_in_group = match (&entry, &user) {
            (Some((_, members)), Some(user)) => members.split(',').any(|m| m == user),
            _ => false,
        };
        KvmAccess {
            group: entry.map(|(name, _)| name),
            user,
            listed_in_group,
            has_group,
        }
    }
}

/// What the host offers, from whether /dev/kvm opened and the CPU's vmx/svm flag.
pub fn classify(opened: std::io::Result<()>, vt: bool, access: &KvmAccess) -> HostVirt {
    match (opened, vt) {
        (Ok(()), true) => HostVirt {
            hardware: true,
            detail: format!("{KVM} with hardware virtualization"),
            unreachable: None,
        },
        (Ok(()), false) => HostVirt {
            hardware: false,
            detail: format!("{KVM} is present but the CPU offers no vmx/svm (guests would run through instruction emulation)"),
            unreachable: None,
        },
        (Err(e), vt) => {
            let fix = how_to_reach(&e, access);
            let detail = format!("{KVM} cannot be opened ({e}){}", fix.as_deref().map(|f| format!(": {f}")).unwrap_or_default());
            HostVirt {
                hardware: false,
                unreachable: vt.then(|| detail.clone()),
                detail,
            }
        }
    }
}

/// What the user can do about a /dev/kvm that would not open.
fn how_to_reach(e: &std::io::Error, access: &KvmAccess) -> Option<String> {
    let denied = e.kind() == ErrorKind::PermissionDenied;
    let Some(group) = access.group.as_deref() else {
        return denied.then(|| format!(
            "{KVM} gives no group read and write access; have it owned by group `kvm` with mode 0660 (a udev rule: KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0660\"), then join that group"
        ));
    };
    match e.kind() {
        ErrorKind::PermissionDenied if access.has_group => Some(format!(
            "this process is in group `{group}` already, so an ACL or a security policy (SELinux, AppArmor) refuses it"
        )),
        ErrorKind::PermissionDenied if access.listed_in_group => Some(format!(
            "this user was added to group `{group}` after this login session began; log out and in again (or run `newgrp {group}`)"
        )),
        ErrorKind::PermissionDenied => Some(format!(
            "this user is not in group `{group}`, which owns {KVM}; run `sudo usermod -aG {group} {}`, then log out and in again",
            access.user.as_deref().unwrap_or("$USER")
        )),
        ErrorKind::NotFound if !Path::new("/sys/module/kvm").exists() => Some(
            "the kvm module is not loaded; run `sudo modprobe kvm_intel` (Intel) or `sudo modprobe kvm_amd` (AMD), and check that virtualization is enabled in the firmware".into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied() -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EACCES))
    }

    fn access(listed: bool) -> KvmAccess {
        KvmAccess {
            group: Some("kvm".into()),
            user: Some("alice".into()),
            listed_in_group: listed,
            has_group: false,
        }
    }

    #[test]
    fn a_device_without_group_access_is_no_reason_to_join_a_group() {
        // root:root 0600, say: `group` is None, and root's group is never advised.
        let host = classify(denied(), true, &KvmAccess::default());
        let why = host.unreachable.unwrap();
        assert!(!why.contains("usermod"), "{why}");
        assert!(
            why.contains("gives no group read and write access"),
            "{why}"
        );
        // In the group already: the group is not what refuses.
        let member = KvmAccess {
            has_group: true,
            ..access(true)
        };
        let why = classify(denied(), true, &member).unreachable.unwrap();
        assert!(why.contains("in group `kvm` already"), "{why}");
    }

    #[test]
    fn hardware_this_user_cannot_open_says_how_to_join_the_group() {
        let host = classify(denied(), true, &access(false));
        assert!(!host.hardware);
        let why = host.unreachable.expect("unreachable hardware is reported");
        assert!(why.contains("Permission denied"), "{why}");
        assert!(why.contains("sudo usermod -aG kvm alice"), "{why}");
        assert!(why.contains("log out and in again"), "{why}");
        // Joined already, but this session is older than that.
        let host = classify(denied(), true, &access(true));
        let why = host.unreachable.unwrap();
        assert!(
            why.contains("added to group `kvm` after this login"),
            "{why}"
        );
        assert!(why.contains("newgrp kvm"), "{why}");
    }

    #[test]
    fn without_vmx_or_svm_an_unopenable_kvm_costs_nothing() {
        let host = classify(denied(), false, &access(false));
        assert!(!host.hardware);
        assert!(host.unreachable.is_none());
        // The reason is still given, for `engine: builtin`.
        assert!(host.detail.contains("usermod"), "{}", host.detail);
    }

    #[test]
    fn usable_hardware_is_hardware() {
        let host = classify(Ok(()), true, &KvmAccess::default());
        assert!(host.hardware && host.unreachable.is_none());
        let host = classify(Ok(()), false, &KvmAccess::default());
        assert!(!host.hardware && host.detail.contains("no vmx/svm"));
    }
}
