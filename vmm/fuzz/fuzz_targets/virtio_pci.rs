//! The virtio-pci transport as a guest driver sees it: PCI configuration space
//! through ECAM and the 0xCF8/0xCFC ports (capabilities, the MSI-X control word,
//! the VIRTIO_PCI_CAP_PCI_CFG window into BAR 0, the BAR itself), and BAR 0 on the
//! MMIO bus where the guest placed it (common configuration with feature and queue
//! selection, status changes that activate and reset the device, ISR, device
//! configuration, doorbells, the MSI-X table and pending bits). Every access is
//! at a fuzzed offset with a fuzzed size and value, behind a host bridge, on a
//! device with two queues that takes any activation.
//!
//! Checks: nothing panics (a bad access is the guest's problem, never the VMM's).
#![no_main]

use hvbox_vmm::devices::mmio_bus::MmioBus;
use hvbox_vmm::layout::PCI_ECAM_START;
use hvbox_vmm::pci::{HostBridge, PciBus, PciConfigIo, PciEcam, PciFunction};
use hvbox_vmm::virtio::device::{ActivateError, Activation, VirtioDevice};
use hvbox_vmm::virtio::virtio_pci::VirtioPciFunction;
use hvbox_vmm::vstate::interrupts::{GsiRoute, GsiRouter, VmInterrupts};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::io;
use std::sync::{Arc, Mutex};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// Where the VMM would place BAR 0 (the guest may move it).
const BAR_ADDR: u64 = 0xc000_0000;

struct NoVm;

impl VmInterrupts for NoVm {
    fn set_gsi_routing(&self, _: &[GsiRoute]) -> io::Result<()> {
        Ok(())
    }
    fn register_irqfd(&self, _: &EventFd, _: u32) -> io::Result<()> {
        Ok(())
    }
    fn register_ioeventfd(&self, _: &EventFd, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn unregister_ioeventfd(&self, _: &EventFd, _: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Two queues, a 16-byte config space, any activation accepted.
struct Device {
    config: [u8; 16],
    active: Option<Activation>,
}

impl VirtioDevice for Device {
    fn device_type(&self) -> u16 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 256]
    }
    fn features(&self) -> u64 {
        1 << 32 | 1 << 29 | 1 << 28 | 1 << 5 | 1 << 34
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get(o.checked_add(i)?))
                .copied()
                .unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get_mut(o.checked_add(i)?))
            {
                *slot = *b;
            }
        }
    }
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if activation.queues.is_empty() {
            return Err(ActivateError::Queues { got: 0, need: 1 });
        }
        self.active = Some(activation);
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
}

#[derive(Debug, Arbitrary)]
enum Width {
    Byte,
    Word,
    Dword,
    Qword,
    Odd(u8),
}

impl Width {
    fn len(&self) -> usize {
        match self {
            Width::Byte => 1,
            Width::Word => 2,
            Width::Dword => 4,
            Width::Qword => 8,
            // KVM exits carry 1 to 8 bytes.
            Width::Odd(n) => 1 + usize::from(n % 8),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Access {
    /// Config space of slot 0 (host bridge) or 1 (the device), or any slot.
    Ecam { slot: u8, register: u16 },
    /// 0xCF8 (address) or 0xCFC..0xCFF (data).
    Port { port: u8 },
    /// BAR 0 of the device, as the MMIO bus routes it (if the guest mapped it).
    Mmio { offset: u16 },
    /// Anywhere on the MMIO bus.
    Anywhere { addr: u64 },
    /// Straight to BAR 0, mapped or not.
    Bar { offset: u16 },
}

#[derive(Debug, Arbitrary)]
struct Op {
    access: Access,
    width: Width,
    write: bool,
    value: u64,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Driver-like setup first: memory decoding on and BAR 0 where the VMM put it.
    setup: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let router = Arc::new(GsiRouter::new(Arc::new(NoVm)));
    let device = Device {
        config: [0; 16],
        active: None,
    };
    let function = VirtioPciFunction::new(Box::new(device), BAR_ADDR, memory, &router).unwrap();
    let function = Arc::new(Mutex::new(function));
    let mmio = Arc::new(MmioBus::new());
    let bus = Arc::new(Mutex::new(PciBus::new(&mmio)));
    bus.lock()
        .unwrap()
        .add(Arc::new(Mutex::new(HostBridge::new())))
        .unwrap();
    bus.lock().unwrap().add(function.clone()).unwrap();
    let _ = mmio.insert(
        PCI_ECAM_START.0,
        1 << 20,
        Arc::new(PciEcam::new(bus.clone())),
    );
    let mut ports = PciConfigIo::new(bus.clone());
    let device_ecam = PCI_ECAM_START.0 + (1 << 15);
    if input.setup {
        // COMMAND: memory space; BAR 0 (64-bit) at BAR_ADDR.
        mmio.write(device_ecam + 0x10, &(BAR_ADDR as u32 | 0x4).to_le_bytes());
        mmio.write(device_ecam + 0x14, &0u32.to_le_bytes());
        mmio.write(device_ecam + 0x04, &0x6u16.to_le_bytes());
    }
    for op in input.ops.iter().take(256) {
        let bytes = op.value.to_le_bytes();
        let len = op.width.len();
        let mut data = [0u8; 8];
        let data = &mut data[..len];
        data.copy_from_slice(&bytes[..len]);
        let at = |addr: u64| {
            if op.write {
                mmio.write(addr, data);
            } else {
                mmio.read(addr, &mut data.to_vec());
            }
        };
        match op.access {
            Access::Ecam { slot, register } => {
                let slot = u64::from(slot % 3);
                at(PCI_ECAM_START.0 + (slot << 15) + u64::from(register % 0x1000));
            }
            Access::Port { port } => {
                let port = 0xcf8 + u16::from(port % 8);
                if op.write {
                    ports.pio_write(port, data);
                } else {
                    ports.pio_read(port, data);
                }
            }
            Access::Mmio { offset } => at(BAR_ADDR + u64::from(offset % 0x8000)),
            Access::Anywhere { addr } => at(addr),
            Access::Bar { offset } => {
                let mut f = function.lock().unwrap();
                let offset = u64::from(offset % 0x8000);
                if op.write {
                    f.bar_write(0, offset, data);
                } else {
                    f.bar_read(0, offset, data);
                }
            }
        }
    }
    bus.lock().unwrap().detach_all();
});
