//! Virtio 1.x devices and their PCI transport.

pub mod block;
pub mod chain;
mod config_space;
pub mod device;
pub mod msix;
pub mod net;
mod net_backend;
pub mod pci_common;
pub mod pci_interrupt;
pub mod rng;
pub mod vhost_user;
pub mod virtio_pci;
pub mod worker;

#[cfg(test)]
mod test_util;

pub use block::Block;
pub use device::{
    ActivateError, Activation, ActiveQueue, DeviceState, VirtioDevice, VirtioInterrupt,
};
pub use net::{Net, NetBackend};
pub use rng::Rng;
pub use virtio_pci::VirtioPciFunction;
