//! virtio-fs (device type 26): a host folder the guest mounts with
//! `mount -t virtiofs TAG DIR`. The VMM only presents the device (identity,
//! features, the tag in config space) and passes its queues to virtiofsd over
//! vhost-user; virtiofsd reads the guest's FUSE requests from guest memory and
//! writes the replies there itself.
//!
//! Queue 0 is the high-priority queue (FUSE_INTERRUPT and friends), queue 1 the one
//! request queue.

use super::connection::{Connection, Ring, VhostUserError, REPLY_LIMIT};
use super::relay::Relay;
use crate::config::FsConfig;
use crate::memory::GuestMemory;
use crate::virtio::config_space;
use crate::virtio::device::{ActivateError, Activation, VirtioDevice};
use crate::virtio::worker::{clear_kick, Worker};
use std::io;
use std::time::Duration;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_FS;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::QueueT;
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
}

/// The device as the driver set it up.
struct Active {
    queues: Vec<usize>,
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
        })
    }

    fn start(&mut self, activation: Activation) -> Result<(), ActivateError> {
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
        let queues: Vec<usize> = rings.iter().map(|r| r.index).collect();
        let backend = self.connection.watch_handle()?;
        if let Err(e) = self.connection.start(activation.features, &rings) {
            // Rings set up before the failure must not run without a relay; on a lost
            // connection this fails at once, and there is nothing left to stop.
            let _ = self.connection.stop(&queues);
            return Err(io::Error::other(format!("{}: {e}", self.name)).into());
        }
        let calls = queues
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
        self.active = Some(Active { queues, relay });
        Ok(())
    }

    fn stop(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        if let Err(e) = self.connection.stop(&active.queues) {
            eprintln!("vmm: {}: stopping the backend's queues: {e}", self.name);
        }
        active.relay.stop();
        // A signal the relay did not pass on belongs to the old queues.
        for call in &self.calls {
            clear_kick(call);
        }
    }
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

    fn save_state(&self) -> Result<crate::virtio::DeviceState, String> {
        // The queues could be handed to a new virtiofsd, but not the inodes and open
        // files the guest holds in the old one.
        Err("shared folders cannot be saved yet".into())
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            active.relay.stop();
        }
    }
}
