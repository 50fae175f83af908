//! hvbox's embedded virtual machine monitor.
//!
//! The VMM takes a plain [`MachineConfig`] — kernel, initrd, command line, disks, NICs,
//! vCPUs and memory — [`build`]s a [`Machine`] from it, then runs that. It knows
//! nothing of specs, boxes or cloud-init: the `hvbox` CLI builds the config, and every
//! engine (this VMM, or QEMU as a fallback) consumes the same one.

pub mod acpi;
pub mod arch;
pub mod boot;
pub mod builder;
pub mod config;
pub mod confine;
pub mod console;
pub mod control;
pub mod devices;
pub mod error;
pub mod exit;
pub mod exit_counts;
pub mod layout;
pub mod log_rotation;
pub mod machine;
pub mod memory;
pub mod pci;
pub mod snapshot;
pub mod stats;
pub mod virtio;
pub mod vstate;

pub use builder::{build, restore, run, run_with_stats, RunOptions};
pub use config::{DiskConfig, FsConfig, MacAddr, MachineConfig, NetBackend, NetConfig};
pub use error::VmmError;
pub use exit::ExitReason;
pub use machine::Machine;
pub use stats::RunStats;
