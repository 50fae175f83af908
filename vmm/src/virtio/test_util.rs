//! Test helpers: a driver-side queue in real guest memory (virtio-queue's mock) and
//! an interrupt that counts.

use crate::memory::GuestMemory;
use crate::virtio::device::VirtioInterrupt;
use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const R: u16 = 0;
pub const W: u16 = VRING_DESC_F_WRITE as u16;
pub const QUEUE_SIZE: u16 = 256;
const MEM_SIZE: usize = 4 << 20;

pub fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, 0))
}

/// Guest memory with one queue at address 0; buffers go at 0x10000 and above.
pub struct TestQueue {
    /// Leaked so the mock (which borrows it) can live next to it.
    pub mem: &'static GuestMemory,
    mock: MockSplitQueue<'static, GuestMemory>,
    next_desc: Cell<u16>,
    size: u16,
    /// The device side, for tests that pop chains themselves.
    device: RefCell<Queue>,
}

impl TestQueue {
    pub fn new() -> TestQueue {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        TestQueue::at(Box::leak(Box::new(mem)), 0, QUEUE_SIZE)
    }

    /// Another queue in the same memory, its rings at `base` (below 0x10000).
    pub fn another(&self, base: u64) -> TestQueue {
        TestQueue::at(self.mem, base, QUEUE_SIZE)
    }

    /// Another queue of `size` entries in the same memory, its rings at `base`.
    pub fn another_sized(&self, base: u64, size: u16) -> TestQueue {
        TestQueue::at(self.mem, base, size)
    }

    fn at(mem: &'static GuestMemory, base: u64, size: u16) -> TestQueue {
        let mock = MockSplitQueue::create(mem, GuestAddress(base), size);
        let device = RefCell::new(mock.create_queue().unwrap());
        TestQueue {
            mem,
            mock,
            next_desc: Cell::new(0),
            size,
            device,
        }
    }

    pub fn mem_size(&self) -> u64 {
        MEM_SIZE as u64
    }

    /// A device-side queue set up as a driver would (next_avail 0).
    pub fn queue(&self) -> Queue {
        self.mock.create_queue().unwrap()
    }

    /// The next chain the driver offered, popped from a device-side queue kept here.
    pub fn pop(&self) -> Option<DescriptorChain<&'static GuestMemory>> {
        self.device.borrow_mut().pop_descriptor_chain(self.mem)
    }

    /// Makes `descs` one chain (linked in order) and offers it.
    pub fn add_chain(&self, descs: &[RawDescriptor]) -> u16 {
        let mut first = self.next_desc.get();
        if usize::from(first) + descs.len() > usize::from(self.size) {
            first = 0;
        }
        let linked: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let d = Descriptor::from(*d);
                let last = i + 1 == descs.len();
                let flags = if last {
                    d.flags() & !(VRING_DESC_F_NEXT as u16)
                } else {
                    d.flags() | VRING_DESC_F_NEXT as u16
                };
                let next = if last { 0 } else { first + i as u16 + 1 };
                RawDescriptor::from(Descriptor::new(d.addr().0, d.len(), flags, next))
            })
            .collect();
        self.add_raw(&linked, first);
        first
    }

    /// Stores descriptors as given at `offset` and offers each one that does not
    /// follow a NEXT descriptor.
    pub fn add_raw(&self, descs: &[RawDescriptor], offset: u16) {
        self.mock.add_desc_chains(descs, offset).unwrap();
        self.next_desc.set(offset + descs.len() as u16);
    }

    /// Where the descriptor table, available and used rings are, as a driver tells
    /// the device.
    pub fn rings(&self) -> (u64, u64, u64) {
        (
            self.mock.desc_table_addr().0,
            self.mock.avail_addr().0,
            self.mock.used_addr().0,
        )
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn used_idx(&self) -> u16 {
        self.mock.used().idx().load()
    }

    /// (head, length) of used entry `i`.
    pub fn used(&self, i: u16) -> (u32, u32) {
        let e = self.mock.used().ring().ref_at(i as usize).unwrap().load();
        (e.id(), e.len())
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}

/// Counts notifications; tests wait on it for a worker thread's progress.
#[derive(Default)]
pub struct CountingInterrupt {
    queue: [AtomicUsize; 2],
    config: AtomicUsize,
    lock: Mutex<()>,
    changed: Condvar,
}

impl CountingInterrupt {
    pub fn queue_count(&self, q: u16) -> usize {
        self.queue[q as usize].load(Ordering::SeqCst)
    }

    pub fn config_count(&self) -> usize {
        self.config.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds (checked at each notification, and every 10 ms).
    pub fn wait_for(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut guard = self.lock.lock().unwrap();
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            guard = self
                .changed
                .wait_timeout(guard, Duration::from_millis(10))
                .unwrap()
                .0;
        }
    }

    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        let _guard = self.lock.lock().unwrap();
        self.changed.notify_all();
    }
}

impl VirtioInterrupt for CountingInterrupt {
    fn notify_queue(&self, queue: u16) -> io::Result<()> {
        self.bump(&self.queue[queue as usize]);
        Ok(())
    }

    fn notify_config(&self) -> io::Result<()> {
        self.bump(&self.config);
        Ok(())
    }
}
