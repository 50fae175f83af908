//! The plain description of one virtual machine that every engine runs.

use std::path::PathBuf;

/// Everything needed to boot one machine by direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// Attached in order: the root disk first, then the seed, then extra disks.
    pub disks: Vec<DiskConfig>,
    pub nics: Vec<NetConfig>,
    /// Offer the guest the host's SVM/VMX so it can run VMs itself.
    pub nested_virtualization: bool,
    /// Where the guest's first serial port is written (appended); standard output
    /// when `None`.
    pub serial_log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A virtio NIC whose frames travel over a passt UNIX socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// `52:54:00:xx:xx:xx` form.
    pub mac: String,
    pub passt_socket: PathBuf,
}
