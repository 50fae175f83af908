//! Guest RAM: one or two mmap'd regions around the 32-bit hole.
//!
//! Anonymous private memory unless another process must reach guest RAM too: a
//! vhost-user backend (virtiofsd) maps the same pages, so then RAM is one memfd,
//! mapped shared, each region at its own offset in it.

use crate::layout::{MEM_32BIT_HOLE_START, RAM_64BIT_START};
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

pub type GuestMemory = GuestMemoryMmap<()>;

/// Where guest RAM lives on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Private to the VMM.
    Anonymous,
    /// A memfd mapped shared, which the VMM can hand to vhost-user backends.
    SharedMemfd,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("creating the memfd for guest RAM: {0}")]
    Memfd(io::Error),
    #[error("sizing the memfd for guest RAM: {0}")]
    Size(io::Error),
    #[error(transparent)]
    Map(#[from] vm_memory::mmap::FromRangesError),
}

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

/// `size` bytes of anonymous guest RAM.
pub fn create_guest_memory(size: u64) -> Result<GuestMemory, MemoryError> {
    create_guest_memory_in(size, Backing::Anonymous)
}

/// `size` bytes of guest RAM, laid out by [`ram_regions`], in `backing`.
pub fn create_guest_memory_in(size: u64, backing: Backing) -> Result<GuestMemory, MemoryError> {
    let regions = ram_regions(size);
    match backing {
        Backing::Anonymous => Ok(GuestMemoryMmap::from_ranges(&regions)?),
        Backing::SharedMemfd => {
            let file = Arc::new(memfd(c"hvbox-guest-ram", size)?);
            let mut offset = 0u64;
            let ranges: Vec<_> = regions
                .iter()
                .map(|&(start, len)| {
                    let at = FileOffset::from_arc(Arc::clone(&file), offset);
                    offset += len as u64;
                    (start, len, Some(at))
                })
                .collect();
            Ok(GuestMemoryMmap::from_ranges_with_files(&ranges)?)
        }
    }
}

/// An anonymous memory file of `size` bytes (pages are allocated as touched).
fn memfd(name: &CStr, size: u64) -> Result<File, MemoryError> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(MemoryError::Memfd(io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size).map_err(MemoryError::Size)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};

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

    #[test]
    fn shared_memory_is_one_memfd_another_mapping_sees() {
        let size = (3 << 30) + (8 << 20);
        let mem = create_guest_memory_in(size, Backing::SharedMemfd).unwrap();
        let regions: Vec<_> = mem.iter().collect();
        assert_eq!(regions.len(), 2);
        let low = regions[0].file_offset().unwrap();
        let high = regions[1].file_offset().unwrap();
        assert_eq!((low.start(), high.start()), (0, 3 << 30));
        assert!(Arc::ptr_eq(low.arc(), high.arc()));
        assert_eq!(low.file().metadata().unwrap().len(), size);

        // What the guest writes above 4 GiB is in the file where the table says.
        mem.write_obj(0x1234_5678u32, GuestAddress((1 << 32) + 16))
            .unwrap();
        let mut word = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(high.file(), &mut word, (3 << 30) + 16).unwrap();
        assert_eq!(u32::from_le_bytes(word), 0x1234_5678);

        let private = create_guest_memory(size).unwrap();
        assert!(private.iter().all(|r| r.file_offset().is_none()));
    }
}
