//! virtio-fs (device type 26): a host folder the guest mounts with
//! `mount -t virtiofs TAG DIR`. The VMM only presents the device (identity,
//! features, the tag in config space) and passes its queues to virtiofsd over
//! vhost-user; virtiofsd reads the guest's FUSE requests from guest memory and
//! writes the replies there itself.
//!
//! Queue 0 is the high-priority queue (FUSE_INTERRUPT and friends), queue 1 the one
//! request queue.
//!
//! A snapshot stops the backend's rings without resetting it, waits for the answers
//! to what it took, and takes its state (the guest's inodes and open files, as
//! virtiofsd serializes them for migration); a restored machine's new virtiofsd is
//! given that state before its rings start where the old ones stopped, so the
//! guest's mount goes on working.

use super::connection::{Connection, Ring, VhostUserError, REPLY_LIMIT};
use super::relay::Relay;
use crate::config::FsConfig;
use crate::memory::GuestMemory;
use crate::virtio::config_space;
use crate::virtio::device::{ActivateError, Activation, DeviceState, PausedQueues, VirtioDevice};
use crate::virtio::worker::{clear_kick, Worker};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_FS;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The driver may make the queues smaller.
pub const QUEUE_SIZE: u16 = 1024;
const REQUEST_QUEUES: u32 = 1;
/// The high-priority queue and the request queues.
pub const QUEUES: usize = 1 + REQUEST_QUEUES as usize;
/// `struct virtio_fs_config`: tag[36], then num_request_queues (le32).
const TAG_LEN: usize = crate::config::FS_TAG_MAX;
const CONFIG_LEN: usize = TAG_LEN + 4;
/// What the device offers of the backend's virtio features. Ring features are
/// the backend's to implement (it walks the rings); the transport passes them on.
const PASSED_FEATURES: u64 =
    1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_RING_F_INDIRECT_DESC | 1 << VIRTIO_RING_F_EVENT_IDX;

/// A virtio-fs device in a snapshot: its tag, and the state of the virtiofsd that
/// served it (the guest's inodes and open files, as virtiofsd serializes them), to
/// hand to the new virtiofsd of the restored machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsState {
    pub tag: String,
    /// None when the device was not running (no FUSE session to carry over).
    pub backend: Option<Vec<u8>>,
}

pub struct Fs {
    /// `virtio-fs "TAG"`, for the log.
    name: String,
    connection: Connection,
    features: u64,
    config: [u8; CONFIG_LEN],
    /// Per queue, what the backend signals when it used buffers; the relay turns
    /// each signal into that queue's interrupt.
    calls: Vec<EventFd>,
    memory: GuestMemory,
    active: Option<Active>,
    tag: String,
    /// The backend's state, taken when the device paused for a snapshot.
    paused_backend: Option<Vec<u8>>,
}

/// The device as the driver set it up.
struct Active {
    /// The queues handed to the backend, as the driver set them up.
    queues: Vec<(u16, Queue)>,
    relay: Worker<()>,
}

impl Fs {
    /// Connects to the backend at `fs.socket`, negotiates and shares `memory` (which
    /// must be a shared memfd) with it.
    pub fn new(fs: &FsConfig, memory: &GuestMemory) -> Result<Fs, VhostUserError> {
        Fs::with_reply_limit(fs, memory, REPLY_LIMIT)
    }

    /// [`Fs::new`], with its own bound on how long the backend may take to answer.
    pub fn with_reply_limit(
        fs: &FsConfig,
        memory: &GuestMemory,
        limit: Duration,
    ) -> Result<Fs, VhostUserError> {
        let mut connection = Connection::connect(&fs.socket, QUEUES, limit)?;
        connection.set_mem_table(memory)?;
        let calls = (0..QUEUES)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<_>>()
            .map_err(VhostUserError::Connect)?;
        let mut config = [0u8; CONFIG_LEN];
        // Validated: at most TAG_LEN bytes; the rest stays NUL.
        config[..fs.tag.len()].copy_from_slice(fs.tag.as_bytes());
        config_space::put(&mut config, TAG_LEN, REQUEST_QUEUES.to_le_bytes());
        Ok(Fs {
            name: format!("virtio-fs {:?}", fs.tag),
            features: connection.features() & PASSED_FEATURES,
            connection,
            config,
            calls,
            memory: memory.clone(),
            active: None,
            tag: fs.tag.clone(),
            paused_backend: None,
        })
    }

    fn start(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.paused_backend = None;
        let mut rings = Vec::with_capacity(activation.queues.len());
        for active in &activation.queues {
            let index = usize::from(active.index);
            let queue = &active.queue;
            rings.push(Ring {
                index,
                size: queue.size(),
                base: queue.next_avail(),
                desc: host_address(&self.memory, queue.desc_table())?,
                avail: host_address(&self.memory, queue.avail_ring())?,
                used: host_address(&self.memory, queue.used_ring())?,
                kick: &active.kick,
                call: &self.calls[index],
            });
        }
        let indices: Vec<usize> = rings.iter().map(|r| r.index).collect();
        let backend = self.connection.watch_handle()?;
        let started = self.connection.start(activation.features, &rings);
        drop(rings);
        if let Err(e) = started {
            // Rings set up before the failure must not run without a relay; on a lost
            // connection this fails at once, and there is nothing left to stop.
            let _ = self.connection.stop(&indices);
            return Err(io::Error::other(format!("{}: {e}", self.name)).into());
        }
        let calls = indices
            .iter()
            .map(|&i| Ok((i as u16, self.calls[i].try_clone()?)))
            .collect::<io::Result<_>>()?;
        let relay = Relay {
            name: self.name.clone(),
            backend,
            lost: self.connection.lost_flag().clone(),
            calls,
            interrupt: activation.interrupt,
        }
        .spawn()?;
        let queues = activation
            .queues
            .into_iter()
            .map(|a| (a.index, a.queue))
            .collect();
        self.active = Some(Active { queues, relay });
        Ok(())
    }

    fn stop(&mut self) {
        self.paused_backend = None;
        let Some(active) = self.active.take() else {
            return;
        };
        let indices = ring_indices(&active.queues);
        if let Err(e) = self.connection.stop(&indices) {
            eprintln!("vmm: {}: stopping the backend's queues: {e}", self.name);
        }
        active.relay.stop();
        self.forget_calls();
    }

    /// A signal the relay did not pass on belongs to the old queues.
    fn forget_calls(&self) {
        for call in &self.calls {
            clear_kick(call);
        }
    }

    /// Stops the backend's rings keeping its session, waits until every request it
    /// took is answered, and takes its state. Returns the queues at their final
    /// indices.
    fn suspend(&mut self, active: Active) -> Result<PausedQueues, String> {
        let indices = ring_indices(&active.queues);
        let bases = self.connection.suspend(&indices);
        active.relay.stop();
        self.forget_calls();
        let bases = bases.map_err(|e| format!("stopping the backend's queues: {e}"))?;
        let mut paused = Vec::with_capacity(bases.len());
        for ((index, mut queue), base) in active.queues.into_iter().zip(bases) {
            // GET_VRING_BASE answers with the next available entry the backend would
            // have taken: it took all before it.
            let base = base as u16;
            self.wait_answered(index, &queue, base)?;
            queue.set_next_avail(base);
            queue.set_next_used(base);
            paused.push((index, queue));
        }
        self.paused_backend = Some(
            self.connection
                .save_state()
                .map_err(|e| format!("taking virtiofsd's state: {e}"))?,
        );
        Ok(paused)
    }

    /// Waits (at most the reply limit) until the backend has put every request up
    /// to `base` in the used ring: one it is still serving when its ring stops is
    /// finished on its own thread.
    fn wait_answered(&self, index: u16, queue: &Queue, base: u16) -> Result<(), String> {
        let deadline = Instant::now() + super::connection::REPLY_LIMIT;
        loop {
            let used = queue
                .used_idx(&self.memory, Ordering::Acquire)
                .map_err(|e| format!("queue {index}: reading the used ring: {e}"))?;
            if used.0 == base {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "queue {index}: virtiofsd took requests up to {base} but answered only up to {}",
                    used.0
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn ring_indices(queues: &[(u16, Queue)]) -> Vec<usize> {
    queues.iter().map(|(i, _)| usize::from(*i)).collect()
}

/// Where guest address `at` is mapped in the VMM (the transport checked that each
/// ring lies within guest RAM).
fn host_address(memory: &GuestMemory, at: u64) -> io::Result<u64> {
    memory
        .get_host_address(GuestAddress(at))
        .map(|p| p as u64)
        .map_err(|e| io::Error::other(format!("ring at {at:#x}: {e}")))
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_FS as u16
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; QUEUES]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        config_space::read(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The tag and the queue count are read-only.
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.stop();
        self.start(activation)
    }

    fn reset(&mut self) {
        self.stop();
    }

    fn can_save(&self) -> Result<(), String> {
        match self
            .connection
            .protocol_features()
            .contains(VhostUserProtocolFeatures::DEVICE_STATE)
        {
            true => Ok(()),
            false => Err(
                "this virtiofsd cannot hand over its state (virtiofsd 1.10 or later can)".into(),
            ),
        }
    }

    fn save_state(&self) -> Result<DeviceState, String> {
        if self.active.is_some() {
            return Err("the device is running: pause it first".into());
        }
        Ok(DeviceState::Fs(FsState {
            tag: self.tag.clone(),
            backend: self.paused_backend.clone(),
        }))
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), String> {
        let DeviceState::Fs(saved) = state else {
            return Err("the saved device is not a shared folder".into());
        };
        if saved.tag != self.tag {
            return Err(format!(
                "the shared folder was tagged {:?} when saved, {:?} now",
                saved.tag, self.tag
            ));
        }
        if let Some(backend) = &saved.backend {
            self.connection
                .load_state(backend)
                .map_err(|e| format!("giving virtiofsd the saved state: {e}"))?;
        }
        Ok(())
    }

    fn pause(&mut self) -> Result<PausedQueues, String> {
        match self.active.take() {
            Some(active) => self.suspend(active),
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            active.relay.stop();
        }
    }
}
