//! Thin owners of KVM objects: the VM and its vCPUs.

pub mod interrupts;
pub mod vcpu;
pub mod vm;
