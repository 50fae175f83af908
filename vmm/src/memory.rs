//! Guest RAM: one or two mmap'd regions around the 32-bit hole.

use crate::layout::{MEM_32BIT_HOLE_START, RAM_64BIT_START};
use vm_memory::{GuestAddress, GuestMemoryMmap};

pub type GuestMemory = GuestMemoryMmap<()>;

/// The RAM ranges for `size` bytes: below the hole, then above 4 GiB.
pub fn ram_regions(size: u64) -> Vec<(GuestAddress, usize)> {
    let low_max = MEM_32BIT_HOLE_START.0;
    if size <= low_max {
        vec![(GuestAddress(0), size as usize)]
    } else {
        vec![
            (GuestAddress(0), low_max as usize),
            (RAM_64BIT_START, (size - low_max) as usize),
        ]
    }
}

pub fn create_guest_memory(size: u64) -> Result<GuestMemory, vm_memory::mmap::FromRangesError> {
    GuestMemoryMmap::from_ranges(&ram_regions(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guests_fit_below_the_hole() {
        assert_eq!(ram_regions(1 << 30), vec![(GuestAddress(0), 1 << 30)]);
    }

    #[test]
    fn large_guests_continue_above_4g() {
        let r = ram_regions(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), 3 << 30));
        assert_eq!(r[1], (GuestAddress(1 << 32), 1 << 30));
    }
}
