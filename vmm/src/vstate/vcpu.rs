//! One thread per vCPU: run KVM_RUN, hand port I/O to the platform devices and MMIO
//! to the MMIO bus (PCI), turn terminal exits into a [`VmEvent`].

use crate::arch::regs;
use crate::devices::mmio_bus::MmioBus;
use crate::devices::platform::{Platform, PlatformEvent};
use crate::exit_counts::{ExitCounts, ExitKind};
use crate::snapshot::{PauseGate, VcpuState};
use crate::vstate::coalesced::SharedRing;
use crate::vstate::vm::Vm;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;
const KVM_SYSTEM_EVENT_CRASH: u32 = 3;

/// What ends a VM, as seen by one vCPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    Poweroff,
    Reboot,
    Crash(String),
    /// KVM or the VMM failed; the message holds the exit and the registers.
    Error(String),
}

/// One vCPU, created and set up; [`VcpuRunner::run`] on its own thread runs it.
pub struct VcpuRunner {
    pub index: u8,
    pub fd: VcpuFd,
    /// Keeps guest memory mapped while this vCPU may run, even when the rest of the
    /// machine is gone (a thread that did not stop when asked): the thread owns this
    /// runner, so the memory goes only when the thread ends. Declared after `fd`, so
    /// the vCPU is closed before its memory can be unmapped.
    pub vm: Arc<Vm>,
    pub platform: Arc<Mutex<Platform>>,
    pub mmio: Arc<MmioBus>,
    pub stop: Arc<AtomicBool>,
    /// Tells the main thread of the VM's end.
    pub events: Sender<crate::machine::Wake>,
    /// Where this vCPU parks with its state while the machine is saved.
    pub gate: Arc<PauseGate>,
    /// The MSRs a save reads (see [`crate::snapshot::vcpu::saved_msrs`]).
    pub msrs: Arc<Vec<u32>>,
    /// This vCPU's exits by reason.
    pub exits: Arc<ExitCounts>,
    /// COM1's queued data-port writes, drained before any port access.
    pub serial_ring: SharedRing,
}

impl VcpuRunner {
    /// Run until the VM ends or `stop` is set (the main thread then interrupts
    /// KVM_RUN with a signal).
    pub fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            if self.gate.requested() {
                // What the guest printed belongs before the state is saved.
                drain(
                    &self.serial_ring,
                    &mut self.platform.lock().expect("platform lock"),
                );
                let completed = self.complete_last_exit();
                let (fd, msrs) = (&self.fd, &self.msrs);
                let capture = || {
                    completed?;
                    VcpuState::capture(fd, msrs).map_err(|e| e.to_string())
                };
                self.gate.park(self.index, capture, &self.stop);
                continue;
            }
            if let Some(event) = self.step() {
                let _ = self.events.send(crate::machine::Wake::Vm(event));
                return;
            }
        }
    }

    /// Before a save reads this vCPU: an I/O or MMIO exit just handled is completed
    /// (a KVM_RUN that returns at once), as until then the value an IN read is not
    /// in its register.
    fn complete_last_exit(&mut self) -> Result<(), String> {
        self.fd.set_kvm_immediate_exit(1);
        let completed = self.fd.run().map(|_| ());
        self.fd.set_kvm_immediate_exit(0);
        match completed {
            Ok(()) => Ok(()),
            Err(e) if e.errno() == libc::EINTR => Ok(()),
            Err(e) => Err(format!("completing the last exit: {e}")),
        }
    }

    fn step(&mut self) -> Option<VmEvent> {
        let index = self.index;
        let exit = match self.fd.run() {
            Ok(exit) => exit,
            // Interrupted by the kick signal, or asked to retry.
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.exits.count(ExitKind::Intr);
                return None;
            }
            Err(e) => {
                return Some(VmEvent::Error(format!(
                    "vCPU {index}: KVM_RUN failed: {e}; {}",
                    regs::describe(&self.fd)
                )))
            }
        };
        // Faults are reported with the registers, read once `exit` no longer borrows
        // the vCPU.
        let fault = |crash: bool, msg: String| Outcome::Fault { crash, msg };
        let outcome = match exit {
            VcpuExit::IoIn(port, data) => {
                self.exits.count_port(port);
                let mut platform = self.platform.lock().expect("platform lock");
                drain(&self.serial_ring, &mut platform);
                platform.pio_read(port, data);
                Outcome::Continue
            }
            VcpuExit::IoOut(port, data) => {
                self.exits.count_port(port);
                let mut platform = self.platform.lock().expect("platform lock");
                drain(&self.serial_ring, &mut platform);
                let event = platform.pio_write(port, data);
                match event {
                    Some(PlatformEvent::Poweroff) => Outcome::Event(VmEvent::Poweroff),
                    Some(PlatformEvent::Reset) => Outcome::Event(VmEvent::Reboot),
                    None => Outcome::Continue,
                }
            }
            // Where no device answers, reads float high and writes are dropped.
            VcpuExit::MmioRead(addr, data) => {
                self.exits.count(ExitKind::of_mmio(addr));
                if !self.mmio.read(addr, data) {
                    data.fill(0xff);
                }
                Outcome::Continue
            }
            VcpuExit::MmioWrite(addr, data) => {
                self.exits.count(ExitKind::of_mmio(addr));
                self.mmio.write(addr, data);
                Outcome::Continue
            }
            VcpuExit::Hlt => {
                self.exits.count(ExitKind::Hlt);
                Outcome::Continue
            }
            VcpuExit::Intr => {
                self.exits.count(ExitKind::Intr);
                Outcome::Continue
            }
            VcpuExit::Shutdown => fault(true, format!("vCPU {index} triple-faulted (KVM_EXIT_SHUTDOWN)")),
            VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _) => Outcome::Event(VmEvent::Poweroff),
            VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _) => Outcome::Event(VmEvent::Reboot),
            VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_CRASH, _) => {
                fault(true, format!("vCPU {index} reported a crash"))
            }
            VcpuExit::SystemEvent(other, _) => {
                fault(false, format!("vCPU {index}: unknown KVM system event {other}"))
            }
            VcpuExit::FailEntry(reason, cpu) => fault(
                false,
                format!("vCPU {index}: KVM could not enter the guest (hardware reason {reason:#x}, cpu {cpu})"),
            ),
            VcpuExit::InternalError => fault(
                false,
                format!("vCPU {index}: KVM internal error (an instruction KVM could not emulate)"),
            ),
            other => {
                self.exits.count(ExitKind::Other);
                fault(false, format!("vCPU {index}: unexpected exit {other:?}"))
            }
        };
        match outcome {
            Outcome::Continue => None,
            Outcome::Event(event) => Some(event),
            Outcome::Fault { crash, msg } => {
                let msg = format!("{msg}; {}", regs::describe(&self.fd));
                Some(if crash {
                    VmEvent::Crash(msg)
                } else {
                    VmEvent::Error(msg)
                })
            }
        }
    }
}

/// Port writes queued in the ring go first: the guest made them first.
fn drain(ring: &SharedRing, platform: &mut Platform) {
    if let Some(ring) = ring {
        ring.drain(platform);
    }
}

enum Outcome {
    Continue,
    Event(VmEvent),
    Fault { crash: bool, msg: String },
}
