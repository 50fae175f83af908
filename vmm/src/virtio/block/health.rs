//! What the host's side of a disk is going through, as the rest of the VMM sees it:
//! whether the guest's writes wait for space (the control socket's `status` says so,
//! and `resume` retries at once), and a log of host I/O errors apart from the
//! guest's mistakes.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// One disk's state, shared by its worker thread and the VMM's main loop.
pub struct DiskHealth {
    path: PathBuf,
    /// Free bytes on the image's file system when a write last found it full;
    /// `Some` while a request is held for want of space.
    full: Mutex<Option<u64>>,
    /// Written by `resume`: the worker retries the held request now.
    wake: EventFd,
}

impl DiskHealth {
    pub fn new(path: &Path) -> io::Result<DiskHealth> {
        Ok(DiskHealth {
            path: path.to_path_buf(),
            full: Mutex::new(None),
            wake: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// "disk full on PATH (N free)" while the guest's writes to this disk wait.
    pub fn paused(&self) -> Option<String> {
        let free = (*self.full.lock().expect("disk health lock"))?;
        Some(format!(
            "disk full on {} ({} free)",
            self.path.display(),
            human_bytes(free)
        ))
    }

    /// Ask the worker to retry a held request now rather than at its next tick.
    pub fn resume(&self) {
        // Writing 1 to an eventfd only fails once its counter is near u64::MAX.
        let _ = self.wake.write(1);
    }

    pub(super) fn wake_fd(&self) -> &EventFd {
        &self.wake
    }

    /// A write found the disk full: say so once per episode, in the machine log.
    pub(super) fn disk_full(&self, free: u64) {
        let mut full = self.full.lock().expect("disk health lock");
        if full.is_none() {
            eprintln!(
                "vmm: virtio-blk: disk full on {} ({} free on its file system): the guest's I/O to this disk waits until there is space; retried every second, and at once on `hvbox up`",
                self.path.display(),
                human_bytes(free)
            );
        }
        *full = Some(free);
    }

    /// The worker stopped: no request waits any more.
    pub(super) fn forget(&self) {
        *self.full.lock().expect("disk health lock") = None;
    }

    /// The held request went through.
    pub(super) fn space_back(&self, waited: Duration) {
        if self.full.lock().expect("disk health lock").take().is_some() {
            eprintln!(
                "vmm: virtio-blk: space is back on {}: the guest's I/O continues after {} s",
                self.path.display(),
                waited.as_secs()
            );
        }
    }
}

/// Bytes the user may still write on the file system holding `file`.
pub(super) fn free_space(file: &File) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the struct it is given on success; we read it only then.
    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: initialized by the successful call above.
    let st = unsafe { st.assume_init() };
    st.f_bavail.saturating_mul(st.f_frsize)
}

pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Host I/O errors (EIO from the image's file system, a failed flush): each is the
/// host's trouble, not the guest's, so they do not share the guest-mistake budget
/// and never stop being reported. A failing disk can fail every request, though,
/// so at most [`HostErrorLog::PER_SECOND`] lines are printed a second; the next
/// line printed counts those left out.
pub struct HostErrorLog {
    path: PathBuf,
    window: Instant,
    printed: u32,
    left_out: u64,
}

impl HostErrorLog {
    pub const PER_SECOND: u32 = 5;

    pub fn new(path: &Path) -> HostErrorLog {
        HostErrorLog {
            path: path.to_path_buf(),
            window: Instant::now(),
            printed: 0,
            left_out: 0,
        }
    }

    pub fn report(&mut self, what: impl std::fmt::Display) {
        if let Some(line) = self.line(Instant::now(), what) {
            eprintln!("{line}");
        }
    }

    /// The line to print for an error at `now`, if any.
    fn line(&mut self, now: Instant, what: impl std::fmt::Display) -> Option<String> {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.printed = 0;
        }
        if self.printed >= Self::PER_SECOND {
            self.left_out += 1;
            return None;
        }
        self.printed += 1;
        let mut line = format!(
            "vmm: virtio-blk: host I/O error on {}: {what}",
            self.path.display()
        );
        if self.left_out > 0 {
            line.push_str(&format!(
                " ({} more not shown before this one)",
                std::mem::take(&mut self.left_out)
            ));
        }
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_are_rate_limited_per_second_and_counted_not_lost() {
        let mut log = HostErrorLog::new(Path::new("/m/disk.raw"));
        let start = log.window;
        let lines: Vec<_> = (0..8).filter_map(|i| log.line(start, i)).collect();
        assert_eq!(lines.len(), HostErrorLog::PER_SECOND as usize);
        assert_eq!(
            lines[0],
            "vmm: virtio-blk: host I/O error on /m/disk.raw: 0"
        );
        // A second later the log speaks again, and counts what it left out.
        let next = log.line(start + Duration::from_secs(1), "EIO").unwrap();
        assert_eq!(
            next,
            "vmm: virtio-blk: host I/O error on /m/disk.raw: EIO (3 more not shown before this one)"
        );
        // Past any budget a guest-mistake log has: still reported.
        for s in 2..40 {
            assert!(log.line(start + Duration::from_secs(s), "EIO").is_some());
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
