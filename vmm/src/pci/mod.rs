//! The PCI side of the machine: one bus (segment 0, bus 0) behind a host bridge at
//! 00:00.0, reached through the legacy 0xCF8/0xCFC ports and through ECAM (MMIO,
//! described by the MCFG table); functions answer in their BARs, which the bus maps
//! onto the MMIO bus wherever the guest places them.
//!
//! ```text
//! port I/O 0xcf8..0xcff ─► PciConfigIo ─┐
//! MMIO ─► MmioBus ─┬─ ECAM ─► PciEcam ──┴─► PciBus ─► function config space
//!                  └─ BARs ─► BarRegion ───────────► function BAR handlers
//! ```

mod allocator;
mod bus;
mod config_io;
pub mod config_space;
mod ecam;
mod host_bridge;

pub use allocator::BarAllocator;
pub use bus::{ConfigAddress, PciBus, PciError, SharedFunction, DEVICES_PER_BUS};
pub use config_io::PciConfigIo;
pub use config_space::{BarMapping, ConfigSpace, Identity};
pub use ecam::PciEcam;
pub use host_bridge::HostBridge;

use crate::snapshot::devices::FunctionState;

/// One PCI function as the bus sees it: a configuration space and, behind its
/// BARs, registers.
pub trait PciFunction: Send {
    fn config(&self) -> &ConfigSpace;

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.config().read(offset, data);
    }

    fn config_write(&mut self, offset: u64, data: &[u8]);

    /// A guest read at `offset` into memory BAR `bar`.
    fn bar_read(&mut self, _bar: u8, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn bar_write(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}

    /// The bus now routes BAR `bar` from `addr` (`None`: the BAR no longer decodes),
    /// so a function with doorbells registered in KVM can move them.
    fn bar_mapped(&mut self, _bar: u8, _addr: Option<u64>) {}

    /// What the function is, for messages ("host bridge", "virtio-blk").
    fn name(&self) -> &'static str {
        "PCI function"
    }

    /// Whether a snapshot can hold this function; asked before anything pauses, so
    /// a refused save leaves the machine running as it was.
    fn check_savable(&self) -> Result<(), String> {
        Err("cannot be saved".into())
    }

    /// Stop whatever serves the guest (device workers) with every request taken
    /// completed, for a snapshot; the vCPUs are already stopped.
    fn pause(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Serve again after [`PciFunction::pause`].
    fn resume(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// The function's state, once paused.
    fn save(&self) -> Result<FunctionState, String> {
        Err("cannot be saved".into())
    }

    /// Takes on a saved state, checked against this function (freshly built for the
    /// same machine); a running device starts serving. `Err` names what differs;
    /// the function is then unusable.
    fn restore(&mut self, _state: &FunctionState) -> Result<(), String> {
        Err("cannot be restored".into())
    }
}
