//! What a run cost the host: the VMM's peak resident memory and how much of it was
//! guest RAM the guest actually touched, so the VMM's own overhead can be told apart.

use crate::memory::GuestMemory;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Peak resident set of this process (VmHWM), in bytes.
    pub peak_rss: u64,
    /// Guest RAM resident at the end of the run, in bytes.
    pub guest_touched: u64,
}

impl RunStats {
    /// Peak RSS less guest RAM: what the VMM itself needed.
    pub fn overhead(&self) -> u64 {
        self.peak_rss.saturating_sub(self.guest_touched)
    }
}

pub fn measure(mem: &GuestMemory) -> RunStats {
    RunStats {
        peak_rss: peak_rss().unwrap_or(0),
        guest_touched: mem.iter().map(resident_bytes).sum(),
    }
}

/// The process's peak resident set (VmHWM), from getrusage rather than
/// /proc/self/status: a confined VMM opens no files once the guest runs.
fn peak_rss() -> Option<u64> {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    Some(u64::try_from(usage.ru_maxrss).ok()? * 1024)
}

fn resident_bytes(region: &vm_memory::GuestRegionMmap<()>) -> u64 {
    let page = 4096usize;
    let len = region.len() as usize;
    let mut pages = vec![0u8; len.div_ceil(page)];
    // SAFETY: the range is exactly the region's live mapping, and `pages` has one
    // byte per page of it, as mincore requires.
    let rc = unsafe { libc::mincore(region.as_ptr().cast(), len, pages.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    pages.iter().filter(|&&p| p & 1 == 1).count() as u64 * page as u64
}
