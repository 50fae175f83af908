//! Limits on what converting one download may cost, checked before the bytes are
//! written: a cap on the disk's size, the free space of the cache's filesystem, and a
//! stop signal raised when the download fails verification.
//!
//! A few KiB can describe a huge disk (a sparse tarball's holes, a qcow2 virtual
//! size, a compressed run of zeros or not), and the converter runs while the bytes
//! still arrive; without these it could write terabytes, or fill the host's disk,
//! for a download that turns out to be wrong.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::formats::FormatError;

/// The largest disk a box may convert to unless `HVBOX_MAX_BOX_SIZE` says otherwise:
/// cloud images are 2 to 64 GiB; a machine's disk grows beyond its box when asked.
pub const DEFAULT_MAX_DISK_SIZE: u64 = 256 << 30;

/// Where a conversion's size cap comes from, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSource {
    /// hvbox.lock records the disk's size from an earlier fetch.
    LockFile,
    /// hvbox's own limit ([`DEFAULT_MAX_DISK_SIZE`] or `HVBOX_MAX_BOX_SIZE`).
    Global,
}

impl CapSource {
    pub(crate) fn explain(self) -> &'static str {
        match self {
            CapSource::LockFile => "the disk size hvbox.lock records for this box",
            CapSource::Global => {
                "hvbox's limit for a box's disk; set HVBOX_MAX_BOX_SIZE (e.g. 512G) to raise it"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    pub cap: u64,
    pub cap_source: CapSource,
    /// The folder the disk is written in (the cache's `tmp/`).
    pub dir: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Bounds {
    pub(crate) fn new(cap: u64, cap_source: CapSource, dir: &Path) -> Bounds {
        Bounds {
            cap,
            cap_source,
            dir: dir.to_path_buf(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Make every converter holding these bounds give up at its next check.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Err once [`Bounds::stop`] was called: the download's own error is reported.
    pub(crate) fn check_stop(&self) -> Result<(), FormatError> {
        if self.stop.load(Ordering::Relaxed) {
            Err(FormatError::SourceFailed)
        } else {
            Ok(())
        }
    }

    /// Refuse a disk of `size` bytes (as `what` describes it) past the cap.
    pub(crate) fn check_size(
        &self,
        size: u64,
        what: impl Fn() -> String,
    ) -> Result<(), FormatError> {
        if size > self.cap {
            return Err(FormatError::OverCap {
                what: what(),
                cap: self.cap,
                why: self.cap_source.explain(),
            });
        }
        Ok(())
    }

    /// Refuse to start writing `needed` more bytes when the filesystem has less free.
    pub(crate) fn check_space(&self, needed: u64) -> Result<(), FormatError> {
        let Some(free) = free_space(&self.dir) else {
            // Unknown (statvfs failed): writing reports ENOSPC itself.
            return Ok(());
        };
        if needed > free {
            return Err(FormatError::NoSpace {
                needed,
                free,
                path: self.dir.clone(),
            });
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still put on the filesystem holding `dir`.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `st` a writable statvfs buffer;
    // statvfs only writes into it, and we read it only when it succeeded.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the whole struct.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Parse a size such as `1099511627776`, `512G`, `2T` or `100MiB` (powers of 1024).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512G"), Some(512 << 30));
        assert_eq!(parse_size(" 2T "), Some(2 << 40));
        assert_eq!(parse_size("100MiB"), Some(100 << 20));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }

    #[test]
    fn free_space_is_reported_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).unwrap();
        assert!(free > 0);
        let bounds = Bounds::new(1 << 20, CapSource::Global, dir.path());
        bounds.check_space(0).unwrap();
        let msg = bounds.check_space(u64::MAX).unwrap_err().to_string();
        assert!(msg.contains("free on"), "{msg}");
        let msg = bounds
            .check_size(2 << 20, || "it".into())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("1 MiB") && msg.contains("HVBOX_MAX_BOX_SIZE"),
            "{msg}"
        );
        bounds.check_stop().unwrap();
        bounds.stop();
        assert!(bounds.check_stop().is_err());
    }
}
