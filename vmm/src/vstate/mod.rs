//! Thin owners of KVM objects: the VM and its vCPUs.

pub mod coalesced;
pub mod interrupts;
pub mod vcpu;
pub mod vm;
