//! Virtio 1.x devices and their PCI transport.

pub mod device;

pub use device::{ActivateError, Activation, ActiveQueue, VirtioDevice, VirtioInterrupt};
