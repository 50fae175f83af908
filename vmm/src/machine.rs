//! A built machine ([`crate::builder::build`]) and its run: the sockets served, one
//! thread per vCPU, and the wait for the guest to power off, reset or crash, the time
//! limit, or the host's stop.

use crate::builder::RunOptions;
use crate::confine::{Seccomp, ThreadKind};
use crate::console::Clients;
use crate::control::{AfterSave, Request, StateFile};
use crate::devices::platform::Platform;
use crate::error::VmmError;
use crate::exit::ExitReason;
use crate::layout::ACPI_GED_IRQ;
use crate::memory::GuestMemory;
use crate::pci::PciBus;
use crate::snapshot::save::Running;
use crate::snapshot::{PauseGate, Shape};
use crate::stats::RunStats;
use crate::virtio::block::DiskHealth;
use crate::vstate::vcpu::{VcpuRunner, VmEvent};
use crate::vstate::vm::Vm;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A machine ready to run: it owns the VM and with it guest memory (kernel, tables
/// and boot data loaded), the vCPUs (created, registers set, not running), the
/// devices, and the channel the vCPUs will report the VM's end on.
pub struct Machine {
    pub(crate) vm: Arc<Vm>,
    pub(crate) vcpus: Vec<VcpuRunner>,
    pub(crate) pci: Arc<Mutex<PciBus>>,
    pub(crate) platform: Arc<Mutex<Platform>>,
    pub(crate) console_clients: Clients,
    /// Set to ask every vCPU thread to return.
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) events: mpsc::Receiver<VmEvent>,
    /// Each disk's health: `status` tells of a disk full, `resume` retries.
    pub(crate) disks: Vec<Arc<DiskHealth>>,
    pub(crate) options: RunOptions,
    /// Parks the vCPUs for a save.
    pub(crate) gate: Arc<PauseGate>,
    /// What a saved state of this machine must match.
    pub(crate) shape: Shape,
    pub(crate) guest_cpuid: String,
}

enum Ending {
    Event(VmEvent),
    Timeout,
    HardStop,
    /// Saved on request (`save stop`).
    Saved,
}

impl Machine {
    pub fn memory(&self) -> &GuestMemory {
        self.vm.memory()
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// Serve the sockets, start the vCPUs and run until the VM ends.
    ///
    /// A vCPU thread that does not leave KVM_RUN when told to keeps its own share of
    /// the VM, and so guest memory stays mapped under it after this returns (the
    /// process exits soon after); no other part of the machine needs to outlive it.
    pub fn run(self) -> Result<(ExitReason, RunStats), VmmError> {
        let Machine {
            vm,
            vcpus,
            pci,
            platform,
            console_clients,
            stop,
            events,
            disks,
            options,
            gate,
            shape,
            guest_cpuid,
        } = self;
        // Filters are compiled before any thread that serves the guest starts.
        if options.seccomp != Seccomp::Off {
            crate::confine::prepare()?;
        }
        // Sockets first: once a vCPU runs, nothing may fail without stopping it.
        if let Some(path) = &options.console_socket {
            crate::console::serve(path, console_clients, Arc::clone(&platform))?;
        }
        let (control_tx, control_rx) = mpsc::channel();
        if let Some(path) = &options.control_socket {
            crate::control::serve(path, control_tx)?;
        }

        let threads = start_vcpus(vcpus, &stop)?;
        if options.seccomp == Seccomp::WholeProcess {
            if let Err(e) = crate::confine::enter(ThreadKind::Main) {
                stop_vcpus(&stop, &threads);
                return Err(e.into());
            }
        }
        let vcpu_count = threads.len();
        let kick = || kick_all(&threads);
        let running = Running {
            vm: &vm,
            gate: &gate,
            vcpu_count,
            kick: &kick,
            pci: &pci,
            platform: &platform,
            shape: &shape,
            guest_cpuid: &guest_cpuid,
        };
        let ending = wait_for_end(
            &running,
            &platform,
            &events,
            &control_rx,
            &disks,
            options.timeout,
        );
        stop_vcpus(&stop, &threads);
        // Parked vCPUs (a save that ends the VM) see the stop once let go.
        gate.release();
        let stats = crate::stats::measure(vm.memory());
        if !threads.iter().all(|t| t.is_finished()) {
            return Err(VmmError::Guest(
                "a vCPU did not stop within 5 s of the VM's end".into(),
            ));
        }
        for thread in threads {
            let _ = thread.join();
        }
        // Stop the device workers now rather than whenever the last reference goes
        // (the console thread keeps the platform, and so the bus, for good).
        pci.lock().expect("PCI bus lock").detach_all();

        for path in [&options.control_socket, &options.console_socket]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(path);
        }
        let exit = match ending {
            Ending::Timeout => ExitReason::Timeout,
            Ending::HardStop => ExitReason::HardStop,
            Ending::Saved => ExitReason::Saved,
            Ending::Event(VmEvent::Poweroff) => ExitReason::Poweroff,
            Ending::Event(VmEvent::Reboot) => ExitReason::Reboot,
            Ending::Event(VmEvent::Crash(detail)) => ExitReason::Crash(detail),
            Ending::Event(VmEvent::Error(detail)) => return Err(VmmError::Guest(detail)),
        };
        Ok((exit, stats))
    }
}

/// One thread per vCPU. If one cannot be started, those already running are stopped.
fn start_vcpus(vcpus: Vec<VcpuRunner>, stop: &AtomicBool) -> Result<Vec<JoinHandle<()>>, VmmError> {
    install_kick_handler();
    let mut threads = Vec::with_capacity(vcpus.len());
    for runner in vcpus {
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{}", runner.index))
            .spawn(move || {
                crate::confine::enter_or_exit(ThreadKind::Vcpu);
                runner.run()
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                stop_vcpus(stop, &threads);
                return Err(e.into());
            }
        }
    }
    Ok(threads)
}

/// Wait for a vCPU's report, the time limit or a hard stop, answering control
/// requests meanwhile.
fn wait_for_end(
    running: &Running,
    platform: &Mutex<Platform>,
    events: &mpsc::Receiver<VmEvent>,
    control: &mpsc::Receiver<crate::control::Envelope>,
    disks: &[Arc<DiskHealth>],
    timeout: Option<Duration>,
) -> Ending {
    let vm = running.vm;
    let started = Instant::now();
    let mut hard_stop_at = None;
    // Paused by `save pause`, until `continue`.
    let mut held = false;
    loop {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(event) => return Ending::Event(event),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Ending::Event(VmEvent::Error("every vCPU thread ended".into()))
            }
        }
        let now = Instant::now();
        if timeout.is_some_and(|limit| now - started >= limit) {
            return Ending::Timeout;
        }
        if hard_stop_at.is_some_and(|at| now >= at) {
            return Ending::HardStop;
        }
        while let Ok((request, reply)) = control.try_recv() {
            let answer = match request {
                Request::Status => status_line(disks),
                Request::Resume => {
                    disks.iter().for_each(|d| d.resume());
                    "ok".to_string()
                }
                // The parser keeps grace to a day; still, an overflowing clock must
                // be an answer, not a panic of the whole VMM.
                Request::Stop { grace } => match now.checked_add(grace) {
                    Some(at) => {
                        press_power_button(vm, platform);
                        hard_stop_at.get_or_insert(at);
                        "ok".to_string()
                    }
                    None => format!("error: a stop grace of {} s is too long", grace.as_secs()),
                },
                Request::Kill => {
                    hard_stop_at = Some(now);
                    "ok".to_string()
                }
                Request::Save { then, to } => match answer_save(running, then, to, &mut held) {
                    Some(answer) => answer,
                    None => {
                        let _ = reply.send("ok".into());
                        return Ending::Saved;
                    }
                },
                Request::Continue if held => {
                    held = false;
                    match crate::snapshot::save::resume(running) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("error: the machine did not go on: {e}"),
                    }
                }
                Request::Continue => "error: the machine is not paused by a save".to_string(),
            };
            let _ = reply.send(answer);
        }
    }
}

/// The answer to a `save`; None when the VMM is to end (`save stop` done). `held`
/// says whether a `save pause` holds the guest.
fn answer_save(
    running: &Running,
    then: AfterSave,
    to: Option<StateFile>,
    held: &mut bool,
) -> Option<String> {
    let Some(StateFile(file)) = to else {
        return Some("error: save needs a file".into());
    };
    if *held {
        return Some("error: the machine is paused by a save; send continue first".into());
    }
    let saved = crate::snapshot::save::save(running, &file);
    Some(match (saved, then) {
        (Ok(_), AfterSave::Stop) => {
            eprintln!("vmm: state saved; exiting");
            return None;
        }
        (Ok(_), AfterSave::Pause) => {
            *held = true;
            "ok".to_string()
        }
        (Ok(_), AfterSave::Continue) => match crate::snapshot::save::resume(running) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: saved, but the machine did not go on: {e}"),
        },
        (Err(e), _) => {
            let _ = crate::snapshot::save::resume(running);
            format!("error: saving the machine: {e}")
        }
    })
}

/// `running`, and each disk whose I/O waits for space: `running; paused: disk full
/// on PATH (N free)`.
pub fn status_line(disks: &[Arc<DiskHealth>]) -> String {
    let mut line = "running".to_string();
    for paused in disks.iter().filter_map(|d| d.paused()) {
        line.push_str("; paused: ");
        line.push_str(&paused);
    }
    line
}

/// The ACPI power button: latch the event in the GED and pulse its interrupt line;
/// the guest's `_EVT` method reads the latch and notifies the power button device.
fn press_power_button(vm: &Vm, platform: &Mutex<Platform>) {
    platform
        .lock()
        .expect("platform lock")
        .acpi_pm
        .press_power_button();
    let _ = vm.fd.set_irq_line(ACPI_GED_IRQ, true);
    let _ = vm.fd.set_irq_line(ACPI_GED_IRQ, false);
}

/// Interrupt every vCPU thread's KVM_RUN once.
fn kick_all(threads: &[JoinHandle<()>]) {
    for thread in threads.iter().filter(|t| !t.is_finished()) {
        // SAFETY: the pthread handle belongs to a thread we own and have not joined.
        unsafe {
            libc::pthread_kill(thread.as_pthread_t(), kick_signal());
        }
    }
}

/// Stop every vCPU: set the flag, then interrupt KVM_RUN until each thread is out
/// (or 5 s pass).
fn stop_vcpus(stop: &AtomicBool, threads: &[JoinHandle<()>]) {
    stop.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(5);
    for thread in threads {
        while !thread.is_finished() && Instant::now() < deadline {
            // SAFETY: the pthread handle belongs to a thread we own and have not joined.
            unsafe {
                libc::pthread_kill(thread.as_pthread_t(), kick_signal());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

/// The kick signal only needs to interrupt KVM_RUN; its handler does nothing.
fn install_kick_handler() {
    extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), noop);
}
