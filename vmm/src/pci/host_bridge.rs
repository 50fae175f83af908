//! The host bridge at 00:00.0: it has no registers of its own, but an OS expects a
//! host bridge class device at the start of bus 0 (Linux's probe of the 0xCF8
//! mechanism looks for one).

use super::config_space::{ConfigSpace, Identity};
use super::PciFunction;
use crate::snapshot::devices::FunctionState;

/// Red Hat's PCI vendor ID, and the ID QEMU's generic PCIe host bridge uses (a
/// bridge no OS driver binds to, and none needs).
const VENDOR_REDHAT: u16 = 0x1b36;
const DEVICE_GENERIC_HOST_BRIDGE: u16 = 0x0008;
/// Class 06 (bridge), subclass 00 (host).
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

pub struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    pub fn new() -> HostBridge {
        HostBridge {
            config: ConfigSpace::new(&Identity {
                vendor: VENDOR_REDHAT,
                device: DEVICE_GENERIC_HOST_BRIDGE,
                revision: 0,
                class: CLASS_HOST_BRIDGE,
                subsystem_vendor: VENDOR_REDHAT,
                subsystem_id: DEVICE_GENERIC_HOST_BRIDGE,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        HostBridge::new()
    }
}

impl PciFunction for HostBridge {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        self.config.write(offset, data);
    }

    fn name(&self) -> &'static str {
        "host bridge"
    }

    fn check_savable(&self) -> Result<(), String> {
        Ok(())
    }

    fn save(&self) -> Result<FunctionState, String> {
        Ok(FunctionState::HostBridge {
            config_space: self.config.save(),
        })
    }

    fn restore(&mut self, state: &FunctionState) -> Result<(), String> {
        match state {
            FunctionState::HostBridge { config_space } => self.config.restore(config_space),
            other => Err(format!("{} saved here", other.name())),
        }
    }
}
