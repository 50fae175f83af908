//! The one place a machine is wired together: memory, KVM VM, ACPI tables, kernel,
//! devices and vCPU threads; then the run until an [`ExitReason`].

use crate::acpi::{create_acpi_tables, AcpiConfig};
use crate::arch::cpuid::{self, CpuidMask};
use crate::arch::regs::{self, EntryMode};
use crate::boot::{load_kernel, BootConfig, BootProtocol};
use crate::config::{parse_mac, MachineConfig};
use crate::console::{Clients, ConsoleOutput};
use crate::control::Request;
use crate::devices::acpi_pm::AcpiPmDevice;
use crate::devices::i8042::I8042;
use crate::devices::mmio_bus::{MmioBus, MmioBusError};
use crate::devices::platform::Platform;
use crate::devices::rtc::Rtc;
use crate::devices::serial::SerialPort;
use crate::exit::ExitReason;
use crate::layout::{
    ACPI_GED_IRQ, COM1_IRQ, PCI_ECAM_SIZE, PCI_ECAM_START, PCI_MMIO32_SIZE, PCI_MMIO32_START,
};
use crate::memory::{create_guest_memory, GuestMemory};
use crate::pci::{BarAllocator, HostBridge, PciBus, PciConfigIo, PciEcam, PciError};
use crate::stats::RunStats;
use crate::virtio::block::Block;
use crate::virtio::net::Net;
use crate::virtio::rng::Rng;
use crate::virtio::virtio_pci::{self, VirtioPciError, VirtioPciFunction};
use crate::virtio::VirtioDevice;
use crate::vstate::interrupts::GsiRouter;
use crate::vstate::vcpu::{VcpuRunner, VmEvent};
use crate::vstate::vm::Vm;
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// How a run is bounded and what the vCPUs report, beyond the machine itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop the guest after this long (exit reason `Timeout`).
    pub timeout: Option<Duration>,
    pub cpuid_mask: CpuidMask,
    /// Serve status/stop/kill requests here (see [`crate::control`]).
    pub control_socket: Option<PathBuf>,
    /// Serve the serial console here (see [`crate::console`]).
    pub console_socket: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("invalid machine config: {0}")]
    Config(String),
    #[error("allocating {size} bytes of guest memory: {detail}")]
    Memory { size: u64, detail: String },
    #[error(transparent)]
    Vm(#[from] crate::vstate::vm::VmError),
    #[error("building ACPI tables: {0}")]
    Acpi(#[from] crate::acpi::AcpiError),
    #[error("loading the kernel: {0}")]
    Boot(#[from] crate::boot::BootError),
    #[error("setting up vCPU {index}: {source}")]
    Vcpu {
        index: u8,
        source: crate::arch::regs::RegsError,
    },
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("opening the serial log {path}: {source}")]
    SerialLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("disk {}: {source}", path.display())]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("NIC {mac}: {source}")]
    Nic { mac: String, source: std::io::Error },
    #[error(transparent)]
    VirtioPci(#[from] VirtioPciError),
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("the PCI ECAM window: {0}")]
    Ecam(#[from] MmioBusError),
    #[error("the PCI MMIO window has no room for the BARs of {0} devices")]
    MmioWindowFull(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The guest hit something KVM or the VMM could not handle.
    #[error("{0}")]
    Guest(String),
}

/// Boot `config` and run it until the guest powers off, resets, crashes, or the
/// time limit passes.
pub fn run(config: &MachineConfig, options: &RunOptions) -> Result<ExitReason, VmmError> {
    run_with_stats(config, options).map(|(exit, _)| exit)
}

/// [`run`], also reporting what the run cost in memory.
pub fn run_with_stats(
    config: &MachineConfig,
    options: &RunOptions,
) -> Result<(ExitReason, RunStats), VmmError> {
    let cpus = u8::try_from(config.cpus)
        .ok()
        .filter(|&c| c >= 1)
        .ok_or_else(|| VmmError::Config(format!("cpus must be 1 to 255, got {}", config.cpus)))?;
    let mem = create_guest_memory(config.memory).map_err(|e| VmmError::Memory {
        size: config.memory,
        detail: e.to_string(),
    })?;
    let vm = Vm::new(&mem)?;
    let mmio = Arc::new(MmioBus::new());
    let pci = create_pci_devices(config, &mem, &vm, &mmio)?;

    let rsdp = create_acpi_tables(&mem, &AcpiConfig { cpus })?;
    let boot = load_kernel(
        &mem,
        &BootConfig {
            kernel: &config.kernel,
            initrd: config.initrd.as_deref(),
            cmdline: &config.cmdline,
            rsdp,
            ram_size: config.memory,
        },
    )?;
    let mode = match boot.protocol {
        BootProtocol::LinuxBoot64 => EntryMode::Long64 {
            boot_params: boot.boot_info.0,
        },
        BootProtocol::Pvh => EntryMode::Protected32 {
            start_info: boot.boot_info.0,
        },
    };

    let serial_irq = EventFd::new(EFD_NONBLOCK)?;
    vm.fd
        .register_irqfd(&serial_irq, COM1_IRQ)
        .map_err(|source| VmmError::Kvm {
            what: "KVM_IRQFD for COM1",
            source,
        })?;
    let serial_log: Box<dyn std::io::Write + Send> = match &config.serial_log {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| VmmError::SerialLog {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let console_clients = Clients::default();
    let serial_out = Box::new(ConsoleOutput {
        log: serial_log,
        clients: Arc::clone(&console_clients),
    });
    let platform = Arc::new(Mutex::new(Platform {
        serial: SerialPort::new(serial_irq, serial_out),
        i8042: I8042,
        rtc: Rtc::default(),
        acpi_pm: AcpiPmDevice::new(),
        pci: PciConfigIo::new(Arc::clone(&pci)),
    }));

    let supported = vm
        .kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| VmmError::Kvm {
            what: "KVM_GET_SUPPORTED_CPUID",
            source,
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events_rx) = mpsc::channel();
    let mut runners = Vec::new();
    for index in 0..cpus {
        let fd = vm
            .fd
            .create_vcpu(u64::from(index))
            .map_err(|source| VmmError::Kvm {
                what: "KVM_CREATE_VCPU",
                source,
            })?;
        let mut cpuid = supported.clone();
        let mask = CpuidMask {
            no_nested: !config.nested_virtualization,
            ..options.cpuid_mask
        };
        cpuid::configure(&mut cpuid, index, cpus, mask);
        fd.set_cpuid2(&cpuid).map_err(|source| VmmError::Kvm {
            what: "KVM_SET_CPUID2",
            source,
        })?;
        let setup = |fd: &kvm_ioctls::VcpuFd| -> Result<(), regs::RegsError> {
            regs::setup_msrs(fd)?;
            regs::setup_fpu(fd)?;
            regs::setup_lapic(fd)?;
            if index == 0 {
                regs::setup_boot_vcpu(fd, &mem, boot.entry, mode)?;
            }
            Ok(())
        };
        setup(&fd).map_err(|source| VmmError::Vcpu { index, source })?;
        runners.push(VcpuRunner {
            index,
            fd,
            platform: Arc::clone(&platform),
            mmio: Arc::clone(&mmio),
            stop: Arc::clone(&stop),
            events: events_tx.clone(),
        });
    }
    drop(events_tx);

    // Sockets first: once a vCPU runs, nothing may fail without stopping it.
    if let Some(path) = &options.console_socket {
        crate::console::serve(path, console_clients, Arc::clone(&platform))?;
    }
    let (control_tx, control_rx) = mpsc::channel();
    if let Some(path) = &options.control_socket {
        crate::control::serve(path, control_tx)?;
    }

    install_kick_handler();
    let mut threads = Vec::new();
    for runner in runners {
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu{}", runner.index))
            .spawn(move || runner.run());
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                stop_vcpus(&stop, &threads);
                if !threads.iter().all(|t| t.is_finished()) {
                    // A vCPU still running may touch guest memory: never unmap it.
                    std::mem::forget(mem);
                    std::mem::forget(vm);
                }
                return Err(e.into());
            }
        }
    }

    let started = Instant::now();
    let mut hard_stop_at = None;
    let ending = loop {
        match events_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(event) => break Ending::Event(event),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Ending::Event(VmEvent::Error("every vCPU thread ended".into()))
            }
        }
        let now = Instant::now();
        if options.timeout.is_some_and(|limit| now - started >= limit) {
            break Ending::Timeout;
        }
        if hard_stop_at.is_some_and(|at| now >= at) {
            break Ending::HardStop;
        }
        while let Ok((request, reply)) = control_rx.try_recv() {
            let answer = match request {
                Request::Status => "running".to_string(),
                Request::Stop { grace } => {
                    press_power_button(&vm, &platform);
                    hard_stop_at.get_or_insert(now + grace);
                    "ok".to_string()
                }
                Request::Kill => {
                    hard_stop_at = Some(now);
                    "ok".to_string()
                }
            };
            let _ = reply.send(answer);
        }
    };

    stop_vcpus(&stop, &threads);
    let stats = crate::stats::measure(&mem);
    if threads.iter().all(|t| t.is_finished()) {
        for thread in threads {
            let _ = thread.join();
        }
        // Stop the device workers now rather than whenever the last reference goes
        // (the console thread keeps the platform, and so the bus, for good).
        pci.lock().expect("PCI bus lock").detach_all();
    } else {
        // A vCPU still inside KVM_RUN may touch guest memory: leak it rather than
        // unmap it under the guest. The process exits right after anyway.
        std::mem::forget(mem);
        std::mem::forget(vm);
        return Err(VmmError::Guest(
            "a vCPU did not stop within 5 s of the VM's end".into(),
        ));
    }

    for path in [&options.control_socket, &options.console_socket]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_file(path);
    }
    let exit = match ending {
        Ending::Timeout => ExitReason::Timeout,
        Ending::HardStop => ExitReason::HardStop,
        Ending::Event(VmEvent::Poweroff) => ExitReason::Poweroff,
        Ending::Event(VmEvent::Reboot) => ExitReason::Reboot,
        Ending::Event(VmEvent::Crash(detail)) => ExitReason::Crash(detail),
        Ending::Event(VmEvent::Error(detail)) => return Err(VmmError::Guest(detail)),
    };
    Ok((exit, stats))
}

/// The PCI side of the machine: the host bridge at 00:00.0, ECAM on the MMIO bus,
/// then one virtio-pci function per disk (in order), per NIC, and an entropy
/// device, each in the next slot with its BAR next in the 32-bit MMIO window.
fn create_pci_devices(
    config: &MachineConfig,
    mem: &GuestMemory,
    vm: &Vm,
    mmio: &Arc<MmioBus>,
) -> Result<Arc<Mutex<PciBus>>, VmmError> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for disk in &config.disks {
        let block = Block::new(&disk.path, disk.read_only).map_err(|source| VmmError::Disk {
            path: disk.path.clone(),
            source,
        })?;
        devices.push(Box::new(block));
    }
    for nic in &config.nics {
        let mac = parse_mac(&nic.mac).map_err(VmmError::Config)?;
        let net = Net::new(mac, nic.backend.clone()).map_err(|source| VmmError::Nic {
            mac: nic.mac.clone(),
            source,
        })?;
        devices.push(Box::new(net));
    }
    devices.push(Box::new(Rng::new()));

    let bus = Arc::new(Mutex::new(PciBus::new(mmio)));
    mmio.insert(
        PCI_ECAM_START.0,
        PCI_ECAM_SIZE,
        Arc::new(PciEcam::new(Arc::clone(&bus))),
    )?;
    let router = Arc::new(GsiRouter::new(vm.fd.clone()));
    let mut bars = BarAllocator::new(PCI_MMIO32_START, PCI_MMIO32_SIZE);
    let count = devices.len();
    let mut locked = bus.lock().expect("PCI bus lock");
    locked.add(Arc::new(Mutex::new(HostBridge::new())))?;
    for device in devices {
        let bar = bars
            .allocate(virtio_pci::BAR_SIZE)
            .ok_or(VmmError::MmioWindowFull(count))?;
        let function = VirtioPciFunction::new(device, bar, mem.clone(), &router)?;
        locked.add(Arc::new(Mutex::new(function)))?;
    }
    drop(locked);
    Ok(bus)
}

enum Ending {
    Event(VmEvent),
    Timeout,
    HardStop,
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

/// Stop every vCPU: set the flag, then interrupt KVM_RUN until each thread is out
/// (or 5 s pass).
fn stop_vcpus(stop: &AtomicBool, threads: &[std::thread::JoinHandle<()>]) {
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
