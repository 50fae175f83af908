//! ECAM, the PCI Express enhanced configuration mechanism: each function's 4 KiB of
//! config space mapped in memory at `PCI_ECAM_START + (bus << 20 | device << 15 |
//! function << 12)`, as the MCFG table tells the guest.

use super::bus::{ConfigAddress, PciBus};
use crate::devices::mmio_bus::MmioDevice;
use std::sync::{Arc, Mutex};

pub struct PciEcam {
    bus: Arc<Mutex<PciBus>>,
}

impl PciEcam {
    pub fn new(bus: Arc<Mutex<PciBus>>) -> PciEcam {
        PciEcam { bus }
    }
}

/// The function and register at `offset` into the ECAM window.
fn decode(offset: u64) -> ConfigAddress {
    ConfigAddress {
        bus: (offset >> 20) as u8,
        device: ((offset >> 15) & 0x1f) as u8,
        function: ((offset >> 12) & 0x7) as u8,
        register: (offset & 0xfff) as u16,
    }
}

impl MmioDevice for PciEcam {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.bus
            .lock()
            .expect("PCI bus lock")
            .config_read(decode(offset), data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.bus
            .lock()
            .expect("PCI bus lock")
            .config_write(decode(offset), data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::mmio_bus::MmioBus;
    use crate::pci::HostBridge;

    #[test]
    fn offsets_decode_to_bus_device_function_register() {
        assert_eq!(
            // Bus 1, device 0x11, function 2, register 0xf3c.
            decode(0x0018_af3c),
            ConfigAddress {
                bus: 1,
                device: 0x11,
                function: 2,
                register: 0xf3c
            }
        );
    }

    #[test]
    fn reads_and_writes_reach_config_space() {
        let mmio = Arc::new(MmioBus::new());
        let mut bus = PciBus::new(&mmio);
        bus.add(Arc::new(Mutex::new(HostBridge::new()))).unwrap();
        let ecam = PciEcam::new(Arc::new(Mutex::new(bus)));
        let mut dword = [0; 4];
        ecam.read(0, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x0008_1b36);
        ecam.write(0x3c, &[5]);
        let mut byte = [0; 1];
        ecam.read(0x3c, &mut byte);
        assert_eq!(byte, [5]);
        // Past the conventional header: zeros; another slot: nothing.
        ecam.read(0x100, &mut dword);
        assert_eq!(dword, [0; 4]);
        ecam.read(1 << 15, &mut dword);
        assert_eq!(dword, [0xff; 4]);
    }
}
