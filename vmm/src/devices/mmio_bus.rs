//! The MMIO bus: which device answers a guest-physical address outside RAM.
//!
//! vCPU threads look addresses up concurrently; the PCI bus changes the map when
//! the guest moves or enables a BAR. Lookups hold the lock only to find the device,
//! never while the device runs, so a device may itself change the map.

use std::sync::{Arc, RwLock};

/// A device reached through MMIO; offsets are relative to the start of its range.
/// Devices keep their own locks: several vCPUs may call at once.
pub trait MmioDevice: Send + Sync {
    fn read(&self, offset: u64, data: &mut [u8]);
    fn write(&self, offset: u64, data: &[u8]);
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MmioBusError {
    #[error("MMIO range {start:#x}+{len:#x} is empty, wraps, or overlaps another device")]
    Overlap { start: u64, len: u64 },
}

struct Range {
    start: u64,
    len: u64,
    device: Arc<dyn MmioDevice>,
}

impl Range {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

#[derive(Default)]
pub struct MmioBus {
    /// Sorted by start, never overlapping.
    ranges: RwLock<Vec<Range>>,
}

impl MmioBus {
    pub fn new() -> MmioBus {
        MmioBus::default()
    }

    pub fn insert(
        &self,
        start: u64,
        len: u64,
        device: Arc<dyn MmioDevice>,
    ) -> Result<(), MmioBusError> {
        let overlap = MmioBusError::Overlap { start, len };
        let end = start
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(overlap.clone())?;
        let mut ranges = self.ranges.write().expect("MMIO bus lock");
        let at = ranges.partition_point(|r| r.start < start);
        let clashes_before = at > 0 && ranges[at - 1].end() > start;
        let clashes_after = at < ranges.len() && ranges[at].start < end;
        if clashes_before || clashes_after {
            return Err(overlap);
        }
        ranges.insert(at, Range { start, len, device });
        Ok(())
    }

    /// Remove the range starting at `start`; returns whether there was one.
    pub fn remove(&self, start: u64) -> bool {
        let mut ranges = self.ranges.write().expect("MMIO bus lock");
        match ranges.binary_search_by_key(&start, |r| r.start) {
            Ok(at) => {
                ranges.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// The device at `addr` and the offset into its range.
    fn find(&self, addr: u64) -> Option<(Arc<dyn MmioDevice>, u64)> {
        let ranges = self.ranges.read().expect("MMIO bus lock");
        let at = ranges.partition_point(|r| r.start <= addr).checked_sub(1)?;
        let range = &ranges[at];
        (addr < range.end()).then(|| (Arc::clone(&range.device), addr - range.start))
    }

    /// Returns false when no device claims `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((device, offset)) => {
                device.read(offset, data);
                true
            }
            None => false,
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((device, offset)) => {
                device.write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Remembers the last offset written, reads back its own tag.
    struct Probe {
        tag: u8,
        last: Mutex<Option<u64>>,
    }

    impl MmioDevice for Probe {
        fn read(&self, _offset: u64, data: &mut [u8]) {
            data.fill(self.tag);
        }
        fn write(&self, offset: u64, _data: &[u8]) {
            *self.last.lock().unwrap() = Some(offset);
        }
    }

    fn probe(tag: u8) -> Arc<Probe> {
        Arc::new(Probe {
            tag,
            last: Mutex::new(None),
        })
    }

    #[test]
    fn routes_by_address_with_relative_offsets() {
        let bus = MmioBus::new();
        let a = probe(0xaa);
        bus.insert(0x1000, 0x100, a.clone()).unwrap();
        bus.insert(0x2000, 0x1000, probe(0xbb)).unwrap();
        let mut data = [0u8; 4];
        assert!(bus.read(0x10ff, &mut data));
        assert_eq!(data, [0xaa; 4]);
        assert!(bus.read(0x2fff, &mut data));
        assert_eq!(data, [0xbb; 4]);
        assert!(!bus.read(0x1100, &mut data));
        assert!(!bus.read(0xfff, &mut data));
        assert!(!bus.read(0x3000, &mut data));
        assert!(bus.write(0x1010, &[1]));
        assert_eq!(*a.last.lock().unwrap(), Some(0x10));
    }

    #[test]
    fn refuses_overlaps_and_empty_or_wrapping_ranges() {
        let bus = MmioBus::new();
        bus.insert(0x1000, 0x1000, probe(1)).unwrap();
        for (start, len) in [(0x800, 0x801), (0x1fff, 1), (0x1000, 0x1000), (0x3000, 0)] {
            assert!(bus.insert(start, len, probe(2)).is_err(), "{start:#x}");
        }
        assert!(bus.insert(u64::MAX - 0xfff, 0x2000, probe(2)).is_err());
        bus.insert(0x800, 0x800, probe(3)).unwrap();
        bus.insert(0x2000, 0x10, probe(4)).unwrap();
    }

    #[test]
    fn removed_ranges_stop_answering() {
        let bus = MmioBus::new();
        bus.insert(0x1000, 0x10, probe(1)).unwrap();
        assert!(bus.remove(0x1000));
        assert!(!bus.remove(0x1000));
        assert!(!bus.read(0x1000, &mut [0u8; 1]));
        bus.insert(0x1008, 0x10, probe(1)).unwrap();
    }
}
