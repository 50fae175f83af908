//! What this host offers for running guests.

use std::fs::OpenOptions;

#[derive(Debug, Clone)]
pub struct HostVirt {
    /// `/dev/kvm` is usable and the CPU has vmx or svm, so guests run at native speed.
    pub hardware: bool,
    pub detail: String,
}

impl HostVirt {
    pub fn probe() -> HostVirt {
        let kvm = OpenOptions::new().read(true).write(true).open("/dev/kvm");
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags_have = |flag: &str| {
            cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == flag))
        };
        let vt = flags_have("vmx") || flags_have("svm");
        match (kvm, vt) {
            (Ok(_), true) => HostVirt {
                hardware: true,
                detail: "/dev/kvm with hardware virtualization".into(),
            },
            (Ok(_), false) => HostVirt {
                hardware: false,
                detail: "/dev/kvm is present but the CPU offers no vmx/svm (guests would run through instruction emulation)".into(),
            },
            (Err(e), _) => HostVirt {
                hardware: false,
                detail: format!("/dev/kvm is not usable ({e})"),
            },
        }
    }
}
