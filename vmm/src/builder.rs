//! The one place a machine is wired together: memory, KVM VM, ACPI tables, kernel,
//! devices and vCPU threads; then the run until an [`ExitReason`].

use crate::acpi::{create_acpi_tables, AcpiConfig};
use crate::arch::cpuid::{self, CpuidMask};
use crate::arch::regs::{self, EntryMode};
use crate::boot::{load_kernel, BootConfig, BootProtocol};
use crate::config::MachineConfig;
use crate::devices::acpi_pm::AcpiPmDevice;
use crate::devices::i8042::I8042;
use crate::devices::platform::Platform;
use crate::devices::rtc::Rtc;
use crate::devices::serial::SerialPort;
use crate::exit::ExitReason;
use crate::layout::COM1_IRQ;
use crate::memory::create_guest_memory;
use crate::vstate::vcpu::{VcpuRunner, VmEvent};
use crate::vstate::vm::Vm;
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use std::os::unix::thread::JoinHandleExt;
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
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The guest hit something KVM or the VMM could not handle.
    #[error("{0}")]
    Guest(String),
}

/// Boot `config` and run it until the guest powers off, resets, crashes, or the
/// time limit passes.
pub fn run(config: &MachineConfig, options: &RunOptions) -> Result<ExitReason, VmmError> {
    let cpus = u8::try_from(config.cpus)
        .ok()
        .filter(|&c| c >= 1)
        .ok_or_else(|| VmmError::Config(format!("cpus must be 1 to 255, got {}", config.cpus)))?;
    if !config.disks.is_empty() || !config.nics.is_empty() {
        return Err(VmmError::Config(
            "disks and NICs need virtio-pci, which this VMM does not provide yet".into(),
        ));
    }
    let mem = create_guest_memory(config.memory).map_err(|e| VmmError::Memory {
        size: config.memory,
        detail: e.to_string(),
    })?;
    let vm = Vm::new(&mem)?;

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
    let serial_out: Box<dyn std::io::Write + Send> = match &config.serial_log {
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
    let platform = Arc::new(Mutex::new(Platform {
        serial: SerialPort::new(serial_irq, serial_out),
        i8042: I8042,
        rtc: Rtc::default(),
        acpi_pm: AcpiPmDevice::new(),
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
        cpuid::configure(&mut cpuid, index, cpus, options.cpuid_mask);
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
            stop: Arc::clone(&stop),
            events: events_tx.clone(),
        });
    }
    drop(events_tx);

    install_kick_handler();
    let threads: Vec<_> = runners
        .into_iter()
        .map(|runner| {
            std::thread::Builder::new()
                .name(format!("vcpu{}", runner.index))
                .spawn(move || runner.run())
        })
        .collect::<Result<_, _>>()?;

    let event = match options.timeout {
        Some(limit) => events_rx.recv_timeout(limit).ok(),
        None => events_rx.recv().ok(),
    };

    // Stop every vCPU: set the flag, then interrupt KVM_RUN until each thread is out.
    stop.store(true, Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(5);
    for thread in &threads {
        while !thread.is_finished() && Instant::now() < deadline {
            // SAFETY: the pthread handle belongs to a thread we own and have not joined.
            unsafe {
                libc::pthread_kill(thread.as_pthread_t(), kick_signal());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if threads.iter().all(|t| t.is_finished()) {
        for thread in threads {
            let _ = thread.join();
        }
    } else {
        // A vCPU still inside KVM_RUN may touch guest memory: leak it rather than
        // unmap it under the guest. The process exits right after anyway.
        std::mem::forget(mem);
        std::mem::forget(vm);
        return Err(VmmError::Guest(
            "a vCPU did not stop within 5 s of the VM's end".into(),
        ));
    }

    match event {
        None => Ok(ExitReason::Timeout),
        Some(VmEvent::Poweroff) => Ok(ExitReason::Poweroff),
        Some(VmEvent::Reboot) => Ok(ExitReason::Reboot),
        Some(VmEvent::Crash(detail)) => Ok(ExitReason::Crash(detail)),
        Some(VmEvent::Error(detail)) => Err(VmmError::Guest(detail)),
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
