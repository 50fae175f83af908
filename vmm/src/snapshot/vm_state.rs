//! The VM-wide state KVM emulates in the kernel: the two PICs, the IOAPIC, the PIT,
//! and the KVM clock the guest's kvmclock reads.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct VmStateError {
    what: &'static str,
    source: kvm_ioctls::Error,
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmStateError {
    move |source| VmStateError { what, source }
}

fn chip(vm: &VmFd, chip_id: u32, what: &'static str) -> Result<kvm_irqchip, VmStateError> {
    let mut irqchip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut irqchip).map_err(kvm(what))?;
    Ok(irqchip)
}

impl VmState {
    /// Read with every vCPU out of KVM_RUN.
    pub fn capture(vm: &VmFd) -> Result<VmState, VmStateError> {
        Ok(VmState {
            pic_master: chip(vm, KVM_IRQCHIP_PIC_MASTER, "KVM_GET_IRQCHIP (PIC master)")?,
            pic_slave: chip(vm, KVM_IRQCHIP_PIC_SLAVE, "KVM_GET_IRQCHIP (PIC slave)")?,
            ioapic: chip(vm, KVM_IRQCHIP_IOAPIC, "KVM_GET_IRQCHIP (IOAPIC)")?,
            pit: vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?,
            clock: vm.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
        })
    }

    /// Write into a new VM whose irqchip and PIT exist. The chip ids are ours, not
    /// the file's: a state cannot make one chip's registers land in another.
    pub fn apply(&self, vm: &VmFd) -> Result<(), VmStateError> {
        let chips = [
            (
                &self.pic_master,
                KVM_IRQCHIP_PIC_MASTER,
                "KVM_SET_IRQCHIP (PIC master)",
            ),
            (
                &self.pic_slave,
                KVM_IRQCHIP_PIC_SLAVE,
                "KVM_SET_IRQCHIP (PIC slave)",
            ),
            (&self.ioapic, KVM_IRQCHIP_IOAPIC, "KVM_SET_IRQCHIP (IOAPIC)"),
        ];
        for (state, chip_id, what) in chips {
            let irqchip = kvm_irqchip { chip_id, ..*state };
            vm.set_irqchip(&irqchip).map_err(kvm(what))?;
        }
        vm.set_pit2(&self.pit).map_err(kvm("KVM_SET_PIT2"))?;
        // Only the clock's value is set: the flags KVM_GET_CLOCK reports (TSC stable,
        // realtime) describe the old host's clock, not a request.
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        vm.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))
    }
}
