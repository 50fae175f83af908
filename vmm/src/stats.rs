//! What a run cost the host: the VMM's peak resident memory and how much of it was
//! guest RAM the guest actually touched, so the VMM's own overhead can be told apart;
//! and the vCPUs' exits to the VMM by reason ([`crate::exit_counts`]).

use crate::exit_counts::ExitSummary;
use crate::memory::GuestMemory;
use std::fs::File;
use std::os::unix::fs::FileExt;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Peak resident set of this process (VmHWM), in bytes.
    pub peak_rss: u64,
    /// Guest RAM resident at the end of the run, in bytes.
    pub guest_touched: u64,
    /// The vCPUs' exits to the VMM, by reason.
    pub exits: ExitSummary,
}

impl RunStats {
    /// Peak RSS less guest RAM: what the VMM itself needed.
    pub fn overhead(&self) -> u64 {
        self.peak_rss.saturating_sub(self.guest_touched)
    }
}

/// `status` is /proc/self/status, opened before the VMM was confined (it opens no
/// files once the guest runs).
pub fn measure(mem: &GuestMemory, status: Option<&File>, exits: ExitSummary) -> RunStats {
    RunStats {
        exits,
        peak_rss: status
            .and_then(high_water_mark)
            .or_else(peak_rss)
            .unwrap_or(0),
        guest_touched: mem.iter().map(resident_bytes).sum(),
    }
}

/// VmHWM from /proc/self/status: this address space's own peak. getrusage's figure
/// also keeps the peak of the process image before exec, which for a VMM started by
/// a big parent (fork or vfork and exec) is the parent's size.
fn high_water_mark(status: &File) -> Option<u64> {
    let mut buf = [0u8; 4096];
    // procfs makes the text afresh for a read from offset 0.
    let n = status.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The process's peak resident set from getrusage, when /proc is not at hand.
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
