//! The KVM VM: memory slots, in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT.

use crate::memory::GuestMemory;
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use std::sync::Arc;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Three pages just below the 4 GiB boundary that Intel KVM needs for its TSS
/// (in the hole, never RAM).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("opening /dev/kvm: {0}")]
    OpenKvm(kvm_ioctls::Error),
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

pub struct Vm {
    pub kvm: Kvm,
    /// Shared with the devices that route interrupts and register doorbells.
    pub fd: Arc<VmFd>,
}

impl Vm {
    pub fn new(mem: &GuestMemory) -> Result<Vm, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let fd = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        for (slot, region) in mem.iter().enumerate() {
            let region_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mmap owned by `mem`, which outlives the VM
            // (the caller keeps both until the run ends), and slots do not overlap.
            unsafe { fd.set_user_memory_region(region_desc) }
                .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        fd.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(ioctl("KVM_CREATE_PIT2"))?;
        Ok(Vm {
            kvm,
            fd: Arc::new(fd),
        })
    }
}
