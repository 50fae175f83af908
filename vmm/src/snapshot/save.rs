//! A save, on the main thread of a running machine: every vCPU parked, the devices
//! settled and read, then the vCPUs', the VM's in-kernel devices' and memory's state
//! written. The caller then ends the VM, or lets it go on with [`resume`].

use super::{devices, file, memory, MachineState, PauseGate, Shape, SnapshotError, VmState};
use crate::devices::platform::Platform;
use crate::pci::PciBus;
use crate::vstate::vm::Vm;
use std::fs::File;
use std::sync::Mutex;
use std::time::Duration;

/// How long the vCPUs get to leave KVM_RUN, and to read their state.
const PAUSE_LIMIT: Duration = Duration::from_secs(5);

/// What a save needs of the running machine.
pub struct Running<'a> {
    pub vm: &'a Vm,
    pub gate: &'a PauseGate,
    pub vcpu_count: usize,
    /// Interrupts every vCPU's KVM_RUN.
    pub kick: &'a dyn Fn(),
    pub pci: &'a Mutex<PciBus>,
    pub platform: &'a Mutex<Platform>,
    pub shape: &'a Shape,
    pub guest_cpuid: &'a str,
}

/// Write the machine's state into `to` (truncated first). Returns the file's
/// length. The vCPUs are parked and the devices paused when this returns, whether
/// it succeeded or not, unless it refused before stopping anything.
pub fn save(machine: &Running, to: &File) -> Result<u64, SnapshotError> {
    // A guest's own guests (nested SVM/VMX state) are not saved: refused, not lost.
    if machine.shape.nested_virtualization {
        return Err(SnapshotError::Mismatch(
            "a machine with nested virtualization cannot be saved (its guests' state would be lost)"
                .into(),
        ));
    }
    devices::check_savable(&machine.pci.lock().expect("PCI bus lock"))
        .map_err(|e| SnapshotError::Devices(e.to_string()))?;
    machine
        .gate
        .pause(machine.vcpu_count, machine.kick, PAUSE_LIMIT)
        .map_err(SnapshotError::Vcpu)?;
    // Devices settle before the vCPUs are read: a request they complete now raises
    // its interrupt in a LAPIC, which the vCPU state must then hold.
    let devices = {
        let pci = machine.pci.lock().expect("PCI bus lock");
        let platform = machine.platform.lock().expect("platform lock");
        devices::save(&pci, &platform).map_err(|e| SnapshotError::Devices(e.to_string()))?
    };
    let vcpus = machine
        .gate
        .capture(machine.vcpu_count, PAUSE_LIMIT)
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
        devices,
        memory: image,
    };
    Ok(file::finish(to, memory_end, &state)?)
}

/// After a save (done or failed): the devices and vCPUs go on where they stood.
pub fn resume(machine: &Running) -> Result<(), SnapshotError> {
    let resumed = devices::resume(&machine.pci.lock().expect("PCI bus lock"));
    machine.gate.release();
    resumed.map_err(|e| SnapshotError::Devices(e.to_string()))
}
