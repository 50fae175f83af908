//! A save, on the main thread of a running machine: every vCPU parked, the VM's
//! in-kernel devices read, memory and state written. The caller lets the vCPUs go
//! on ([`PauseGate::release`]) or ends the VM.

use super::{file, memory, MachineState, PauseGate, Shape, SnapshotError, VmState};
use crate::vstate::vm::Vm;
use std::fs::File;
use std::time::Duration;

/// How long the vCPUs get to leave KVM_RUN and read their state.
const PAUSE_LIMIT: Duration = Duration::from_secs(5);

/// What a save needs of the running machine.
pub struct Running<'a> {
    pub vm: &'a Vm,
    pub gate: &'a PauseGate,
    pub vcpu_count: usize,
    /// Interrupts every vCPU's KVM_RUN.
    pub kick: &'a dyn Fn(),
    pub shape: &'a Shape,
    pub guest_cpuid: &'a str,
}

/// Write the machine's state into `to` (truncated first); the vCPUs are parked
/// when this returns, whether it succeeded or not (the caller releases them).
/// Returns the file's length.
pub fn save(machine: &Running, to: &File) -> Result<u64, SnapshotError> {
    // A guest's own guests (nested SVM/VMX state) are not saved: refused, not lost.
    if machine.shape.nested_virtualization {
        return Err(SnapshotError::Mismatch(
            "a machine with nested virtualization cannot be saved (its guests' state would be lost)"
                .into(),
        ));
    }
    let vcpus = machine
        .gate
        .pause(machine.vcpu_count, machine.kick, PAUSE_LIMIT)
        .map_err(SnapshotError::Vcpu)?;
    let vm = VmState::capture(&machine.vm.fd)?;
    to.set_len(0)
        .map_err(|e| SnapshotError::File(file::StateFileError::Write(e)))?;
    let image = memory::write(machine.vm.memory(), to, file::MEMORY_START)?;
    let memory_end = image
        .regions
        .last()
        .map_or(file::MEMORY_START, |r| r.file_offset + r.len);
    let state = MachineState {
        hvbox_version: super::hvbox_version(),
        host_cpu: super::HostCpu::this_host(),
        guest_cpuid: machine.guest_cpuid.to_string(),
        shape: machine.shape.clone(),
        vcpus,
        vm,
        memory: image,
    };
    Ok(file::finish(to, memory_end, &state)?)
}
