//! virtio-rng: fills each buffer the driver offers with bytes from getrandom(2).

use crate::memory::GuestMemory;
use crate::virtio::chain::{self, ChainError, Limits};
use crate::virtio::device::{
    ActivateError, Activation, ActiveQueue, DeviceState, PausedQueues, VirtioDevice,
};
use crate::virtio::worker::{run_single_queue, take_queues, ErrorLog, Worker};
use std::io::{self, Write};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::DescriptorChain;

const QUEUE_SIZE: u16 = 64;
/// A request is filled up to this many bytes (the used length tells the driver how
/// much it got): a guest asking for gigabytes gets a little at a time.
const MAX_FILL: usize = 64 << 10;
const LIMITS: Limits = Limits {
    max_descriptors: QUEUE_SIZE as usize,
    max_bytes: u32::MAX as u64,
};

#[derive(Debug, thiserror::Error)]
pub enum RngError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("getrandom: {0}")]
    Entropy(io::Error),
}

/// Fills the writable buffers of `chain` with random bytes; returns the used length.
/// A chain with a device-readable buffer, or a buffer outside memory, is returned
/// with nothing written.
pub fn fill_chain(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
) -> Result<u32, RngError> {
    let layout = chain::inspect(&chain, LIMITS)?;
    layout.require_writable_only()?;
    layout.check_memory(mem)?;
    let Ok(mut writer) = chain.writer(mem) else {
        return Err(ChainError::Empty { head: layout.head }.into());
    };
    let mut random = vec![0u8; writer.available_bytes().min(MAX_FILL)];
    getrandom(&mut random).map_err(RngError::Entropy)?;
    // Cannot fail: the buffers were checked and are at least this long.
    let _ = writer.write_all(&random);
    Ok(writer.bytes_written() as u32)
}

/// Fills `buf` from the kernel's CSPRNG (never blocks once the pool is initialized,
/// which it is long before a VMM runs).
fn getrandom(mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            buf = &mut buf[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// The virtio entropy device.
pub struct Rng {
    /// Gives its queue back when it stops.
    worker: Option<Worker<ActiveQueue>>,
}

impl Rng {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Rng {
        Rng { worker: None }
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop();
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_RNG as u16
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // virtio-rng has no configuration space.
        data.fill(0);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.stop_worker();
        let [mut queue] = take_queues(activation.queues)?;
        let (mem, interrupt) = (activation.memory, activation.interrupt);
        self.worker = Some(Worker::spawn(
            crate::confine::ThreadKind::VirtioRng,
            move |stop| {
                let mut log = ErrorLog::new("virtio-rng");
                let served = run_single_queue(
                    stop,
                    mem,
                    &mut queue,
                    &*interrupt,
                    &mut log,
                    |mem, chain, log| {
                        fill_chain(mem, chain).unwrap_or_else(|e| {
                            log.report(e);
                            0
                        })
                    },
                );
                if let Err(e) = served {
                    eprintln!("vmm: virtio-rng: worker stopped: {e}");
                }
                queue
            },
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn save_state(&self) -> Result<DeviceState, String> {
        Ok(DeviceState::Rng)
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), String> {
        match state {
            DeviceState::Rng => Ok(()),
            _ => Err("the saved device is not an entropy device".into()),
        }
    }

    fn pause(&mut self) -> Result<PausedQueues, String> {
        let Some(worker) = self.worker.take() else {
            return Ok(Vec::new());
        };
        let active = worker.pause().ok_or("the worker thread panicked")?;
        Ok(vec![(active.index, active.queue)])
    }
}

impl Drop for Rng {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::device::ActiveQueue;
    use crate::virtio::test_util::{desc, CountingInterrupt, TestQueue, R, W};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn buffers_are_filled_across_descriptors() {
        let t = TestQueue::new();
        t.add_chain(&[desc(0x10000, 100, W), desc(0x20000, 28, W)]);
        assert_eq!(fill_chain(t.mem, t.pop().unwrap()).unwrap(), 128);
        let a = t.read(0x10000, 100);
        let b = t.read(0x20000, 28);
        // 128 random bytes are all zero with probability 2^-1024.
        assert!(a.iter().chain(&b).any(|&x| x != 0));
    }

    #[test]
    fn huge_requests_get_a_bounded_fill() {
        let t = TestQueue::new();
        t.add_chain(&[desc(0x10000, 1 << 20, W)]);
        assert_eq!(
            fill_chain(t.mem, t.pop().unwrap()).unwrap(),
            MAX_FILL as u32
        );
    }

    #[test]
    fn readable_or_outside_buffers_get_nothing() {
        let t = TestQueue::new();
        t.add_chain(&[desc(0x10000, 16, R)]);
        assert!(matches!(
            fill_chain(t.mem, t.pop().unwrap()),
            Err(RngError::Chain(ChainError::UnexpectedReadable { .. }))
        ));
        t.add_chain(&[desc(t.mem_size() - 8, 16, W)]);
        assert!(matches!(
            fill_chain(t.mem, t.pop().unwrap()),
            Err(RngError::Chain(ChainError::OutsideMemory { .. }))
        ));
        assert_eq!(t.read(t.mem_size() - 8, 8), vec![0; 8]);
    }

    #[test]
    fn the_worker_answers_kicks() {
        let mut rng = Rng::new();
        let t = TestQueue::new();
        let irq = Arc::new(CountingInterrupt::default());
        let kick = EventFd::new(EFD_NONBLOCK).unwrap();
        rng.activate(Activation {
            memory: t.mem.clone(),
            queues: vec![ActiveQueue {
                index: 0,
                queue: t.queue(),
                kick: kick.try_clone().unwrap(),
            }],
            interrupt: irq.clone(),
            features: rng.features(),
        })
        .unwrap();
        t.add_chain(&[desc(0x10000, 32, W)]);
        kick.write(1).unwrap();
        irq.wait_for("entropy", || irq.queue_count(0) >= 1);
        assert_eq!(t.used(0), (0, 32));
        rng.reset();
        assert!(rng.worker.is_none());
    }
}
