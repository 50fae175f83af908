//! The transport driven the way a driver drives it, over a fake device that
//! records what the transport asked of it.

use super::*;
use crate::pci::config_space::{CAPABILITIES_POINTER, COMMAND, COMMAND_MEMORY};
use crate::virtio::device::ActivateError;
use crate::virtio::pci_common::*;
use crate::virtio::pci_interrupt::{ISR_QUEUE, NO_VECTOR};
use crate::vstate::interrupts::fake::FakeVm;
use std::sync::Mutex;
use vm_memory::GuestMemoryMmap;

const BAR: u64 = 0xc000_8000;
const QUEUES: [u16; 2] = [16, 32];
/// Offered: VERSION_1, a device feature (bit 5) and packed rings (34), which the
/// transport must hide.
const FEATURES: u64 = VIRTIO_F_VERSION_1 | 1 << 5 | 1 << 34;

/// A queue as activated: index, size, descriptor, driver and device ring addresses.
type ActiveSetup = (u16, u16, u64, u64, u64);

#[derive(Default)]
struct Record {
    /// Features and queues of each activation.
    activations: Vec<(u64, Vec<ActiveSetup>)>,
    kicks: Vec<EventFd>,
    interrupt: Option<Arc<dyn VirtioInterrupt>>,
    resets: usize,
    config_writes: Vec<(u64, Vec<u8>)>,
}

struct FakeDevice(Arc<Mutex<Record>>);

impl VirtioDevice for FakeDevice {
    fn device_type(&self) -> u16 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUES
    }
    fn features(&self) -> u64 {
        FEATURES
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = 0xa0 + (offset as u8) + i as u8;
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .config_writes
            .push((offset, data.to_vec()));
    }
    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let mut r = self.0.lock().unwrap();
        let queues = a
            .queues
            .iter()
            .map(|q| {
                let queue = &q.queue;
                (
                    q.index,
                    queue.size(),
                    queue.desc_table(),
                    queue.avail_ring(),
                    queue.used_ring(),
                )
            })
            .collect();
        r.activations.push((a.features, queues));
        r.kicks = a.queues.into_iter().map(|q| q.kick).collect();
        r.interrupt = Some(a.interrupt);
        Ok(())
    }
    fn reset(&mut self) {
        self.0.lock().unwrap().resets += 1;
    }
}

struct Fixture {
    f: VirtioPciFunction,
    vm: Arc<FakeVm>,
    record: Arc<Mutex<Record>>,
}

fn fixture() -> Fixture {
    let vm = Arc::new(FakeVm::default());
    let router = Arc::new(GsiRouter::new(vm.clone()));
    let record = Arc::new(Mutex::new(Record::default()));
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let f =
        VirtioPciFunction::new(Box::new(FakeDevice(record.clone())), BAR, mem, &router).unwrap();
    Fixture { f, vm, record }
}

impl Fixture {
    fn cfg8(&mut self, offset: usize) -> u8 {
        let mut b = [0];
        self.f.config_read(offset as u64, &mut b);
        b[0]
    }
    fn cfg32(&mut self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.f.config_read(offset as u64, &mut b);
        u32::from_le_bytes(b)
    }
    fn read(&mut self, offset: u64, width: usize) -> u64 {
        let mut b = [0; 8];
        self.f.bar_read(0, offset, &mut b[..width]);
        u64::from_le_bytes(b)
    }
    fn write(&mut self, offset: u64, width: usize, value: u64) {
        self.f.bar_write(0, offset, &value.to_le_bytes()[..width]);
    }
    /// (cfg_type, offset, length, extra dword) of each virtio capability, and the
    /// offset of the MSI-X capability.
    fn capabilities(&mut self) -> (Vec<(u8, u32, u32, u32)>, usize) {
        let (mut virtio, mut msix) = (Vec::new(), 0);
        let mut at = self.cfg8(CAPABILITIES_POINTER) as usize;
        while at != 0 {
            match self.cfg8(at) {
                CAPABILITY_VENDOR => {
                    let extra = if self.cfg8(at + 2) == 20 {
                        self.cfg32(at + 16)
                    } else {
                        0
                    };
                    assert_eq!(self.cfg8(at + 4), 0, "BAR");
                    virtio.push((
                        self.cfg8(at + 3),
                        self.cfg32(at + 8),
                        self.cfg32(at + 12),
                        extra,
                    ));
                }
                msix::CAPABILITY_ID => msix = at,
                other => panic!("unexpected capability {other:#x}"),
            }
            at = self.cfg8(at + 1) as usize;
        }
        (virtio, msix)
    }
    /// Negotiate VERSION_1, set up queue 1 at 0x1000 with 8 entries and MSI-X
    /// vector 2, and program that vector.
    fn set_up_queue_1(&mut self, msix_cap: usize) {
        self.write(COMMON_OFFSET + DEVICE_STATUS, 1, 3);
        self.write(COMMON_OFFSET + DRIVER_FEATURE_SELECT, 4, 1);
        self.write(COMMON_OFFSET + DRIVER_FEATURE, 4, 1);
        self.write(COMMON_OFFSET + DEVICE_STATUS, 1, 0xb);
        self.write(COMMON_OFFSET + QUEUE_SELECT, 2, 1);
        self.write(COMMON_OFFSET + QUEUE_SIZE, 2, 8);
        self.write(COMMON_OFFSET + QUEUE_DESC, 8, 0x1000);
        self.write(COMMON_OFFSET + QUEUE_DRIVER, 8, 0x1100);
        self.write(COMMON_OFFSET + QUEUE_DEVICE, 8, 0x1200);
        self.write(COMMON_OFFSET + QUEUE_MSIX_VECTOR, 2, 2);
        self.write(COMMON_OFFSET + QUEUE_ENABLE, 2, 1);
        let entry = MSIX_TABLE_OFFSET + 2 * msix::ENTRY_SIZE;
        self.write(entry, 4, 0xfee0_0000);
        self.write(entry + 8, 4, 0x42);
        self.write(entry + 12, 4, 0);
        let control = msix_cap + msix::CONTROL_OFFSET;
        self.f
            .config_write(control as u64, &msix::CONTROL_ENABLE.to_le_bytes());
    }
}

#[test]
fn identity_bar_and_capabilities() {
    let mut fx = fixture();
    assert_eq!(fx.cfg32(0), 0x1042_1af4);
    assert_eq!(fx.cfg32(8), 0x0180_0001);
    assert_eq!(fx.cfg32(0x2c), 0x1042_1af4);
    assert_eq!(fx.cfg32(0x10), BAR as u32 | 0b100);
    let (virtio, msix_cap) = fx.capabilities();
    assert_eq!(
        virtio,
        vec![
            (CFG_COMMON, 0x0000, COMMON_CONFIG_LEN as u32, 0),
            (CFG_NOTIFY, 0x3000, 8, NOTIFY_OFF_MULTIPLIER),
            (CFG_ISR, 0x1000, 1, 0),
            (CFG_DEVICE, 0x2000, 0x1000, 0),
            (CFG_PCI, 0, 0, 0),
        ]
    );
    // Three vectors (two queues and config), table and PBA in BAR 0.
    assert_eq!(fx.cfg32(msix_cap) >> 16, 2);
    assert_eq!(fx.cfg32(msix_cap + 4), 0x4000);
    assert_eq!(fx.cfg32(msix_cap + 8), 0x5000);
    assert_eq!(fx.vm.irqfds.lock().unwrap().len(), 3);
}

#[test]
fn unsupported_features_are_not_offered() {
    let mut fx = fixture();
    assert_eq!(fx.read(DEVICE_FEATURE, 4), 1 << 5);
    fx.write(DEVICE_FEATURE_SELECT, 4, 1);
    assert_eq!(fx.read(DEVICE_FEATURE, 4), 1);
}

#[test]
fn doorbells_follow_the_bar() {
    let mut fx = fixture();
    assert!(fx.vm.ioeventfds.lock().unwrap().is_empty());
    fx.f.bar_mapped(0, Some(BAR));
    assert_eq!(
        *fx.vm.ioeventfds.lock().unwrap(),
        vec![BAR + 0x3000, BAR + 0x3004]
    );
    fx.f.bar_mapped(0, Some(0xd000_0000));
    assert_eq!(
        *fx.vm.ioeventfds.lock().unwrap(),
        vec![0xd000_3000, 0xd000_3004]
    );
    fx.f.bar_mapped(0, None);
    assert!(fx.vm.ioeventfds.lock().unwrap().is_empty());
}

#[test]
fn driver_ok_hands_the_enabled_queues_to_the_device() {
    let mut fx = fixture();
    let (_, msix_cap) = fx.capabilities();
    fx.set_up_queue_1(msix_cap);
    assert!(fx.record.lock().unwrap().activations.is_empty());
    fx.write(DEVICE_STATUS, 1, 0xf);
    assert_eq!(fx.read(DEVICE_STATUS, 1), 0xf);
    let record = fx.record.lock().unwrap();
    assert_eq!(
        record.activations,
        vec![(VIRTIO_F_VERSION_1, vec![(1, 8, 0x1000, 0x1100, 0x1200)])]
    );
    // A doorbell write KVM did not catch still reaches the queue's kick.
    drop(record);
    fx.write(NOTIFY_OFFSET + 4, 2, 1);
    assert_eq!(fx.record.lock().unwrap().kicks[0].read().unwrap(), 1);
}

#[test]
fn queue_interrupts_go_to_the_queue_vector_and_isr() {
    let mut fx = fixture();
    let (_, msix_cap) = fx.capabilities();
    fx.set_up_queue_1(msix_cap);
    fx.write(DEVICE_STATUS, 1, 0xf);
    let interrupt = fx.record.lock().unwrap().interrupt.clone().unwrap();
    interrupt.notify_queue(1).unwrap();
    assert_eq!(fx.f.interrupt().msix().take_fired(2), 1);
    assert_eq!(fx.read(ISR_OFFSET, 1), u64::from(ISR_QUEUE));
    assert_eq!(fx.read(ISR_OFFSET, 1), 0);
    // Queue 0 has no vector: nothing fires, ISR still says so.
    interrupt.notify_queue(0).unwrap();
    assert_eq!(fx.f.interrupt().msix().take_fired(0), 0);
    assert_eq!(fx.read(ISR_OFFSET, 1), u64::from(ISR_QUEUE));
    assert!(interrupt.notify_queue(2).is_err());
}

#[test]
fn reset_stops_the_device_and_forgets_the_setup() {
    let mut fx = fixture();
    let (_, msix_cap) = fx.capabilities();
    fx.set_up_queue_1(msix_cap);
    fx.write(DEVICE_STATUS, 1, 0xf);
    fx.write(DEVICE_STATUS, 1, 0);
    assert_eq!(fx.record.lock().unwrap().resets, 1);
    assert_eq!(fx.read(DEVICE_STATUS, 1), 0);
    fx.write(QUEUE_SELECT, 2, 1);
    assert_eq!(fx.read(QUEUE_SIZE, 2), 32);
    assert_eq!(fx.read(QUEUE_ENABLE, 2), 0);
    assert_eq!(fx.read(QUEUE_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
    // The MSI-X table is the PCI function's and survives.
    assert_eq!(fx.read(MSIX_TABLE_OFFSET + 2 * 16 + 8, 4), 0x42);
    // A reset device can be set up again.
    fx.set_up_queue_1(msix_cap);
    fx.write(DEVICE_STATUS, 1, 0xf);
    assert_eq!(fx.record.lock().unwrap().activations.len(), 2);
}

#[test]
fn rings_outside_memory_make_the_device_need_a_reset() {
    let mut fx = fixture();
    let (_, msix_cap) = fx.capabilities();
    fx.set_up_queue_1(msix_cap);
    fx.write(QUEUE_DEVICE, 8, 0x4000_0000);
    fx.write(DEVICE_STATUS, 1, 0xf);
    assert!(fx.record.lock().unwrap().activations.is_empty());
    assert_eq!(
        fx.read(DEVICE_STATUS, 1) as u8 & STATUS_NEEDS_RESET,
        STATUS_NEEDS_RESET
    );
}

#[test]
fn device_config_goes_to_the_device() {
    let mut fx = fixture();
    assert_eq!(fx.read(DEVICE_CONFIG_OFFSET + 2, 2), 0xa3a2);
    fx.write(DEVICE_CONFIG_OFFSET + 4, 1, 7);
    assert_eq!(fx.record.lock().unwrap().config_writes, vec![(4, vec![7])]);
}

#[test]
fn the_pci_cfg_window_reaches_bar_0() {
    let mut fx = fixture();
    let cap = fx.f.pci_cfg_capability;
    let set = |fx: &mut Fixture, offset: usize, value: u32| {
        fx.f.config_write((cap + offset) as u64, &value.to_le_bytes())
    };
    // Read num_queues (2 bytes) through the window.
    set(&mut fx, PCI_CFG_OFFSET, NUM_QUEUES as u32);
    set(&mut fx, PCI_CFG_LENGTH, 2);
    assert_eq!(fx.cfg32(cap + PCI_CFG_DATA) & 0xffff, 2);
    // Write device_status through it.
    set(&mut fx, PCI_CFG_OFFSET, DEVICE_STATUS as u32);
    set(&mut fx, PCI_CFG_LENGTH, 1);
    set(&mut fx, PCI_CFG_DATA, 1);
    assert_eq!(fx.read(DEVICE_STATUS, 1), 1);
}

#[test]
fn memory_decode_through_the_bus_registers_the_doorbells() {
    use crate::devices::mmio_bus::MmioBus;
    use crate::pci::{ConfigAddress, PciBus};
    let fx = fixture();
    let vm = fx.vm.clone();
    let mmio = Arc::new(MmioBus::new());
    let mut bus = PciBus::new(&mmio);
    let slot = bus.add(Arc::new(Mutex::new(fx.f))).unwrap();
    let command = ConfigAddress {
        bus: 0,
        device: slot,
        function: 0,
        register: COMMAND as u16,
    };
    bus.config_write(command, &[COMMAND_MEMORY as u8]);
    assert_eq!(
        *vm.ioeventfds.lock().unwrap(),
        vec![BAR + 0x3000, BAR + 0x3004]
    );
    let mut num_queues = [0; 2];
    assert!(mmio.read(BAR + NUM_QUEUES, &mut num_queues));
    assert_eq!(u16::from_le_bytes(num_queues), 2);
}
