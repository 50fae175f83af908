//! A running machine's whole state in one file, and the machine continued from it in
//! a new VMM process: suspend and resume, and live snapshots.
//!
//! Saving ([`save`]): the main thread parks every vCPU ([`pause`]), settles and reads
//! the devices ([`devices`]), has each vCPU read its own registers, LAPIC, MSRs and
//! events ([`vcpu`]), reads the in-kernel irqchip, PIT and clock ([`vm_state`]),
//! writes guest memory sparsely ([`memory`]) and then the rest as JSON with its
//! digests ([`file`]). Restoring: [`crate::builder::restore`] builds the same machine
//! around memory mapped from the file, writes the VM's and vCPUs' state back, then
//! the devices' (which start serving at once), before any vCPU runs.
//!
//! What must match for a state to be taken: this hvbox's version, the host CPU, the
//! CPUID KVM offers the guest, and the machine's shape (vCPUs, RAM, disks, NICs,
//! shares). Anything else is refused with the reason; the caller boots cold instead.

pub mod devices;
pub mod file;
pub mod memory;
pub mod pause;
pub mod save;
pub mod vcpu;
pub mod vm_state;

use crate::config::MachineConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub use memory::MemoryImage;
pub use pause::PauseGate;
pub use vcpu::VcpuState;
pub use vm_state::VmState;

/// Everything of a saved machine but its memory's bytes.
#[derive(Debug, Serialize, Deserialize)]
pub struct MachineState {
    /// The hvbox that wrote it; another is refused (devices may have changed).
    pub hvbox_version: String,
    pub host_cpu: HostCpu,
    /// SHA-256 of the CPUID the vCPUs were given.
    pub guest_cpuid: String,
    pub shape: Shape,
    pub vcpus: Vec<VcpuState>,
    pub vm: VmState,
    pub devices: devices::DevicesState,
    pub memory: MemoryImage,
}

pub fn hvbox_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    File(#[from] file::StateFileError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryImageError),
    #[error("{0}")]
    Vcpu(String),
    #[error(transparent)]
    Vm(#[from] vm_state::VmStateError),
    #[error("{0}")]
    Devices(String),
    #[error("vCPU {index}: {source}")]
    VcpuState {
        index: usize,
        source: vcpu::VcpuStateError,
    },
    /// The state is sound but not for this hvbox, host or machine.
    #[error("{0}")]
    Mismatch(String),
}

/// The host CPU a state was saved on: guest registers (XSAVE layout, MSRs, TSC
/// rate) only carry over to the same model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCpu {
    pub vendor: String,
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
}

impl HostCpu {
    pub fn this_host() -> HostCpu {
        let (leaf0, leaf1) = (std::arch::x86_64::__cpuid(0), std::arch::x86_64::__cpuid(1));
        let vendor: Vec<u8> = [leaf0.ebx, leaf0.edx, leaf0.ecx]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        let eax = leaf1.eax;
        let base_family = (eax >> 8) & 0xf;
        let family = match base_family {
            0xf => base_family + ((eax >> 20) & 0xff),
            f => f,
        };
        let model = match base_family {
            0x6 | 0xf => ((eax >> 4) & 0xf) | (((eax >> 16) & 0xf) << 4),
            _ => (eax >> 4) & 0xf,
        };
        HostCpu {
            vendor: String::from_utf8_lossy(&vendor).into_owned(),
            family,
            model,
            stepping: eax & 0xf,
        }
    }
}

impl std::fmt::Display for HostCpu {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{} family {:#x} model {:#x} stepping {}",
            self.vendor, self.family, self.model, self.stepping
        )
    }
}

/// What of a machine's configuration its saved state depends on. The kernel and
/// command line do not matter once it runs (memory holds them); log paths do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub cpus: u32,
    pub memory: u64,
    pub nested_virtualization: bool,
    /// Each disk's path and whether it is read-only, in order.
    pub disks: Vec<(PathBuf, bool)>,
    /// Each NIC's MAC address, in order.
    pub nics: Vec<String>,
    /// Each virtio-fs share's tag, in order.
    pub filesystems: Vec<String>,
}

impl Shape {
    pub fn of(config: &MachineConfig) -> Shape {
        Shape {
            cpus: config.cpus,
            memory: config.memory,
            nested_virtualization: config.nested_virtualization,
            disks: config
                .disks
                .iter()
                .map(|d| (d.path.clone(), d.read_only))
                .collect(),
            nics: config.nics.iter().map(|n| n.mac.to_string()).collect(),
            filesystems: config.filesystems.iter().map(|f| f.tag.clone()).collect(),
        }
    }

    /// The first way `self` (the machine) differs from `saved`, said for a user.
    fn difference(&self, saved: &Shape) -> Option<String> {
        if self.cpus != saved.cpus {
            return Some(format!(
                "the machine has {} vCPUs, the state {}",
                self.cpus, saved.cpus
            ));
        }
        if self.memory != saved.memory {
            return Some(format!(
                "the machine has {} MiB of RAM, the state {} MiB",
                self.memory >> 20,
                saved.memory >> 20
            ));
        }
        if self.nested_virtualization != saved.nested_virtualization {
            return Some("nested virtualization was switched since the save".into());
        }
        if self.disks != saved.disks {
            return Some(format!(
                "the machine's disks are {:?}, the state's {:?}",
                self.disks, saved.disks
            ));
        }
        if self.nics != saved.nics {
            return Some(format!(
                "the machine's NICs are {:?}, the state's {:?}",
                self.nics, saved.nics
            ));
        }
        if self.filesystems != saved.filesystems {
            return Some(format!(
                "the machine's shares are {:?}, the state's {:?}",
                self.filesystems, saved.filesystems
            ));
        }
        None
    }
}

/// SHA-256 of a vCPU's CPUID entries, as hex.
pub fn cpuid_digest(cpuid: &kvm_bindings::CpuId) -> String {
    let mut hash = Sha256::new();
    for e in cpuid.as_slice() {
        for word in [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] {
            hash.update(word.to_le_bytes());
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl MachineState {
    /// Whether this state can continue on `shape` with vCPUs of `guest_cpuid` here;
    /// the reason when not.
    /// `guest_cpuid` is checked when given (it is known once vCPUs exist).
    pub fn check_fits(
        &self,
        shape: &Shape,
        guest_cpuid: Option<&str>,
    ) -> Result<(), SnapshotError> {
        let mismatch = |s: String| Err(SnapshotError::Mismatch(s));
        if self.hvbox_version != hvbox_version() {
            return mismatch(format!(
                "the state was saved by hvbox {}, and this is hvbox {}",
                self.hvbox_version,
                hvbox_version()
            ));
        }
        let here = HostCpu::this_host();
        if self.host_cpu != here {
            return mismatch(format!(
                "the state was saved on another CPU ({}; this host has {here})",
                self.host_cpu
            ));
        }
        if let Some(difference) = shape.difference(&self.shape) {
            return mismatch(difference);
        }
        if self.vcpus.len() != shape.cpus as usize {
            return mismatch(format!(
                "the state holds {} vCPUs for a {}-vCPU machine",
                self.vcpus.len(),
                shape.cpus
            ));
        }
        if guest_cpuid.is_some_and(|cpuid| cpuid != self.guest_cpuid) {
            return mismatch(
                "the CPU features KVM offers guests changed since the save (another host kernel?)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_host_cpu_is_named() {
        let cpu = HostCpu::this_host();
        assert!(
            ["GenuineIntel", "AuthenticAMD"].contains(&cpu.vendor.as_str()),
            "{cpu}"
        );
        assert!(cpu.family >= 6, "{cpu}");
    }
}
