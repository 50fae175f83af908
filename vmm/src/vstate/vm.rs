//! The KVM VM: guest memory and its slots, in-kernel irqchip (PIC, IOAPIC, LAPICs)
//! and PIT.

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

/// A VM owns its guest memory: the memory slots KVM was given point into these
/// mappings, so they must stay mapped while anything may enter the guest. Only vCPU
/// threads do, and each holds the VM itself (an `Arc<Vm>`, see
/// [`crate::vstate::vcpu::VcpuRunner`]); so memory is unmapped only once no vCPU can
/// run, whatever order the rest of the machine goes in. (Device workers that read
/// and write guest memory hold clones of it, which share the mappings.)
pub struct Vm {
    pub kvm: Kvm,
    /// Shared with the devices that route interrupts and register doorbells.
    pub fd: Arc<VmFd>,
    /// Declared last: dropped after this Vm's handle on the fd.
    memory: GuestMemory,
}

impl Vm {
    pub fn new(memory: GuestMemory) -> Result<Vm, VmError> {
        let mem = &memory;
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
            // SAFETY: the region is a live mmap owned by `memory`, which this Vm keeps
            // (and unmaps only after closing the VM fd); slots do not overlap.
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
            memory,
        })
    }

    /// The guest RAM; clones share its mappings.
    pub fn memory(&self) -> &GuestMemory {
        &self.memory
    }
}
