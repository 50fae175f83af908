//! Bus 0: which function sits in which slot, configuration accesses by address, and
//! keeping the MMIO bus in step with the BARs the guest programs.

use super::config_space::BarMapping;
use super::PciFunction;
use crate::devices::mmio_bus::{MmioBus, MmioDevice};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

/// Slots on a bus; each function here is function 0 of its slot.
pub const DEVICES_PER_BUS: usize = 32;

pub type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// Where a configuration access goes (both access mechanisms decode to this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigAddress {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    /// Byte offset into the function's configuration space.
    pub register: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum PciError {
    #[error("all {DEVICES_PER_BUS} PCI slots are taken")]
    BusFull,
}

pub struct PciBus {
    slots: Vec<Option<SharedFunction>>,
    /// The BARs routed on the MMIO bus now, by (slot, BAR index).
    mapped: BTreeMap<(u8, u8), BarMapping>,
    /// Weak: the MMIO bus holds the ECAM window, which holds this bus.
    mmio: Weak<MmioBus>,
}

impl PciBus {
    pub fn new(mmio: &Arc<MmioBus>) -> PciBus {
        PciBus {
            slots: vec![None; DEVICES_PER_BUS],
            mapped: BTreeMap::new(),
            mmio: Arc::downgrade(mmio),
        }
    }

    /// Put `function` in the first free slot; returns the slot.
    pub fn add(&mut self, function: SharedFunction) -> Result<u8, PciError> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(PciError::BusFull)?;
        self.slots[slot] = Some(function);
        Ok(slot as u8)
    }

    fn function(&self, addr: ConfigAddress) -> Option<&SharedFunction> {
        // One bus, single-function devices.
        if addr.bus != 0 || addr.function != 0 {
            return None;
        }
        self.slots.get(usize::from(addr.device))?.as_ref()
    }

    /// Reads of absent functions see all-ones (vendor ID 0xffff: nothing here).
    pub fn config_read(&self, addr: ConfigAddress, data: &mut [u8]) {
        match self.function(addr) {
            Some(function) => function
                .lock()
                .expect("PCI function lock")
                .config_read(u64::from(addr.register), data),
            None => data.fill(0xff),
        }
    }

    pub fn config_write(&mut self, addr: ConfigAddress, data: &[u8]) {
        let Some(function) = self.function(addr).cloned() else {
            return;
        };
        let mut locked = function.lock().expect("PCI function lock");
        locked.config_write(u64::from(addr.register), data);
        self.remap(addr.device, &function, &mut *locked);
    }

    /// Every function on the bus, by slot.
    pub fn functions(&self) -> impl Iterator<Item = (u8, &SharedFunction)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, f)| Some((slot as u8, f.as_ref()?)))
    }

    /// Route the BARs of the function in `slot` where its config space says, as
    /// after a guest write to it (a restored function's BARs).
    pub fn refresh_bars(&mut self, slot: u8) {
        let Some(function) = self.slots.get(usize::from(slot)).cloned().flatten() else {
            return;
        };
        let mut locked = function.lock().expect("PCI function lock");
        self.remap(slot, &function, &mut *locked);
    }

    /// Take every function off the bus and its BARs off the MMIO bus, dropping
    /// them (devices stop their workers): the end of a run.
    pub fn detach_all(&mut self) {
        if let Some(mmio) = self.mmio.upgrade() {
            for mapping in self.mapped.values() {
                mmio.remove(mapping.addr);
            }
        }
        self.mapped.clear();
        self.slots.fill(None);
    }

    /// Route the BARs of the function in `slot` where its config space now says.
    fn remap(&mut self, slot: u8, shared: &SharedFunction, function: &mut dyn PciFunction) {
        let Some(mmio) = self.mmio.upgrade() else {
            return;
        };
        let now = function.config().mapped_bars();
        let indices: Vec<u8> = self
            .mapped
            .keys()
            .filter(|(s, _)| *s == slot)
            .map(|&(_, bar)| bar)
            .chain(now.iter().map(|m| m.index))
            .collect();
        for bar in indices {
            let old = self.mapped.get(&(slot, bar)).copied();
            let mut new = now.iter().find(|m| m.index == bar).copied();
            if old == new {
                continue;
            }
            if let Some(old) = old {
                mmio.remove(old.addr);
                self.mapped.remove(&(slot, bar));
            }
            if let Some(m) = new {
                let region = Arc::new(BarRegion {
                    function: Arc::clone(shared),
                    bar,
                });
                if let Err(e) = mmio.insert(m.addr, m.size, region) {
                    // A guest that places a BAR over another device loses it.
                    eprintln!("vmm: PCI 00:{slot:02x}.0 BAR {bar}: {e}");
                    new = None;
                } else {
                    self.mapped.insert((slot, bar), m);
                }
            }
            function.bar_mapped(bar, new.map(|m| m.addr));
        }
    }
}

/// One BAR on the MMIO bus: offsets go to its function's BAR handlers.
struct BarRegion {
    function: SharedFunction,
    bar: u8,
}

impl MmioDevice for BarRegion {
    fn read(&self, offset: u64, data: &mut [u8]) {
        self.function
            .lock()
            .expect("PCI function lock")
            .bar_read(self.bar, offset, data);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.function
            .lock()
            .expect("PCI function lock")
            .bar_write(self.bar, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config_space::{ConfigSpace, Identity, COMMAND, COMMAND_MEMORY};
    use crate::pci::HostBridge;

    /// A function with one 64-bit BAR that echoes the BAR offset and records moves.
    struct Echo {
        config: ConfigSpace,
        moves: Vec<Option<u64>>,
    }

    impl PciFunction for Echo {
        fn config(&self) -> &ConfigSpace {
            &self.config
        }
        fn config_write(&mut self, offset: u64, data: &[u8]) {
            self.config.write(offset, data);
        }
        fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
            data.fill(bar * 0x10 + offset as u8);
        }
        fn bar_mapped(&mut self, _bar: u8, addr: Option<u64>) {
            self.moves.push(addr);
        }
    }

    fn echo(addr: u64) -> Arc<Mutex<Echo>> {
        let mut config = ConfigSpace::new(&Identity {
            vendor: 0x1234,
            device: 0x5678,
            revision: 0,
            class: 0xff_00_00,
            subsystem_vendor: 0,
            subsystem_id: 0,
        });
        config.add_memory_bar64(0, addr, 0x1000);
        Arc::new(Mutex::new(Echo {
            config,
            moves: Vec::new(),
        }))
    }

    fn at(device: u8, register: u16) -> ConfigAddress {
        ConfigAddress {
            bus: 0,
            device,
            function: 0,
            register,
        }
    }

    fn read32(bus: &PciBus, addr: ConfigAddress) -> u32 {
        let mut b = [0; 4];
        bus.config_read(addr, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn absent_functions_read_all_ones() {
        let mmio = Arc::new(MmioBus::new());
        let mut bus = PciBus::new(&mmio);
        assert_eq!(bus.add(Arc::new(Mutex::new(HostBridge::new()))).unwrap(), 0);
        assert_eq!(read32(&bus, at(0, 0)), 0x0008_1b36);
        assert_eq!(read32(&bus, at(1, 0)), 0xffff_ffff);
        let mut other_function = at(0, 0);
        other_function.function = 1;
        assert_eq!(read32(&bus, other_function), 0xffff_ffff);
        let mut other_bus = at(0, 0);
        other_bus.bus = 1;
        assert_eq!(read32(&bus, other_bus), 0xffff_ffff);
        // Writes to nothing are dropped.
        bus.config_write(at(5, 4), &[0xff]);
    }

    #[test]
    fn bars_follow_memory_decode_and_moves() {
        let mmio = Arc::new(MmioBus::new());
        let mut bus = PciBus::new(&mmio);
        bus.add(Arc::new(Mutex::new(HostBridge::new()))).unwrap();
        let f = echo(0xc000_0000);
        assert_eq!(bus.add(f.clone()).unwrap(), 1);
        let mut data = [0u8; 1];
        assert!(!mmio.read(0xc000_0004, &mut data));

        bus.config_write(at(1, COMMAND as u16), &[COMMAND_MEMORY as u8]);
        assert!(mmio.read(0xc000_0004, &mut data));
        assert_eq!(data, [4]);

        // Sizing with decode off unmaps; the new address maps once decode is back.
        bus.config_write(at(1, COMMAND as u16), &[0]);
        bus.config_write(at(1, 0x10), &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read32(&bus, at(1, 0x10)), 0xffff_f004);
        bus.config_write(at(1, 0x10), &0xd000_0000u32.to_le_bytes());
        bus.config_write(at(1, COMMAND as u16), &[COMMAND_MEMORY as u8]);
        assert!(!mmio.read(0xc000_0004, &mut data));
        assert!(mmio.read(0xd000_0008, &mut data));
        assert_eq!(data, [8]);
        assert_eq!(
            f.lock().unwrap().moves,
            vec![Some(0xc000_0000), None, Some(0xd000_0000)]
        );
    }

    #[test]
    fn detaching_drops_functions_and_their_bars() {
        let mmio = Arc::new(MmioBus::new());
        let mut bus = PciBus::new(&mmio);
        let f = echo(0xc000_0000);
        bus.add(f.clone()).unwrap();
        bus.config_write(at(0, COMMAND as u16), &[COMMAND_MEMORY as u8]);
        assert_eq!(Arc::strong_count(&f), 3);
        bus.detach_all();
        assert_eq!(Arc::strong_count(&f), 1);
        assert!(!mmio.read(0xc000_0000, &mut [0u8; 1]));
        assert_eq!(read32(&bus, at(0, 0)), 0xffff_ffff);
    }

    #[test]
    fn a_bar_over_another_device_is_not_mapped() {
        let mmio = Arc::new(MmioBus::new());
        let mut bus = PciBus::new(&mmio);
        let a = echo(0xc000_0000);
        let b = echo(0xc000_1000);
        bus.add(a).unwrap();
        bus.add(b.clone()).unwrap();
        bus.config_write(at(0, COMMAND as u16), &[COMMAND_MEMORY as u8]);
        bus.config_write(at(1, 0x10), &0xc000_0000u32.to_le_bytes());
        bus.config_write(at(1, COMMAND as u16), &[COMMAND_MEMORY as u8]);
        assert_eq!(b.lock().unwrap().moves, vec![None]);
        let mut data = [0u8; 1];
        assert!(mmio.read(0xc000_0000, &mut data));
    }
}
