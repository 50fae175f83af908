//! What can stop a machine from being built or run.

use crate::devices::mmio_bus::MmioBusError;
use crate::pci::PciError;
use crate::virtio::virtio_pci::VirtioPciError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("invalid machine config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("allocating {size} bytes of guest memory: {detail}")]
    Memory { size: u64, detail: String },
    #[error(transparent)]
    Vm(#[from] crate::vstate::vm::VmError),
    #[error("building ACPI tables: {0}")]
    Acpi(#[from] crate::acpi::AcpiError),
    #[error("loading the kernel: {0}")]
    Boot(#[from] crate::boot::BootError),
    #[error("setting up vCPU {index}: {source}")]
    Vcpu {
        index: u8,
        source: crate::arch::regs::RegsError,
    },
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("opening the serial log {path}: {source}")]
    SerialLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk {}: {source}", path.display())]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("NIC {mac}: {source}")]
    Nic {
        mac: crate::config::MacAddr,
        source: std::io::Error,
    },
    #[error("virtio-fs {tag:?} (backend socket {}): {source}", socket.display())]
    Filesystem {
        tag: String,
        socket: PathBuf,
        source: crate::virtio::vhost_user::VhostUserError,
    },
    #[error(transparent)]
    VirtioPci(#[from] VirtioPciError),
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("the PCI ECAM window: {0}")]
    Ecam(#[from] MmioBusError),
    #[error("the PCI MMIO window has no room for the BARs of {0} devices")]
    MmioWindowFull(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Confine(#[from] crate::confine::ConfineError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The guest hit something KVM or the VMM could not handle.
    #[error("{0}")]
    Guest(String),
}
