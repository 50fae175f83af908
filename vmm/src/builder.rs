//! The one place a machine is wired together from its [`MachineConfig`]: guest memory,
//! the KVM VM, ACPI tables, the kernel, devices and vCPUs, all set up and nothing
//! running. [`build`] returns the [`Machine`]; [`Machine::run`] runs it.
//!
//! Keeping the two apart leaves room between them: a machine restored from a saved
//! state ([`restore`]) is built the same way, then has its vCPU and VM state loaded
//! before it runs.

use crate::acpi::{create_acpi_tables, AcpiConfig};
use crate::arch::cpuid::{self, CpuidMask};
use crate::arch::regs::{self, EntryMode};
use crate::boot::{load_kernel, BootConfig, BootProtocol, BootSetup};
use crate::config::MachineConfig;
use crate::console::{Clients, ConsoleOutput};
use crate::devices::acpi_pm::AcpiPmDevice;
use crate::devices::i8042::I8042;
use crate::devices::mmio_bus::MmioBus;
use crate::devices::platform::Platform;
use crate::devices::rtc::Rtc;
use crate::devices::serial::SerialPort;
use crate::error::VmmError;
use crate::exit::ExitReason;
use crate::exit_counts::MachineExits;
use crate::layout::{COM1_IRQ, PCI_ECAM_SIZE, PCI_ECAM_START, PCI_MMIO32_SIZE, PCI_MMIO32_START};
use crate::machine::Machine;
use crate::memory::{create_guest_memory_in, Backing, GuestMemory};
use crate::pci::{BarAllocator, HostBridge, PciBus, PciConfigIo, PciEcam};
use crate::snapshot::{self, MachineState, PauseGate, Shape, SnapshotError};
use crate::stats::RunStats;
use crate::virtio::block::{Block, DiskHealth};
use crate::virtio::net::Net;
use crate::virtio::rng::Rng;
use crate::virtio::vhost_user;
use crate::virtio::virtio_pci::{self, VirtioPciFunction};
use crate::virtio::VirtioDevice;
use crate::vstate::coalesced::CoalescedRing;
use crate::vstate::interrupts::GsiRouter;
use crate::vstate::vcpu::VcpuRunner;
use crate::vstate::vm::Vm;
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
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
    /// Which threads run under their seccomp allow-list (see [`crate::confine`]).
    pub seccomp: crate::confine::Seccomp,
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
    build(config, options)?.run()
}

/// Everything of `config` created and set up: memory with the kernel, initrd and ACPI
/// tables in it, the VM, the devices, and vCPUs with their boot registers, not yet
/// running. `options` holds what the vCPUs are set up with (CPUID) and how the run
/// will be bounded and served.
pub fn build(config: &MachineConfig, options: &RunOptions) -> Result<Machine, VmmError> {
    config.validate()?;
    let memory = create_guest_memory_in(config.memory, backing_for(config)).map_err(|e| {
        VmmError::Memory {
            size: config.memory,
            detail: e.to_string(),
        }
    })?;
    let parts = assemble(config, memory)?;
    let mem = parts.vm.memory();
    let cpus = u8::try_from(config.cpus).expect("validated: 1 to 255");
    let rsdp = create_acpi_tables(mem, &AcpiConfig { cpus })?;
    let boot = load_kernel(
        mem,
        &BootConfig {
            kernel: &config.kernel,
            initrd: config.initrd.as_deref(),
            cmdline: &config.cmdline,
            rsdp,
        },
    )?;
    finish(config, options, parts, Some(&boot))
}

/// The machine saved in `state`, built as [`build`] builds `config` but around guest
/// memory mapped from the file, with every vCPU's and the VM's state written back:
/// ready to run on from where it was saved. A state that does not fit this hvbox,
/// host or machine is refused with the reason before anything runs.
pub fn restore(
    config: &MachineConfig,
    options: &RunOptions,
    state_file: &File,
) -> Result<Machine, VmmError> {
    config.validate()?;
    let state: MachineState = snapshot::file::read(state_file).map_err(SnapshotError::from)?;
    state.check_fits(&Shape::of(config), None)?;
    let file_len = state_file.metadata()?.len();
    snapshot::memory::check_layout(
        &state.memory,
        config.memory,
        snapshot::file::MEMORY_START,
        file_len,
    )
    .map_err(SnapshotError::from)?;
    let memory = snapshot::memory::restore(
        state_file,
        &state.memory,
        backing_for(config),
        config.memory,
    )
    .map_err(SnapshotError::from)?;
    let parts = assemble(config, memory)?;
    state.vm.apply(&parts.vm.fd).map_err(SnapshotError::from)?;
    let machine = finish(config, options, parts, None)?;
    state.check_fits(&machine.shape, Some(&machine.guest_cpuid))?;
    for (runner, saved) in machine.vcpus.iter().zip(&state.vcpus) {
        saved
            .apply(&runner.fd)
            .map_err(|source| SnapshotError::VcpuState {
                index: usize::from(runner.index),
                source,
            })?;
    }
    // Restored devices start their workers now: the filters they install as they
    // start must exist already, or they would run unconfined.
    if options.seccomp != crate::confine::Seccomp::Off {
        crate::confine::prepare()?;
    }
    // Last: restored devices start serving at once, and an interrupt they raise must
    // land in the LAPICs as restored, not be overwritten by them.
    snapshot::devices::restore(
        &mut machine.pci.lock().expect("PCI bus lock"),
        &mut machine.platform.lock().expect("platform lock"),
        &state.devices,
    )
    .map_err(|e| SnapshotError::Devices(e.to_string()))?;
    Ok(machine)
}

/// vhost-user backends map guest RAM themselves.
fn backing_for(config: &MachineConfig) -> Backing {
    match config.filesystems.is_empty() {
        true => Backing::Anonymous,
        false => Backing::SharedMemfd,
    }
}

/// What a built and a restored machine share: the VM around `memory`, its devices
/// and platform.
struct Parts {
    vm: Arc<Vm>,
    mmio: Arc<MmioBus>,
    pci: Arc<Mutex<PciBus>>,
    disks: Vec<Arc<DiskHealth>>,
    platform: Arc<Mutex<Platform>>,
    console_clients: Clients,
}

fn assemble(config: &MachineConfig, memory: GuestMemory) -> Result<Parts, VmmError> {
    let vm = Arc::new(Vm::new(memory)?);
    let mmio = Arc::new(MmioBus::new());
    let (pci, disks) = create_pci_devices(config, vm.memory(), &vm, &mmio)?;
    let console_clients = Clients::default();
    let platform = create_platform(config, &vm, &pci, &console_clients)?;
    Ok(Parts {
        vm,
        mmio,
        pci,
        disks,
        platform,
        console_clients,
    })
}

/// The vCPUs (with boot registers when `boot` is given) and the machine around them.
fn finish(
    config: &MachineConfig,
    options: &RunOptions,
    parts: Parts,
    boot: Option<&BootSetup>,
) -> Result<Machine, VmmError> {
    let Parts {
        vm,
        mmio,
        pci,
        disks,
        platform,
        console_clients,
    } = parts;
    let cpus = u8::try_from(config.cpus).expect("validated: 1 to 255");
    let supported = vm
        .kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| VmmError::Kvm {
            what: "KVM_GET_SUPPORTED_CPUID",
            source,
        })?;
    let stop = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(PauseGate::default());
    let (wake, events) = mpsc::channel();
    let mut vcpus = Vec::with_capacity(usize::from(cpus));
    let mut guest_cpuid = String::new();
    let mut msrs = Arc::new(Vec::new());
    let mut exits = MachineExits::default();
    let mut serial_ring = None;
    for index in 0..cpus {
        let (fd, cpuid) = create_vcpu(config, options, &vm, &supported, (index, cpus), boot)?;
        if index == 0 {
            serial_ring = CoalescedRing::for_serial(&vm.kvm, &vm.fd, &fd).map(Arc::new);
            exits.serial_ring = serial_ring.clone();
            guest_cpuid = snapshot::cpuid_digest(&cpuid);
            // Probed before anything is confined: the vCPU threads read them at a save.
            msrs = Arc::new(snapshot::vcpu::saved_msrs(&vm.kvm, &fd).map_err(|e| {
                SnapshotError::VcpuState {
                    index: 0,
                    source: e,
                }
            })?);
        }
        vcpus.push(VcpuRunner {
            index,
            fd,
            vm: Arc::clone(&vm),
            platform: Arc::clone(&platform),
            mmio: Arc::clone(&mmio),
            stop: Arc::clone(&stop),
            events: wake.clone(),
            gate: Arc::clone(&gate),
            msrs: Arc::clone(&msrs),
            exits: exits.add_vcpu(),
            serial_ring: serial_ring.clone(),
        });
    }
    Ok(Machine {
        vm,
        vcpus,
        pci,
        platform,
        console_clients,
        stop,
        events,
        wake,
        disks,
        options: options.clone(),
        // Opened now: the confined VMM opens nothing once the guest runs.
        status_file: std::fs::File::open("/proc/self/status").ok(),
        gate,
        shape: Shape::of(config),
        guest_cpuid,
        exits,
        serial_ring,
    })
}

/// vCPU `index`: its CPUID (topology, masks), MSRs, FPU and LAPIC, and on the boot
/// vCPU the registers the boot protocol enters the kernel with (none for a restored
/// machine, whose registers come from its state). Also the CPUID it was given.
fn create_vcpu(
    config: &MachineConfig,
    options: &RunOptions,
    vm: &Vm,
    supported: &CpuId,
    (index, cpus): (u8, u8),
    boot: Option<&BootSetup>,
) -> Result<(kvm_ioctls::VcpuFd, CpuId), VmmError> {
    let kvm = |what: &'static str| move |source| VmmError::Kvm { what, source };
    let mut cpuid = supported.clone();
    let fd = vm
        .fd
        .create_vcpu(u64::from(index))
        .map_err(kvm("KVM_CREATE_VCPU"))?;
    let mask = CpuidMask {
        no_nested: !config.nested_virtualization,
        ..options.cpuid_mask
    };
    cpuid::configure(&mut cpuid, index, cpus, mask);
    if vm.kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
        cpuid::offer_tsc_deadline(&mut cpuid);
    }
    fd.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
    let setup = || -> Result<(), regs::RegsError> {
        regs::setup_msrs(&fd)?;
        regs::setup_fpu(&fd)?;
        regs::setup_lapic(&fd)?;
        if let (0, Some(boot)) = (index, boot) {
            let mode = match boot.protocol {
                BootProtocol::LinuxBoot64 => EntryMode::Long64 {
                    boot_params: boot.boot_info.0,
                },
                BootProtocol::Pvh => EntryMode::Protected32 {
                    start_info: boot.boot_info.0,
                },
            };
            regs::setup_boot_vcpu(&fd, vm.memory(), boot.entry, mode)?;
        }
        Ok(())
    };
    setup().map_err(|source| VmmError::Vcpu { index, source })?;
    Ok((fd, cpuid))
}

/// The port-I/O devices: COM1 (to the serial log and console clients), the i8042
/// reset line, the CMOS clock, ACPI sleep and power button registers, and PCI
/// configuration mechanism #1.
fn create_platform(
    config: &MachineConfig,
    vm: &Vm,
    pci: &Arc<Mutex<PciBus>>,
    console_clients: &Clients,
) -> Result<Arc<Mutex<Platform>>, VmmError> {
    let serial_irq = EventFd::new(EFD_NONBLOCK)?;
    vm.fd
        .register_irqfd(&serial_irq, COM1_IRQ)
        .map_err(|source| VmmError::Kvm {
            what: "KVM_IRQFD for COM1",
            source,
        })?;
    let serial_log: Box<dyn std::io::Write + Send> = match &config.serial_log {
        // Bounded however much the guest prints; rotated in place, as the confined
        // vCPU thread that writes it may not open or rename files.
        Some(path) => Box::new(
            crate::log_rotation::RotatingLog::open_in_place(path, crate::log_rotation::LOG_LIMIT)
                .map_err(|source| VmmError::SerialLog {
                path: path.clone(),
                source,
            })?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let serial_out = Box::new(ConsoleOutput {
        log: serial_log,
        clients: Arc::clone(console_clients),
    });
    Ok(Arc::new(Mutex::new(Platform {
        serial: SerialPort::new(serial_irq, serial_out),
        i8042: I8042,
        rtc: Rtc::default(),
        acpi_pm: AcpiPmDevice::new(),
        pci: PciConfigIo::new(Arc::clone(pci)),
    })))
}

/// The PCI bus, and each disk's health.
type PciDevices = (Arc<Mutex<PciBus>>, Vec<Arc<DiskHealth>>);

/// The PCI side of the machine: the host bridge at 00:00.0, ECAM on the MMIO bus,
/// then one virtio-pci function per disk (in order), per NIC, per filesystem, and an
/// entropy device, each in the next slot with its BAR next in the 32-bit MMIO window.
/// Also each disk's health, for the control socket.
fn create_pci_devices(
    config: &MachineConfig,
    mem: &GuestMemory,
    vm: &Vm,
    mmio: &Arc<MmioBus>,
) -> Result<PciDevices, VmmError> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    let mut disks = Vec::new();
    for disk in &config.disks {
        let block = Block::new(&disk.path, disk.read_only).map_err(|source| VmmError::Disk {
            path: disk.path.clone(),
            source,
        })?;
        disks.push(block.health());
        devices.push(Box::new(block));
    }
    for nic in &config.nics {
        let net =
            Net::new(nic.mac.bytes(), nic.backend.clone()).map_err(|source| VmmError::Nic {
                mac: nic.mac,
                source,
            })?;
        devices.push(Box::new(net));
    }
    for fs in &config.filesystems {
        let device = vhost_user::Fs::new(fs, mem).map_err(|source| VmmError::Filesystem {
            tag: fs.tag.clone(),
            socket: fs.socket.clone(),
            source,
        })?;
        devices.push(Box::new(device));
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
    Ok((bus, disks))
}
