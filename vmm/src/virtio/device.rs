//! What a virtio device is to the PCI transport: its identity, features, config
//! space and queues. The transport (virtio_pci.rs) owns feature negotiation, queue
//! setup and interrupts; a device only serves its queues once activated.
//!
//! Devices serve their queues on a thread of their own (never on a vCPU thread): the
//! transport hands each queue's ioeventfd over at activation, and the device's
//! worker waits on those.

use crate::memory::GuestMemory;
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Arc;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

/// Raises the device's interrupts; implemented by the transport (MSI-X through
/// irqfds).
pub trait VirtioInterrupt: Send + Sync {
    /// Used buffers were added to queue `queue`.
    fn notify_queue(&self, queue: u16) -> io::Result<()>;
    /// The device's configuration space changed.
    fn notify_config(&self) -> io::Result<()>;
}

/// One queue the driver set up and enabled, ready to serve.
pub struct ActiveQueue {
    /// Index of the queue within the device.
    pub index: u16,
    pub queue: Queue,
    /// Signalled (ioeventfd) when the driver notifies this queue.
    pub kick: EventFd,
}

/// Everything a device needs to run after the driver set DRIVER_OK.
pub struct Activation {
    pub memory: GuestMemory,
    pub queues: Vec<ActiveQueue>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// Features the driver accepted (a subset of [`VirtioDevice::features`]).
    pub features: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver enabled {got} queues, the device needs {need}")]
    Queues { got: usize, need: usize },
    #[error("starting the device: {0}")]
    Io(#[from] io::Error),
}

/// A device's own state in a snapshot, beyond what the transport keeps (feature
/// negotiation, queues, interrupts). Restoring checks it against the device built
/// for the same machine: it says which device this was, and what the guest saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DeviceState {
    Block(super::block::BlockState),
    Net(super::net::NetState),
    Rng,
    Fs(super::vhost_user::fs::FsState),
}

/// The queues a paused device gives back, as its worker left them: (index, queue).
pub type PausedQueues = Vec<(u16, Queue)>;

pub trait VirtioDevice: Send {
    /// Virtio device ID (1 net, 2 block, 4 entropy).
    fn device_type(&self) -> u16;
    /// The maximum size of each queue, one entry per queue.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features offered, including VIRTIO_F_VERSION_1.
    fn features(&self) -> u64;
    /// Read the device-specific configuration space; bytes past its end read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes to read-only fields are ignored.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Start serving the queues.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Stop serving (the driver wrote 0 to device_status): stop the worker and return
    /// to the state before activation, so the driver can set the device up again.
    fn reset(&mut self);

    /// Whether a snapshot can hold this device, asked before anything pauses.
    fn can_save(&self) -> Result<(), String> {
        self.save_state().map(drop)
    }

    /// The device's own state for a snapshot (once paused); `Err` says why it
    /// cannot be saved.
    fn save_state(&self) -> Result<DeviceState, String> {
        Err("this device cannot be saved yet".into())
    }

    /// Takes on a saved state, checked against this device (freshly built for the
    /// same machine, not activated); `Err` names what differs.
    fn restore_state(&mut self, _state: &DeviceState) -> Result<(), String> {
        Err("this device cannot be restored".into())
    }

    /// Stops serving for a snapshot, the vCPUs already stopped: every chain taken
    /// from the queues is served (used ring updated) or given back (next_avail moved
    /// back), and the queues are returned as the worker left them. The device is
    /// then as before activation: [`VirtioDevice::activate`] with these queues
    /// continues where it stopped. An inactive device returns no queues.
    fn pause(&mut self) -> Result<PausedQueues, String> {
        Err("this device cannot be paused".into())
    }
}
