//! One vCPU's whole architectural state as KVM holds it, read on the vCPU's own thread
//! while it is out of KVM_RUN, and written back into a new vCPU before it first runs.

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
};
use kvm_ioctls::{Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

/// At most this many MSRs are saved per vCPU: KVM lists a few hundred; more in a
/// state file is not one of ours.
pub const MAX_MSRS: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    /// FPU, SSE and AVX state (the legacy 4 KiB XSAVE area).
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub mp_state: kvm_mp_state,
    /// Pending exceptions, interrupts, NMIs and the interrupt shadow.
    pub events: kvm_vcpu_events,
    /// Every MSR KVM saves for migration, the TSC among them.
    pub msrs: Vec<MsrValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsrValue {
    pub index: u32,
    pub data: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM read {read} of {wanted} MSRs (MSR {index:#x} failed)")]
    MsrRead {
        read: usize,
        wanted: usize,
        index: u32,
    },
    #[error("KVM refused to set MSR {index:#x} ({set} of {wanted} set)")]
    MsrWrite {
        set: usize,
        wanted: usize,
        index: u32,
    },
    #[error("{0} MSRs is more than a vCPU has (at most {MAX_MSRS})")]
    TooManyMsrs(usize),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuStateError {
    move |source| VcpuStateError::Kvm { what, source }
}

/// The MSRs a saved vCPU carries: those KVM lists for save and restore, less those
/// this vCPU cannot read (KVM lists MSRs of features the guest's CPUID may lack).
/// Probed once on a vCPU of the machine, before anything is confined.
pub fn saved_msrs(system: &Kvm, vcpu: &VcpuFd) -> Result<Vec<u32>, VcpuStateError> {
    let listed = system
        .get_msr_index_list()
        .map_err(kvm("KVM_GET_MSR_INDEX_LIST"))?;
    let mut readable = Vec::new();
    let mut rest: Vec<u32> = listed.as_slice().to_vec();
    // KVM_GET_MSRS stops at the first MSR it cannot read and says how many it read:
    // keep those, drop the one that failed, go on after it.
    while !rest.is_empty() {
        let read = read_msrs(vcpu, &rest)?.len();
        readable.extend_from_slice(&rest[..read]);
        rest.drain(..(read + 1).min(rest.len()));
    }
    Ok(readable)
}

/// The values of `indices`, as many as KVM reads before one fails.
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<MsrValue>, VcpuStateError> {
    let entries: Vec<kvm_msr_entry> = indices
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut msrs =
        Msrs::from_entries(&entries).map_err(|_| VcpuStateError::TooManyMsrs(indices.len()))?;
    let read = vcpu.get_msrs(&mut msrs).map_err(kvm("KVM_GET_MSRS"))?;
    Ok(msrs.as_slice()[..read]
        .iter()
        .map(|e| MsrValue {
            index: e.index,
            data: e.data,
        })
        .collect())
}

impl VcpuState {
    /// Read everything of `vcpu`, which must be out of KVM_RUN (on its own thread).
    pub fn capture(vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, VcpuStateError> {
        // Pending events first: reading them does not change them, and the rest of
        // the state is then what goes with them.
        let events = vcpu.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?;
        let msrs = read_msrs(vcpu, msr_indices)?;
        if msrs.len() != msr_indices.len() {
            return Err(VcpuStateError::MsrRead {
                read: msrs.len(),
                wanted: msr_indices.len(),
                index: msr_indices[msrs.len()],
            });
        }
        Ok(VcpuState {
            mp_state: vcpu.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
            regs: vcpu.get_regs().map_err(kvm("KVM_GET_REGS"))?,
            sregs: vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
            xsave: vcpu.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
            xcrs: vcpu.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?,
            debugregs: vcpu.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
            lapic: vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
            events,
            msrs,
        })
    }

    /// Write the state into `vcpu`, whose CPUID is set and which has not run. The
    /// order matters to KVM: special registers (APIC base) before the LAPIC, the
    /// LAPIC before the MSRs that depend on its mode (TSC deadline), events last.
    pub fn apply(&self, vcpu: &VcpuFd) -> Result<(), VcpuStateError> {
        if self.msrs.len() > MAX_MSRS {
            return Err(VcpuStateError::TooManyMsrs(self.msrs.len()));
        }
        vcpu.set_mp_state(self.mp_state)
            .map_err(kvm("KVM_SET_MP_STATE"))?;
        vcpu.set_regs(&self.regs).map_err(kvm("KVM_SET_REGS"))?;
        vcpu.set_sregs(&self.sregs).map_err(kvm("KVM_SET_SREGS"))?;
        // SAFETY: a kvm_xsave is the legacy 4 KiB area KVM_SET_XSAVE reads; KVM
        // checks its contents against the vCPU's CPUID.
        unsafe { vcpu.set_xsave(&self.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
        vcpu.set_xcrs(&self.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
        vcpu.set_debug_regs(&self.debugregs)
            .map_err(kvm("KVM_SET_DEBUGREGS"))?;
        vcpu.set_lapic(&self.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
        let entries: Vec<kvm_msr_entry> = self
            .msrs
            .iter()
            .map(|m| kvm_msr_entry {
                index: m.index,
                data: m.data,
                ..Default::default()
            })
            .collect();
        let msrs =
            Msrs::from_entries(&entries).map_err(|_| VcpuStateError::TooManyMsrs(entries.len()))?;
        let set = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if set != entries.len() {
            return Err(VcpuStateError::MsrWrite {
                set,
                wanted: entries.len(),
                index: entries[set].index,
            });
        }
        vcpu.set_vcpu_events(&self.events)
            .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
        Ok(())
    }
}
