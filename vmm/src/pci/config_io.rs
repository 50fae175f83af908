//! Configuration mechanism #1: the guest writes a function's address to 0xCF8 and
//! reaches its config space through the four data ports 0xCFC..0xCFF, in byte, word
//! or dword accesses.

use super::bus::{ConfigAddress, PciBus};
use crate::layout::{PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_DATA_PORT};
use std::sync::{Arc, Mutex};

/// CONFIG_ADDRESS: bit 31 enables data-port accesses; bits 23:16 bus, 15:11
/// device, 10:8 function, 7:2 dword register. The rest is reserved and reads 0.
const ENABLE: u32 = 1 << 31;
const WRITABLE: u32 = ENABLE | 0x00ff_fffc;
const DATA_PORTS: u16 = 4;

pub struct PciConfigIo {
    bus: Arc<Mutex<PciBus>>,
    address: u32,
}

impl PciConfigIo {
    pub fn new(bus: Arc<Mutex<PciBus>>) -> PciConfigIo {
        PciConfigIo { bus, address: 0 }
    }

    /// CONFIG_ADDRESS, for a snapshot.
    pub fn address(&self) -> u32 {
        self.address
    }

    pub fn restore_address(&mut self, address: u32) -> Result<(), String> {
        if address & !WRITABLE != 0 {
            return Err(format!(
                "PCI CONFIG_ADDRESS {address:#x} has reserved bits set"
            ));
        }
        self.address = address;
        Ok(())
    }

    /// Whether `port` belongs to this mechanism (0xCF8..0xCFF).
    pub fn claims(port: u16) -> bool {
        (PCI_CONFIG_ADDRESS_PORT..PCI_CONFIG_DATA_PORT + DATA_PORTS).contains(&port)
    }

    /// The function and register a data-port access at `port` reaches, if enabled.
    fn target(&self, port: u16) -> Option<ConfigAddress> {
        if self.address & ENABLE == 0 {
            return None;
        }
        let a = self.address;
        Some(ConfigAddress {
            bus: (a >> 16) as u8,
            device: ((a >> 11) & 0x1f) as u8,
            function: ((a >> 8) & 0x7) as u8,
            register: (a & 0xfc) as u16 + (port - PCI_CONFIG_DATA_PORT),
        })
    }

    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        if port == PCI_CONFIG_ADDRESS_PORT && data.len() == 4 {
            data.copy_from_slice(&self.address.to_le_bytes());
        } else if let Some(target) = self.data_port(port) {
            self.bus
                .lock()
                .expect("PCI bus lock")
                .config_read(target, data);
        } else {
            data.fill(0xff);
        }
    }

    pub fn pio_write(&mut self, port: u16, data: &[u8]) {
        if port == PCI_CONFIG_ADDRESS_PORT && data.len() == 4 {
            let value = u32::from_le_bytes(data.try_into().unwrap());
            self.address = value & WRITABLE;
        } else if let Some(target) = self.data_port(port) {
            self.bus
                .lock()
                .expect("PCI bus lock")
                .config_write(target, data);
        }
        // Byte and word writes to 0xCF8..0xCFB (mechanism #2 probes, the 0xCF9 reset
        // register of some chipsets) do nothing here.
    }

    fn data_port(&self, port: u16) -> Option<ConfigAddress> {
        if !(PCI_CONFIG_DATA_PORT..PCI_CONFIG_DATA_PORT + DATA_PORTS).contains(&port) {
            return None;
        }
        self.target(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::mmio_bus::MmioBus;
    use crate::pci::HostBridge;

    fn io() -> PciConfigIo {
        let mmio = Arc::new(MmioBus::new());
        let mut bus = PciBus::new(&mmio);
        bus.add(Arc::new(Mutex::new(HostBridge::new()))).unwrap();
        PciConfigIo::new(Arc::new(Mutex::new(bus)))
    }

    fn select(io: &mut PciConfigIo, device: u32, register: u32) {
        io.pio_write(0xcf8, &(ENABLE | device << 11 | register).to_le_bytes());
    }

    #[test]
    fn address_register_keeps_only_defined_bits() {
        let mut io = io();
        io.pio_write(0xcf8, &0xffff_ffffu32.to_le_bytes());
        let mut data = [0; 4];
        io.pio_read(0xcf8, &mut data);
        assert_eq!(u32::from_le_bytes(data), 0x80ff_fffc);
        // A byte write to 0xcf8 is not an address write.
        io.pio_write(0xcf8, &[0]);
        io.pio_read(0xcf8, &mut data);
        assert_eq!(u32::from_le_bytes(data), 0x80ff_fffc);
    }

    #[test]
    fn data_ports_read_bytes_words_and_dwords() {
        let mut io = io();
        select(&mut io, 0, 0);
        let mut dword = [0; 4];
        io.pio_read(0xcfc, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x0008_1b36);
        let mut word = [0; 2];
        io.pio_read(0xcfe, &mut word);
        assert_eq!(u16::from_le_bytes(word), 0x0008);
        let mut byte = [0; 1];
        io.pio_read(0xcfd, &mut byte);
        assert_eq!(byte, [0x1b]);
        // Class code: the top byte of dword 2 is 06 (bridge).
        select(&mut io, 0, 8);
        io.pio_read(0xcff, &mut byte);
        assert_eq!(byte, [0x06]);
    }

    #[test]
    fn data_port_writes_reach_the_function() {
        let mut io = io();
        select(&mut io, 0, 0x3c);
        io.pio_write(0xcfc, &[10]);
        let mut dword = [0; 4];
        io.pio_read(0xcfc, &mut dword);
        assert_eq!(dword[0], 10);
        select(&mut io, 0, 0x04);
        io.pio_write(0xcfc, &[0x06, 0x00]);
        io.pio_read(0xcfc, &mut dword);
        assert_eq!(u16::from_le_bytes([dword[0], dword[1]]), 0x0006);
    }

    #[test]
    fn without_the_enable_bit_or_a_function_reads_are_all_ones() {
        let mut io = io();
        io.pio_write(0xcf8, &0u32.to_le_bytes());
        let mut dword = [0; 4];
        io.pio_read(0xcfc, &mut dword);
        assert_eq!(dword, [0xff; 4]);
        select(&mut io, 7, 0);
        io.pio_read(0xcfc, &mut dword);
        assert_eq!(dword, [0xff; 4]);
        assert!(PciConfigIo::claims(0xcf8) && PciConfigIo::claims(0xcff));
        assert!(!PciConfigIo::claims(0xcf7) && !PciConfigIo::claims(0xd00));
    }
}
