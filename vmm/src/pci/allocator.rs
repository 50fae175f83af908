//! Addresses for BARs: handed out once, at machine build, from the MMIO window the
//! DSDT gives the host bridge, so the guest finds them valid and keeps them.

use vm_memory::GuestAddress;

pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    pub fn new(start: GuestAddress, size: u64) -> BarAllocator {
        BarAllocator {
            next: start.0,
            end: start.0 + size,
        }
    }

    /// `size` bytes (a power of two) aligned to their size, as BARs must be.
    pub fn allocate(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let addr = self.next.checked_next_multiple_of(size)?;
        let end = addr.checked_add(size).filter(|&end| end <= self.end)?;
        self.next = end;
        Some(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_disjoint_and_bounded() {
        let mut a = BarAllocator::new(GuestAddress(0xc000_1000), 0x2_0000);
        assert_eq!(a.allocate(0x8000), Some(0xc000_8000));
        assert_eq!(a.allocate(0x1000), Some(0xc001_0000));
        assert_eq!(a.allocate(0x8000), Some(0xc001_8000));
        assert_eq!(a.allocate(0x8000), None);
        assert_eq!(a.allocate(0x3000), None);
        assert_eq!(a.allocate(0x1000), Some(0xc002_0000));
    }
}
