//! What the targets share: guest memory and queues built from fuzz input, the spec
//! parser, a scratch folder.
//!
//! Guest memory is two regions with a hole between them (and nothing past the second), so
//! buffers can straddle a hole or run off the end. The input is copied to guest
//! address 0, where queue 0's rings live; queue 1's rings follow. Everything a driver
//! controls — descriptors, avail ring, request headers, data — comes from the input.

use hvbox_vmm::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const QUEUE_SIZE: u16 = 16;
const REGION_A: (u64, usize) = (0, 0x10000);
const REGION_B: (u64, usize) = (0x20000, 0x4000);
/// Queue n's rings: descriptor table, avail ring, used ring.
const QUEUE_BASE: [u64; 2] = [0x0, 0x800];

pub fn guest_memory(input: &[u8]) -> GuestMemory {
    let mem = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(REGION_A.0), REGION_A.1),
        (GuestAddress(REGION_B.0), REGION_B.1),
    ])
    .unwrap();
    let a = &input[..input.len().min(REGION_A.1)];
    mem.write_slice(a, GuestAddress(REGION_A.0)).unwrap();
    // The second region gets the input's tail, so both hold driver data.
    let b = &input[input.len().saturating_sub(REGION_B.1)..];
    mem.write_slice(b, GuestAddress(REGION_B.0)).unwrap();
    mem
}

/// Queue `n` (0 or 1) as a driver set it up. When the input is too short to reach
/// the avail index, one chain is made available so short inputs still do something.
pub fn queue(mem: &GuestMemory, input: &[u8], n: usize) -> Queue {
    let base = QUEUE_BASE[n];
    let (desc, avail, used) = (base, base + 0x100, base + 0x200);
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(QUEUE_SIZE);
    q.try_set_desc_table_address(GuestAddress(desc)).unwrap();
    q.try_set_avail_ring_address(GuestAddress(avail)).unwrap();
    q.try_set_used_ring_address(GuestAddress(used)).unwrap();
    q.set_ready(true);
    if input.len() < (avail + 4) as usize {
        mem.write_obj(1u16, GuestAddress(avail + 2)).unwrap();
    }
    q
}

/// hvbox.yaml's parser, compiled from the cli's source: the cli is a binary crate,
/// and the spec module needs nothing of it but its own files (and the boxes and
/// cloud-init crates). Its unit tests are the cli's (they reach into the rest of it),
/// so a test build of this crate leaves it out.
#[cfg(not(test))]
#[path = "../../../cli/src/spec/mod.rs"]
#[allow(dead_code)]
pub mod spec;

/// A scratch folder for the whole run, for targets that need files.
pub fn scratch() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Writes to a socket whose peer has gone fail with EPIPE, as in the VMM (Rust's
/// runtime ignores SIGPIPE there; libFuzzer's `main` does not).
pub fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    });
}
