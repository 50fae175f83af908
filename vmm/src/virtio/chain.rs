//! Checks a descriptor chain before a device trusts its layout.
//!
//! virtio-queue's `DescriptorChain` iterator already stops after queue-size
//! descriptors (so a loop cannot spin), at a `next` index past the table, at a bad
//! indirect table and when the lengths add past `u32::MAX` — but it stops *silently*,
//! so a cut-off chain looks like a shorter valid one. It checks neither buffer
//! addresses nor the order of device-readable and device-writable descriptors, and
//! its `Reader`/`Writer` each skip the other direction's descriptors, so a buffer in
//! the wrong direction would go unnoticed. [`inspect`] adds those checks.

use crate::memory::GuestMemory;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, GuestAddress, Permissions};

/// One buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
    /// Device-writable (the guest reads what the device puts there).
    pub writable: bool,
}

/// What a device accepts in one chain.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_descriptors: usize,
    pub max_bytes: u64,
}

/// A chain whose structure was checked: readable segments first, then writable ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLayout {
    pub head: u16,
    pub segments: Vec<Segment>,
    pub readable_bytes: u64,
    pub writable_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "descriptor chain {head} is empty (head index past the table or a bad indirect table)"
    )]
    Empty { head: u16 },
    #[error("descriptor chain {head} is cut off: a loop, a next index past the table, a bad indirect table or lengths past 4 GiB")]
    Truncated { head: u16 },
    #[error("descriptor chain {head} has more than {max} descriptors")]
    TooManyDescriptors { head: u16, max: usize },
    #[error("descriptor chain {head} carries more than {max} bytes")]
    TooLarge { head: u16, max: u64 },
    #[error("descriptor chain {head}: a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable { head: u16 },
    #[error("descriptor chain {head}: buffer {addr:#x}+{len:#x} is outside guest memory")]
    OutsideMemory { head: u16, addr: u64, len: u32 },
    #[error("descriptor chain {head}: a device-writable buffer where only readable ones belong")]
    UnexpectedWritable { head: u16 },
    #[error("descriptor chain {head}: a device-readable buffer where only writable ones belong")]
    UnexpectedReadable { head: u16 },
}

/// Walks `chain` (a copy of it: the caller keeps the chain for `Reader`/`Writer`) and
/// checks its structure. Buffer addresses are checked separately
/// ([`ChainLayout::check_memory`]) so that a device can still answer a request whose
/// data buffer is bad but whose status byte is fine.
pub fn inspect(
    chain: &DescriptorChain<&GuestMemory>,
    limits: Limits,
) -> Result<ChainLayout, ChainError> {
    let head = chain.head_index();
    let mut layout = ChainLayout {
        head,
        segments: Vec::new(),
        readable_bytes: 0,
        writable_bytes: 0,
    };
    let mut last_had_next = false;
    let mut seen_writable = false;
    for desc in chain.clone() {
        if layout.segments.len() == limits.max_descriptors {
            return Err(ChainError::TooManyDescriptors {
                head,
                max: limits.max_descriptors,
            });
        }
        let writable = desc.is_write_only();
        let len = u64::from(desc.len());
        if writable {
            seen_writable = true;
            layout.writable_bytes += len;
        } else if seen_writable {
            return Err(ChainError::ReadableAfterWritable { head });
        } else {
            layout.readable_bytes += len;
        }
        // Cannot overflow: at most 65535 descriptors of at most 4 GiB each.
        if layout.readable_bytes + layout.writable_bytes > limits.max_bytes {
            return Err(ChainError::TooLarge {
                head,
                max: limits.max_bytes,
            });
        }
        last_had_next = desc.has_next();
        layout.segments.push(Segment {
            addr: desc.addr(),
            len: desc.len(),
            writable,
        });
    }
    if layout.segments.is_empty() {
        return Err(ChainError::Empty { head });
    }
    // The iterator ended although the last descriptor it gave points on: it stopped
    // on something invalid.
    if last_had_next {
        return Err(ChainError::Truncated { head });
    }
    Ok(layout)
}

impl ChainLayout {
    /// Every buffer lies inside guest memory.
    pub fn check_memory(&self, mem: &GuestMemory) -> Result<(), ChainError> {
        for s in &self.segments {
            let access = if s.writable {
                Permissions::Write
            } else {
                Permissions::Read
            };
            if !vm_memory::GuestMemory::check_range(mem, s.addr, s.len as usize, access) {
                return Err(ChainError::OutsideMemory {
                    head: self.head,
                    addr: s.addr.raw_value(),
                    len: s.len,
                });
            }
        }
        Ok(())
    }

    /// The chain has no device-writable buffer (a transmit chain).
    pub fn require_readable_only(&self) -> Result<(), ChainError> {
        match self.segments.iter().any(|s| s.writable) {
            true => Err(ChainError::UnexpectedWritable { head: self.head }),
            false => Ok(()),
        }
    }

    /// The chain has no device-readable buffer (a receive or entropy chain).
    pub fn require_writable_only(&self) -> Result<(), ChainError> {
        match self.segments.iter().any(|s| !s.writable) {
            true => Err(ChainError::UnexpectedReadable { head: self.head }),
            false => Ok(()),
        }
    }

    /// Address of the last device-writable byte (where virtio-blk puts its status).
    pub fn last_writable_byte(&self) -> Option<GuestAddress> {
        let last = self
            .segments
            .iter()
            .rev()
            .find(|s| s.writable && s.len > 0)?;
        last.addr.checked_add(u64::from(last.len) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_util::{desc, TestQueue, R, W};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};

    const LIMITS: Limits = Limits {
        max_descriptors: 8,
        max_bytes: 0x10000,
    };

    fn inspect_first(t: &TestQueue) -> Result<ChainLayout, ChainError> {
        let chain = t.pop().expect("a chain");
        inspect(&chain, LIMITS).and_then(|l| l.check_memory(t.mem).map(|()| l))
    }

    #[test]
    fn a_well_formed_chain_is_described() {
        let t = TestQueue::new();
        t.add_chain(&[
            desc(0x10000, 16, R),
            desc(0x11000, 512, W),
            desc(0x12000, 1, W),
        ]);
        let l = inspect_first(&t).unwrap();
        assert_eq!((l.readable_bytes, l.writable_bytes), (16, 513));
        assert_eq!(l.last_writable_byte(), Some(GuestAddress(0x12000)));
    }

    #[test]
    fn readable_after_writable_is_refused() {
        let t = TestQueue::new();
        t.add_chain(&[desc(0x10000, 16, W), desc(0x11000, 16, R)]);
        assert!(matches!(
            inspect_first(&t),
            Err(ChainError::ReadableAfterWritable { .. })
        ));
    }

    #[test]
    fn a_loop_is_reported_as_truncated() {
        let t = TestQueue::new();
        // 0 -> 1 -> 0 -> ...
        t.add_raw(
            &[
                RawDescriptor::from(Descriptor::new(0x10000, 8, 1, 1)),
                RawDescriptor::from(Descriptor::new(0x11000, 8, 1, 0)),
            ],
            0,
        );
        let chain = t.pop().unwrap();
        let big = Limits {
            max_descriptors: 1000,
            max_bytes: 1 << 20,
        };
        assert!(matches!(
            inspect(&chain, big),
            Err(ChainError::Truncated { .. })
        ));
        assert!(matches!(
            inspect(&chain, LIMITS),
            Err(ChainError::TooManyDescriptors { .. })
        ));
    }

    #[test]
    fn a_next_index_past_the_table_is_truncated() {
        let t = TestQueue::new();
        t.add_raw(
            &[RawDescriptor::from(Descriptor::new(0x10000, 8, 1, 300))],
            0,
        );
        assert!(matches!(
            inspect_first(&t),
            Err(ChainError::Truncated { .. })
        ));
    }

    #[test]
    fn buffers_outside_memory_and_oversized_chains_are_refused() {
        let t = TestQueue::new();
        t.add_chain(&[desc(t.mem_size() - 4, 16, R)]);
        assert!(matches!(
            inspect_first(&t),
            Err(ChainError::OutsideMemory { .. })
        ));
        let t = TestQueue::new();
        t.add_chain(&[desc(0x10000, 0x8000, R), desc(0x18000, 0x8001, W)]);
        assert!(matches!(
            inspect_first(&t),
            Err(ChainError::TooLarge { .. })
        ));
    }

    #[test]
    fn lengths_that_overflow_u32_end_the_chain() {
        let t = TestQueue::new();
        t.add_chain(&[desc(0x10000, u32::MAX, R), desc(0x10000, 2, R)]);
        let chain = t.pop().unwrap();
        let huge = Limits {
            max_descriptors: 8,
            max_bytes: u64::MAX,
        };
        assert!(matches!(
            inspect(&chain, huge),
            Err(ChainError::Truncated { .. })
        ));
    }
}
