//! A built machine ([`crate::builder::build`]) and its run: the sockets served, one
//! thread per vCPU, and the wait for the guest to power off, reset or crash, the time
//! limit, or the host's stop. The main thread sleeps on one channel ([`Wake`]) until
//! something happens or the nearest deadline: it never polls.

use crate::builder::RunOptions;
use crate::confine::{Seccomp, ThreadKind};
use crate::console::Clients;
use crate::control::{AfterSave, Envelope, Request, StateFile};
use crate::devices::platform::Platform;
use crate::error::VmmError;
use crate::exit::ExitReason;
use crate::exit_counts::MachineExits;
use crate::layout::ACPI_GED_IRQ;
use crate::memory::GuestMemory;
use crate::pci::PciBus;
use crate::snapshot::save::Running;
use crate::snapshot::{PauseGate, Shape};
use crate::stats::RunStats;
use crate::virtio::block::DiskHealth;
use crate::vstate::coalesced::{drain_until_stopped, CoalescedRing, SharedRing};
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
    /// What the main thread waits on; the vCPUs hold its senders.
    pub(crate) events: mpsc::Receiver<Wake>,
    pub(crate) wake: mpsc::Sender<Wake>,
    /// Each disk's health: `status` tells of a disk full, `resume` retries.
    pub(crate) disks: Vec<Arc<DiskHealth>>,
    pub(crate) options: RunOptions,
    /// Parks the vCPUs for a save.
    pub(crate) gate: Arc<PauseGate>,
    /// What a saved state of this machine must match.
    pub(crate) shape: Shape,
    pub(crate) guest_cpuid: String,
    /// /proc/self/status, for the run's peak memory ([`crate::stats`]).
    pub(crate) status_file: Option<std::fs::File>,
    /// Every vCPU's exits by reason: `stats` on the control socket, and the run's
    /// [`RunStats`].
    pub(crate) exits: MachineExits,
    /// COM1's data-port writes queued by KVM, when it can queue them.
    pub(crate) serial_ring: SharedRing,
}

/// What wakes the main thread while the machine runs.
pub enum Wake {
    /// A vCPU saw the VM end.
    Vm(VmEvent),
    /// A vCPU thread returned, or panicked and unwound (`hvbox-vmm`'s panic hook
    /// ends the whole process first); sent by the thread itself as it goes.
    VcpuEnded,
    /// A request from the control socket.
    Control(Envelope),
}

impl From<Envelope> for Wake {
    fn from(envelope: Envelope) -> Wake {
        Wake::Control(envelope)
    }
}

/// Sends [`Wake::VcpuEnded`] when its vCPU thread ends, however it ends.
struct EndNotice(mpsc::Sender<Wake>);

impl Drop for EndNotice {
    fn drop(&mut self) {
        let _ = self.0.send(Wake::VcpuEnded);
    }
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
            wake,
            disks,
            options,
            gate,
            shape,
            guest_cpuid,
            status_file,
            exits,
            serial_ring,
        } = self;
        // Filters are compiled before any thread that serves the guest starts.
        if options.seccomp != Seccomp::Off {
            crate::confine::prepare()?;
        }
        // Sockets first: once a vCPU runs, nothing may fail without stopping it.
        if let Some(path) = &options.console_socket {
            crate::console::serve(path, console_clients, Arc::clone(&platform))?;
        }
        if let Some(path) = &options.control_socket {
            crate::control::serve(path, wake.clone())?;
        }
        // Only the vCPUs' and the control socket's senders remain.
        drop(wake);

        let drainer = match &serial_ring {
            Some(ring) => Some(start_drainer(Arc::clone(ring), Arc::clone(&platform))?),
            None => None,
        };
        let mut ended = 0;
        let threads = match start_vcpus(vcpus, &stop, &events, &mut ended) {
            Ok(threads) => threads,
            Err(e) => {
                if let Some(drainer) = drainer {
                    drainer.finish();
                }
                return Err(e);
            }
        };
        if options.seccomp == Seccomp::WholeProcess {
            if let Err(e) = crate::confine::enter(ThreadKind::Main) {
                stop_vcpus(&stop, &threads, &events, &mut ended);
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
            &mut ended,
            &disks,
            &exits,
            options.timeout,
        );
        stop.store(true, Ordering::Release);
        // Parked vCPUs (a save that ends the VM) see the stop once let go.
        gate.release();
        stop_vcpus(&stop, &threads, &events, &mut ended);
        // The vCPUs are out of the guest: the drainer's last round takes all it wrote.
        if let Some(drainer) = drainer {
            drainer.finish();
        }
        let stats = crate::stats::measure(vm.memory(), status_file.as_ref(), exits.summary());
        if ended < threads.len() {
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

/// The thread that empties the serial ring ([`crate::vstate::coalesced`]).
struct Drainer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Drainer {
    /// Stop it after one last drain, at once rather than after its pause.
    fn finish(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

fn start_drainer(
    ring: Arc<CoalescedRing>,
    platform: Arc<Mutex<Platform>>,
) -> Result<Drainer, VmmError> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_for_thread = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("serial-drain".into())
        .spawn(move || {
            // It does what a vCPU does with the port: the vCPUs' list allows it.
            crate::confine::enter_or_exit(ThreadKind::Vcpu);
            drain_until_stopped(&ring, &platform, &stop_for_thread)
        })?;
    Ok(Drainer { stop, thread })
}

/// One thread per vCPU. If one cannot be started, those already running are stopped.
fn start_vcpus(
    vcpus: Vec<VcpuRunner>,
    stop: &AtomicBool,
    events: &mpsc::Receiver<Wake>,
    ended: &mut usize,
) -> Result<Vec<JoinHandle<()>>, VmmError> {
    install_kick_handler();
    let mut threads = Vec::with_capacity(vcpus.len());
    for runner in vcpus {
        let notice = EndNotice(runner.events.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{}", runner.index))
            .spawn(move || {
                let _notice = notice;
                crate::confine::enter_or_exit(ThreadKind::Vcpu);
                runner.run()
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                stop_vcpus(stop, &threads, events, ended);
                return Err(e.into());
            }
        }
    }
    Ok(threads)
}

/// Wait for a vCPU's report, the time limit or a hard stop, answering control
/// requests meanwhile. `ended` counts the vCPU threads seen to end.
fn wait_for_end(
    running: &Running,
    platform: &Mutex<Platform>,
    events: &mpsc::Receiver<Wake>,
    ended: &mut usize,
    disks: &[Arc<DiskHealth>],
    exits: &MachineExits,
    timeout: Option<Duration>,
) -> Ending {
    let vm = running.vm;
    let time_limit = timeout.and_then(|limit| Instant::now().checked_add(limit));
    let mut hard_stop_at: Option<Instant> = None;
    // Paused by `save pause`, until `continue`.
    let mut held = false;
    loop {
        // Checked on every wake, not only when the wait runs out: a stream of control
        // requests must not put a hard stop or the time limit off.
        let now = Instant::now();
        if hard_stop_at.is_some_and(|at| now >= at) {
            return Ending::HardStop;
        }
        if time_limit.is_some_and(|at| now >= at) {
            return Ending::Timeout;
        }
        // Asleep until something is sent or the nearest deadline passes.
        let deadline = match (time_limit, hard_stop_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let woken = match deadline {
            Some(at) => events.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => events
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        let (request, reply) = match woken {
            Ok(Wake::Vm(event)) => return Ending::Event(event),
            Ok(Wake::VcpuEnded) => {
                *ended += 1;
                if *ended == running.vcpu_count {
                    return Ending::Event(VmEvent::Error("every vCPU thread ended".into()));
                }
                continue;
            }
            Ok(Wake::Control(envelope)) => envelope,
            // Every sender gone cannot happen while vCPU threads run; treat it as their end.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Ending::Event(VmEvent::Error("every vCPU thread ended".into()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
        };
        {
            let answer = match request {
                Request::Status => status_line(disks),
                Request::Stats => exits.summary().to_string(),
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

/// Stop every vCPU: set the flag, then interrupt KVM_RUN until each thread has said
/// it ended (or 5 s pass). A kick can land just before a thread enters KVM_RUN and be
/// lost, so the unfinished are kicked again each millisecond without a notice;
/// each notice wakes this at once. Anything else that arrives now is dropped (a
/// control client then hears that the VMM did not answer).
fn stop_vcpus(
    stop: &AtomicBool,
    threads: &[JoinHandle<()>],
    events: &mpsc::Receiver<Wake>,
    ended: &mut usize,
) {
    stop.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(5);
    while *ended < threads.len() {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        kick_all(threads);
        match events.recv_timeout(Duration::from_millis(1).min(deadline - now)) {
            Ok(Wake::VcpuEnded) => *ended += 1,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
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
