//! KVM's coalesced I/O ring for COM1's data port: a byte the guest writes there is
//! queued in a page shared with KVM instead of stopping the vCPU for the VMM. A
//! guest prints its console a byte per port write, and under nested virtualization
//! each exit to the VMM costs as much as a millisecond: most of a boot's time.
//!
//! The queued writes reach the UART in order: every vCPU drains the ring before it
//! handles a port access of its own (so the guest never sees a register out of
//! order), and a drainer thread empties it every millisecond or so while output
//! flows, which also raises the UART's transmit interrupt the guest's driver waits
//! for. Every drain happens under the platform lock.

use crate::devices::platform::Platform;
use crate::layout::COM1_PORT;
use kvm_bindings::{kvm_coalesced_mmio, kvm_coalesced_mmio_ring};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The shared page, mapped from a vCPU's descriptor.
pub struct CoalescedRing {
    page: NonNull<kvm_coalesced_mmio_ring>,
    page_size: usize,
    /// Entries the page holds.
    slots: u32,
    /// Bytes that went through the ring: the exits it saved.
    drained: AtomicU64,
}

// SAFETY: the page is KVM's, shared by design; the VMM's side of it (the `first`
// index) is only written under the platform lock, which every caller of `drain`
// holds (it takes `&mut Platform`).
unsafe impl Send for CoalescedRing {}
// SAFETY: as above.
unsafe impl Sync for CoalescedRing {}

impl CoalescedRing {
    /// Queue COM1's data-port writes in a ring, mapped through `vcpu`; None where
    /// KVM cannot (no coalesced port I/O), and the guest's writes exit as before.
    pub fn for_serial(kvm: &Kvm, vm: &VmFd, vcpu: &VcpuFd) -> Option<CoalescedRing> {
        if !kvm.check_extension(Cap::CoalescedPio) {
            return None;
        }
        let page_offset = kvm.check_extension_int(Cap::CoalescedMmio);
        if page_offset <= 0 {
            return None;
        }
        // SAFETY: sysconf has no preconditions.
        let page_size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        // SAFETY: a fresh shared mapping of one page of the vCPU's descriptor at the
        // offset KVM named; the result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                page_offset as libc::off_t * page_size as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return None;
        }
        let ring = CoalescedRing {
            page: NonNull::new(addr.cast())?,
            page_size,
            slots: ((page_size - std::mem::size_of::<kvm_coalesced_mmio_ring>())
                / std::mem::size_of::<kvm_coalesced_mmio>()) as u32,
            drained: AtomicU64::new(0),
        };
        // Only the data register: the others have effects the guest reads back.
        vm.register_coalesced_mmio(IoEventAddress::Pio(u64::from(COM1_PORT)), 1)
            .ok()?;
        Some(ring)
    }

    fn index(&self, field: usize) -> &AtomicU32 {
        // SAFETY: `first` and `last` are aligned u32s in the live mapping; KVM and
        // the VMM both access them atomically.
        unsafe {
            &*(self
                .page
                .as_ptr()
                .cast::<u8>()
                .add(field)
                .cast::<AtomicU32>())
        }
    }

    /// Hand every queued write to the platform, oldest first; how many there were.
    pub fn drain(&self, platform: &mut Platform) -> usize {
        let first = self.index(std::mem::offset_of!(kvm_coalesced_mmio_ring, first));
        let last = self.index(std::mem::offset_of!(kvm_coalesced_mmio_ring, last));
        let mut at = first.load(Ordering::Relaxed);
        // KVM fills an entry before it moves `last` past it.
        let end = last.load(Ordering::Acquire);
        let mut count = 0;
        while at != end && at < self.slots {
            // SAFETY: `at` < slots, so the entry lies within the mapped page.
            let entry: kvm_coalesced_mmio = unsafe {
                std::ptr::read_volatile(
                    self.page
                        .as_ptr()
                        .cast::<u8>()
                        .add(std::mem::size_of::<kvm_coalesced_mmio_ring>())
                        .cast::<kvm_coalesced_mmio>()
                        .add(at as usize),
                )
            };
            let len = (entry.len as usize).min(entry.data.len());
            let _ = platform.pio_write(entry.phys_addr as u16, &entry.data[..len]);
            at = (at + 1) % self.slots;
            count += 1;
        }
        // The entries are read: KVM may reuse them.
        first.store(at, Ordering::Release);
        self.drained.fetch_add(count as u64, Ordering::Relaxed);
        count
    }

    /// Writes that went through the ring so far.
    pub fn drained(&self) -> u64 {
        self.drained.load(Ordering::Relaxed)
    }
}

impl Drop for CoalescedRing {
    fn drop(&mut self) {
        // SAFETY: the page was mapped in `for_serial` with this size and is no
        // longer referenced.
        unsafe { libc::munmap(self.page.as_ptr().cast(), self.page_size) };
    }
}

/// How long the drainer sleeps while output flows, and at most when none does.
const BUSY: Duration = Duration::from_millis(1);
const IDLE: Duration = Duration::from_millis(20);

/// The drainer's loop: runs until `stop`, then drains once more so that nothing
/// the guest wrote is lost.
pub fn drain_until_stopped(ring: &CoalescedRing, platform: &Mutex<Platform>, stop: &AtomicBool) {
    let mut pause = BUSY;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let drained = ring.drain(&mut platform.lock().expect("platform lock"));
        if stopping {
            return;
        }
        // Quick while the guest prints; backing off when it does not.
        pause = match drained {
            0 => (pause * 2).min(IDLE),
            _ => BUSY,
        };
        // Parked rather than asleep: whoever sets `stop` unparks the thread, so the
        // VMM's exit does not wait out the pause.
        std::thread::park_timeout(pause);
    }
}

/// A ring shared by the vCPUs and the drainer.
pub type SharedRing = Option<Arc<CoalescedRing>>;
