//! How much kernel and initrd a machine may be given. Root in the guest
//! decides what the boot files are; their sizes, taken from the filesystem
//! before anything is copied, keep a hostile or damaged disk from filling
//! the host's disk or the guest's memory.

use crate::volumes::Disk;
use crate::Error;

/// No real kernel plus initrd comes near this (Debian's are ~60 MiB); the
/// VMM loads both into guest memory, so more could not boot anyway.
pub const MAX_BOOT_BYTES: u64 = 1 << 30;

/// Check that `kernel` and `initrds` (guest paths on `volume`) together fit
/// in `min(guest_memory, MAX_BOOT_BYTES)`.
pub(crate) fn check(
    disk: &Disk,
    volume: usize,
    kernel: &str,
    initrds: &[String],
    guest_memory: u64,
) -> Result<(), Error> {
    let fs = &disk.volumes[volume].fs;
    let mut sized = Vec::with_capacity(1 + initrds.len());
    let mut total: u64 = 0;
    for path in std::iter::once(kernel).chain(initrds.iter().map(String::as_str)) {
        let len = fs
            .metadata(path)
            .map_err(|e| disk.guest_err(volume, path, e))?
            .len();
        total = total.saturating_add(len);
        sized.push(format!("{path} ({})", human(len)));
    }
    let limit = guest_memory.min(MAX_BOOT_BYTES);
    if total <= limit {
        return Ok(());
    }
    let why = if guest_memory < MAX_BOOT_BYTES {
        format!(
            "of the guest's memory ({}); give the machine more `memory:` or a smaller initrd",
            human(guest_memory)
        )
    } else {
        format!(
            "hvbox boots at most ({}); is the file damaged, or the initrd built with every module?",
            human(MAX_BOOT_BYTES)
        )
    };
    Err(Error::BootFilesTooLarge {
        path: disk.path.clone(),
        files: format!(
            "{} on {}",
            sized.join(" + "),
            disk.volumes[volume].describe()
        ),
        total,
        limit,
        why,
    })
}

/// Whole MiB, or bytes below one MiB: enough to compare sizes by eye.
fn human(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{bytes} bytes")
    } else {
        format!("{} MiB", bytes >> 20)
    }
}
