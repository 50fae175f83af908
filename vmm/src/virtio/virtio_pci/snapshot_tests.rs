//! Snapshots of whole machines' devices: functions driven as a driver drives them
//! (through config space and their BARs on the MMIO bus), saved, passed through
//! JSON, restored into functions built anew, and driven on without the driver
//! setting anything up again.

use super::*;
use crate::devices::acpi_pm::AcpiPmDevice;
use crate::devices::i8042::I8042;
use crate::devices::mmio_bus::MmioBus;
use crate::devices::platform::Platform;
use crate::devices::rtc::Rtc;
use crate::devices::serial::SerialPort;
use crate::pci::config_space::{COMMAND, COMMAND_MEMORY};
use crate::pci::{BarAllocator, ConfigAddress, HostBridge, PciBus, PciConfigIo};
use crate::snapshot::devices::{self, DevicesState, FunctionState};
use crate::virtio::block::Block;
use crate::virtio::net::{Backend, Net, Passt};
use crate::virtio::pci_common::*;
use crate::virtio::rng::Rng;
use crate::virtio::test_util::{desc, TestQueue, R, W};
use crate::vstate::interrupts::fake::FakeVm;
use crate::vstate::interrupts::{MsiMessage, Route};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MMIO_BASE: u64 = 0xc000_0000;
/// Vector v's message: the local APIC, vector 0x40 + v.
const MSI_ADDRESS: u64 = 0xfee0_0000;
const MSI_DATA: u32 = 0x40;
/// Where a block request's parts go in guest memory.
const HDR: u64 = 0x10000;
const STATUS: u64 = 0x1f000;
const DATA: u64 = 0x20000;
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// A machine's PCI side and platform devices, over a VM that records routes.
struct Rig {
    vm: Arc<FakeVm>,
    mmio: Arc<MmioBus>,
    bus: Arc<Mutex<PciBus>>,
    platform: Platform,
    /// The virtio functions, in slots 1 on.
    functions: Vec<Arc<Mutex<VirtioPciFunction>>>,
}

/// Built as builder.rs builds a machine: the host bridge, then one function per
/// device with its BAR next in the MMIO window.
fn rig(mem: &GuestMemory, devices: Vec<Box<dyn VirtioDevice>>) -> Rig {
    let vm = Arc::new(FakeVm::default());
    let router = Arc::new(GsiRouter::new(vm.clone()));
    let mmio = Arc::new(MmioBus::new());
    let bus = Arc::new(Mutex::new(PciBus::new(&mmio)));
    let mut bars = BarAllocator::new(GuestAddress(MMIO_BASE), 0x10_0000);
    let mut functions = Vec::new();
    {
        let mut locked = bus.lock().unwrap();
        locked.add(Arc::new(Mutex::new(HostBridge::new()))).unwrap();
        for device in devices {
            let bar = bars.allocate(BAR_SIZE).unwrap();
            let f = VirtioPciFunction::new(device, bar, mem.clone(), &router).unwrap();
            let f = Arc::new(Mutex::new(f));
            locked.add(f.clone()).unwrap();
            functions.push(f);
        }
    }
    let platform = Platform {
        serial: SerialPort::new(
            EventFd::new(EFD_NONBLOCK).unwrap(),
            Box::new(std::io::sink()),
        ),
        i8042: I8042,
        rtc: Rtc::default(),
        acpi_pm: AcpiPmDevice::new(),
        pci: PciConfigIo::new(bus.clone()),
    };
    Rig {
        vm,
        mmio,
        bus,
        platform,
        functions,
    }
}

impl Rig {
    fn bar(&self, n: usize) -> u64 {
        MMIO_BASE + n as u64 * BAR_SIZE
    }

    fn write(&self, n: usize, offset: u64, width: usize, value: u64) {
        let at = self.bar(n) + offset;
        assert!(
            self.mmio.write(at, &value.to_le_bytes()[..width]),
            "{at:#x}"
        );
    }

    fn read(&self, n: usize, offset: u64, width: usize) -> u64 {
        let mut b = [0u8; 8];
        assert!(self.mmio.read(self.bar(n) + offset, &mut b[..width]));
        u64::from_le_bytes(b)
    }

    fn config_write(&self, n: usize, register: usize, data: &[u8]) {
        let at = ConfigAddress {
            bus: 0,
            device: n as u8 + 1,
            function: 0,
            register: register as u16,
        };
        self.bus.lock().unwrap().config_write(at, data);
    }

    /// What a driver does before its queues: memory decode and bus mastering, every
    /// feature offered accepted, every MSI-X vector programmed and MSI-X enabled,
    /// the last vector for configuration changes.
    fn set_up(&self, n: usize) {
        self.config_write(n, COMMAND, &[COMMAND_MEMORY as u8 | 0b100]);
        self.write(n, DEVICE_STATUS, 1, 1);
        self.write(n, DEVICE_STATUS, 1, 3);
        for half in 0..2 {
            self.write(n, DEVICE_FEATURE_SELECT, 4, half);
            let offered = self.read(n, DEVICE_FEATURE, 4);
            self.write(n, DRIVER_FEATURE_SELECT, 4, half);
            self.write(n, DRIVER_FEATURE, 4, offered);
        }
        self.write(n, DEVICE_STATUS, 1, 0xb);
        let (cap, vectors) = {
            let f = self.functions[n].lock().unwrap();
            let count = f.interrupt.msix().count();
            (f.msix_capability, count)
        };
        for v in 0..u64::from(vectors) {
            let entry = MSIX_TABLE_OFFSET + v * msix::ENTRY_SIZE;
            self.write(n, entry, 4, MSI_ADDRESS);
            self.write(n, entry + 4, 4, 0);
            self.write(n, entry + 8, 4, u64::from(MSI_DATA) + v);
            self.write(n, entry + 12, 4, 0);
        }
        let control = msix::CONTROL_ENABLE.to_le_bytes();
        self.config_write(n, cap + msix::CONTROL_OFFSET, &control);
        self.write(n, CONFIG_MSIX_VECTOR, 2, u64::from(vectors - 1));
    }

    /// Queue `index` over `t`'s rings, interrupting on vector `index`.
    fn set_up_queue(&self, n: usize, index: u16, t: &TestQueue) {
        let (desc, avail, used) = t.rings();
        self.write(n, QUEUE_SELECT, 2, u64::from(index));
        self.write(n, QUEUE_SIZE, 2, u64::from(t.size()));
        self.write(n, QUEUE_DESC, 8, desc);
        self.write(n, QUEUE_DRIVER, 8, avail);
        self.write(n, QUEUE_DEVICE, 8, used);
        self.write(n, QUEUE_MSIX_VECTOR, 2, u64::from(index));
        self.write(n, QUEUE_ENABLE, 2, 1);
    }

    fn driver_ok(&self, n: usize) {
        self.write(n, DEVICE_STATUS, 1, 0xf);
        assert_eq!(self.read(n, DEVICE_STATUS, 1), 0xf);
    }

    /// A doorbell write that KVM did not catch (the fake VM catches none).
    fn kick(&self, n: usize, queue: u16) {
        let doorbell = NOTIFY_OFFSET + u64::from(queue) * u64::from(NOTIFY_OFF_MULTIPLIER);
        self.write(n, doorbell, 2, u64::from(queue));
    }

    fn fired(&self, n: usize, vector: u16) -> u64 {
        let f = self.functions[n].lock().unwrap();
        let fired = f.interrupt.msix().take_fired(vector);
        fired
    }

    fn save(&self) -> DevicesState {
        devices::save(&self.bus.lock().unwrap(), &self.platform).unwrap()
    }

    fn restore(&mut self, state: &DevicesState) -> Result<(), String> {
        let mut bus = self.bus.lock().unwrap();
        devices::restore(&mut bus, &mut self.platform, state).map_err(|e| e.to_string())
    }

    /// KVM's routing table has vector `v`'s message for some GSI.
    fn routes_vector(&self, v: u32) -> bool {
        let tables = self.vm.tables.lock().unwrap();
        let message = MsiMessage {
            address: MSI_ADDRESS,
            data: MSI_DATA + v,
        };
        tables
            .last()
            .is_some_and(|t| t.iter().any(|r| r.route == Route::Msi(message)))
    }
}

/// Through JSON and back, as the state file carries it.
fn through_json(state: &DevicesState) -> DevicesState {
    serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
}

fn wait_used(t: &TestQueue, n: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.used_idx() < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for used entry {n}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A disk image of 8 sectors; sector n is filled with byte n.
fn image() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..8u8).flat_map(|n| [n; 512]).collect();
    f.as_file().write_all_at(&data, 0).unwrap();
    f
}

fn disk(image: &tempfile::NamedTempFile) -> Vec<Box<dyn VirtioDevice>> {
    vec![Box::new(Block::new(image.path(), false).unwrap())]
}

/// Offers a read of `sector` (not kicked).
fn queue_read(t: &TestQueue, sector: u64) {
    let mut h = [0u8; 16];
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    t.write(HDR, &h);
    t.write(DATA, &[0xee; 512]);
    t.add_chain(&[desc(HDR, 16, R), desc(DATA, 512, W), desc(STATUS, 1, W)]);
}

fn assert_read(t: &TestQueue, sector: u8) {
    assert_eq!(t.read(DATA, 512), vec![sector; 512]);
    assert_eq!(t.read(STATUS, 1), [0]);
}

/// A disk the driver set up and used once.
fn disk_in_use(t: &TestQueue, image: &tempfile::NamedTempFile) -> Rig {
    let rig = rig(t.mem, disk(image));
    rig.set_up(0);
    rig.set_up_queue(0, 0, t);
    rig.driver_ok(0);
    queue_read(t, 3);
    rig.kick(0, 0);
    wait_used(t, 1);
    assert_read(t, 3);
    assert_eq!(rig.fired(0, 0), 1);
    rig
}

#[test]
fn a_restored_disk_serves_the_next_request_and_interrupts() {
    let img = image();
    let t = TestQueue::new();
    let state = through_json(&disk_in_use(&t, &img).save());
    // The first machine is gone (and with it the image's lock), as when the VMM
    // exits after saving.
    let mut rig = rig(t.mem, disk(&img));
    rig.restore(&state).unwrap();

    // The driver finds the device as it left it, and sets nothing up again.
    assert_eq!(rig.read(0, DEVICE_STATUS, 1), 0xf);
    rig.write(0, QUEUE_SELECT, 2, 0);
    assert_eq!(rig.read(0, QUEUE_ENABLE, 2), 1);
    assert_eq!(rig.read(0, QUEUE_MSIX_VECTOR, 2), 0);
    assert!(rig.routes_vector(0), "MSI-X vector 0 routed in KVM again");
    assert_eq!(
        *rig.vm.ioeventfds.lock().unwrap(),
        vec![rig.bar(0) + NOTIFY_OFFSET],
        "the doorbell is where the BAR is"
    );

    queue_read(&t, 5);
    rig.kick(0, 0);
    wait_used(&t, 2);
    assert_read(&t, 5);
    assert_eq!(t.used(1).1, 513);
    assert_eq!(rig.fired(0, 0), 1);
}

#[test]
fn saving_completes_what_the_driver_queued_first() {
    let img = image();
    let t = TestQueue::new();
    let rig = disk_in_use(&t, &img);
    // Queued, and the kick never came (or came too late): the pause serves it.
    queue_read(&t, 6);
    let state = rig.save();
    assert_eq!(t.used_idx(), 2);
    assert_read(&t, 6);
    assert_eq!(rig.fired(0, 0), 1);
    let FunctionState::Virtio(saved) = &state.pci[1].function else {
        panic!("slot 1 is the disk");
    };
    assert_eq!(
        saved.positions,
        vec![QueuePosition {
            index: 0,
            next_avail: 2,
            next_used: 2
        }]
    );
    // Live snapshot: the devices go on where they stood.
    devices::resume(&rig.bus.lock().unwrap()).unwrap();
    queue_read(&t, 7);
    rig.kick(0, 0);
    wait_used(&t, 3);
    assert_read(&t, 7);
    assert_eq!(rig.fired(0, 0), 1);
}

/// One end of a socketpair for the NIC, the other for the test, playing passt.
fn nic() -> (Vec<Box<dyn VirtioDevice>>, UnixStream) {
    let (ours, passt) = UnixStream::pair().unwrap();
    passt
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let net = Net::with_backend(MAC, Backend::Passt(Passt::from_stream(ours)));
    (vec![Box::new(net)], passt)
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_add(seed)).collect()
}

/// The driver's side of a NIC: set up, receive queue `rx`, transmit queue `tx`,
/// DRIVER_OK.
fn nic_driven(rig: &Rig, rx: &TestQueue, tx: &TestQueue) {
    rig.set_up(0);
    rig.set_up_queue(0, 0, rx);
    rig.set_up_queue(0, 1, tx);
    rig.driver_ok(0);
}

/// passt sends `frame` to the guest (length-prefixed, as on its stream socket).
fn from_passt(passt: &mut UnixStream, frame: &[u8]) {
    let mut prefixed = (frame.len() as u32).to_be_bytes().to_vec();
    prefixed.extend_from_slice(frame);
    passt.write_all(&prefixed).unwrap();
}

/// The next frame passt reads from the NIC (length-prefixed on its stream socket).
fn to_passt(passt: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    passt.read_exact(&mut len).unwrap();
    let mut got = vec![0; u32::from_be_bytes(len) as usize];
    passt.read_exact(&mut got).unwrap();
    got
}

/// One frame from the guest to passt and one back, on receive buffer `rx_used`.
fn frames_both_ways(rig: &Rig, rx: &TestQueue, tx: &TestQueue, passt: &mut UnixStream, n: u16) {
    let out = frame(90, n as u8);
    tx.write(0x30000, &[0; 12]);
    tx.write(0x30000 + 12, &out);
    tx.add_chain(&[desc(0x30000, 102, R)]);
    rig.kick(0, 1);
    assert_eq!(to_passt(passt), out);
    wait_used(tx, n);
    assert_eq!(rig.fired(0, 1), 1, "transmit interrupt");

    rx.add_chain(&[desc(0x20000, 2048, W)]);
    rig.kick(0, 0);
    let back = frame(80, 100 + n as u8);
    from_passt(passt, &back);
    wait_used(rx, n);
    assert_eq!(rx.read(0x20000 + 12, 80), back);
    assert_eq!(rig.fired(0, 0), 1, "receive interrupt");
}

#[test]
fn a_restored_nic_moves_frames_both_ways_over_a_new_backend() {
    let rx = TestQueue::new();
    let tx = rx.another(0x8000);
    let (devices, mut passt) = nic();
    let state = {
        let rig = rig(rx.mem, devices);
        nic_driven(&rig, &rx, &tx);
        frames_both_ways(&rig, &rx, &tx, &mut passt, 1);
        through_json(&rig.save())
    };
    let (devices, mut passt) = nic();
    let mut rig = rig(rx.mem, devices);
    rig.restore(&state).unwrap();
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = rig.read(0, DEVICE_CONFIG_OFFSET + i as u64, 1) as u8;
    }
    assert_eq!(mac, MAC);
    // The new passt hears the guest's MAC first, without the guest sending anything.
    let announced = to_passt(&mut passt);
    assert_eq!(&announced[..6], &[0xff; 6], "to everyone");
    assert_eq!(&announced[6..12], &MAC, "from the guest's MAC");
    assert_eq!(&announced[12..14], &[0x80, 0x35], "a RARP frame");
    assert_eq!(
        announced,
        crate::virtio::net::announcement(MAC)[crate::virtio::net::VNET_HDR_LEN..]
    );
    frames_both_ways(&rig, &rx, &tx, &mut passt, 2);
}

#[test]
fn a_restored_entropy_device_fills_the_next_buffer() {
    let t = TestQueue::new().another_sized(0x8000, 64);
    let state = {
        let rig = rig(t.mem, vec![Box::new(Rng::new())]);
        rig.set_up(0);
        rig.set_up_queue(0, 0, &t);
        rig.driver_ok(0);
        t.add_chain(&[desc(0x10000, 32, W)]);
        rig.kick(0, 0);
        wait_used(&t, 1);
        assert_eq!(rig.fired(0, 0), 1);
        through_json(&rig.save())
    };
    let mut rig = rig(t.mem, vec![Box::new(Rng::new())]);
    rig.restore(&state).unwrap();
    t.add_chain(&[desc(0x20000, 48, W)]);
    rig.kick(0, 0);
    wait_used(&t, 2);
    assert_eq!(t.used(1).1, 48);
    assert_eq!(rig.fired(0, 0), 1);
}

/// The message restoring `state` into a fresh machine of `devices` fails with.
fn refusal(t: &TestQueue, devices: Vec<Box<dyn VirtioDevice>>, state: &DevicesState) -> String {
    let mut rig = rig(t.mem, devices);
    rig.restore(state).unwrap_err()
}

/// The saved disk function's state, to change.
fn disk_state(state: &mut DevicesState) -> &mut VirtioPciState {
    match &mut state.pci[1].function {
        FunctionState::Virtio(v) => v,
        _ => panic!("slot 1 is the disk"),
    }
}

#[test]
fn a_state_that_does_not_fit_the_machine_is_refused_with_what_differs() {
    let img = image();
    let t = TestQueue::new();
    let saved = through_json(&disk_in_use(&t, &img).save());

    let rng = || -> Vec<Box<dyn VirtioDevice>> { vec![Box::new(Rng::new())] };
    assert_eq!(
        refusal(&t, rng(), &saved),
        "virtio-rng at PCI 00:01.0: virtio-blk saved here"
    );
    let mut two = disk(&img);
    two.extend(rng());
    assert_eq!(
        refusal(&t, two, &saved),
        "the saved machine had PCI functions in slots [0, 1], this one in [0, 1, 2]"
    );

    let changed = |change: &dyn Fn(&mut VirtioPciState)| {
        let mut state = saved.clone();
        change(disk_state(&mut state));
        refusal(&t, disk(&img), &state)
    };
    assert_eq!(
        changed(&|s| s.common.queues[0].size = 512),
        "virtio-blk at PCI 00:01.0: queue 0: size 512 (at most 256, a power of two)"
    );
    assert_eq!(
        changed(&|s| s.common.queues[0].max_size = 1024),
        "virtio-blk at PCI 00:01.0: queue 0 had at most 1024 entries when saved, 256 here"
    );
    assert_eq!(
        changed(&|s| s.interrupt.queue_vectors[0] = 9),
        "virtio-blk at PCI 00:01.0: queue MSI-X vector 9 is past the table's 2 vectors"
    );
    assert_eq!(
        changed(&|s| s.common.queues[0].desc = 1 << 40),
        "virtio-blk at PCI 00:01.0: queue 0: rings outside guest memory"
    );
    assert_eq!(
        changed(&|s| s.positions[0].next_avail = 300),
        "virtio-blk at PCI 00:01.0: queue 0: next available 300 and next used 1 are more than its 256 entries apart"
    );
    assert_eq!(
        changed(&|s| s.msix.table.truncate(1)),
        "virtio-blk at PCI 00:01.0: 1 MSI-X vectors saved, the device has 2"
    );
    assert_eq!(
        changed(&|s| s.config_space[0] = 0x34),
        "virtio-blk at PCI 00:01.0: configuration space differs at 0x00 (0x34 saved, 0xf4 here): another kind of device"
    );
    assert_eq!(
        changed(&|s| s.common.driver_features |= 1 << 60),
        format!(
            "virtio-blk at PCI 00:01.0: the driver accepted features {:#x}, the device offers {:#x}",
            s_features(&saved) | 1 << 60,
            offered(&img)
        )
    );
    let mut bigger = saved.clone();
    if let crate::virtio::DeviceState::Block(b) = &mut disk_state(&mut bigger).device {
        b.config[0] = 9;
    }
    assert_eq!(
        refusal(&t, disk(&img), &bigger),
        "virtio-blk at PCI 00:01.0: the disk's configuration differs: 9 sectors when saved, 8 now"
    );
}

fn s_features(state: &DevicesState) -> u64 {
    let mut state = state.clone();
    disk_state(&mut state).common.driver_features
}

fn offered(img: &tempfile::NamedTempFile) -> u64 {
    Block::new(img.path(), false).unwrap().features() & !UNSUPPORTED_FEATURES
}

#[test]
fn a_machine_that_was_never_set_up_round_trips() {
    let img = image();
    let t = TestQueue::new();
    let state = {
        let mut rig = rig(t.mem, disk(&img));
        rig.platform.acpi_pm.press_power_button();
        rig.platform.pio_write(0xcf8, &0x8000_0810u32.to_le_bytes());
        rig.platform.rtc.pio_write(0x70, &[0x41]);
        rig.platform.rtc.pio_write(0x71, &[0x99]);
        through_json(&rig.save())
    };
    let mut rig = rig(t.mem, disk(&img));
    rig.restore(&state).unwrap();
    assert_eq!(rig.save(), state);
    // The platform devices: the power button press the guest has not seen yet, the
    // PCI address the guest selected, CMOS RAM.
    let mut ged = [0u8; 4];
    rig.platform
        .pio_read(crate::layout::ACPI_GED_PORT, &mut ged);
    assert_eq!(u32::from_le_bytes(ged), crate::acpi::GED_EVENT_POWER_BUTTON);
    let mut address = [0u8; 4];
    rig.platform.pio_read(0xcf8, &mut address);
    assert_eq!(u32::from_le_bytes(address), 0x8000_0810);
    let mut cmos = [0u8];
    rig.platform.rtc.pio_read(0x71, &mut cmos);
    assert_eq!(cmos, [0x99]);
    // Memory decode off: the BAR and its doorbell stay unmapped until the guest
    // turns it on.
    assert!(!rig.mmio.read(rig.bar(0), &mut [0u8; 1]));
    assert!(rig.vm.ioeventfds.lock().unwrap().is_empty());
    rig.set_up(0);
    assert_eq!(rig.read(0, DEVICE_STATUS, 1), 0xb);
}

/// A device that cannot be saved (every real one can).
struct Unsaveable;

impl VirtioDevice for Unsaveable {
    fn device_type(&self) -> u16 {
        0x3f
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[64]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, _: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write_config(&mut self, _: u64, _: &[u8]) {}
    fn activate(&mut self, _: Activation) -> Result<(), crate::virtio::ActivateError> {
        Ok(())
    }
    fn reset(&mut self) {}
}

#[test]
fn a_machine_with_a_device_that_cannot_be_saved_is_refused_and_keeps_running() {
    let t = TestQueue::new().another_sized(0x8000, 64);
    let rig = rig(t.mem, vec![Box::new(Rng::new()), Box::new(Unsaveable)]);
    rig.set_up(0);
    rig.set_up_queue(0, 0, &t);
    rig.driver_ok(0);
    let refused = devices::save(&rig.bus.lock().unwrap(), &rig.platform).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "virtio device at PCI 00:02.0: this device cannot be saved yet"
    );
    // Nothing was paused: the entropy device still answers.
    t.add_chain(&[desc(0x10000, 16, W)]);
    rig.kick(0, 0);
    wait_used(&t, 1);
}

/// The driver posts its receive buffers once and kicks once: after a restore, a frame
/// that arrives must land in a buffer posted before the save, with no kick to come.
#[test]
fn a_restored_nic_receives_into_buffers_posted_before_the_save() {
    let rx = TestQueue::new();
    let tx = rx.another(0x8000);
    let (devices, _passt) = nic();
    let state = {
        let rig = rig(rx.mem, devices);
        nic_driven(&rig, &rx, &tx);
        rx.add_chain(&[desc(0x20000, 2048, W)]);
        rig.kick(0, 0);
        // The worker has seen the buffer (it waits for a frame to put in it).
        std::thread::sleep(Duration::from_millis(100));
        through_json(&rig.save())
    };
    let (devices, mut passt) = nic();
    let mut rig = rig(rx.mem, devices);
    rig.restore(&state).unwrap();
    let back = frame(80, 7);
    from_passt(&mut passt, &back);
    wait_used(&rx, 1);
    assert_eq!(rx.read(0x20000 + 12, 80), back);
    assert_eq!(rig.fired(0, 0), 1, "receive interrupt");
}

/// passt knows a guest's MAC only from frames the guest sends, and addresses a guest
/// it has not heard from by broadcast, which the guest's TCP drops. A continued
/// machine gets a new passt and may send nothing for hours: the restored NIC
/// announces it, so a connection to a forwarded port (ssh) reaches the guest's MAC.
/// With the real passt: the SYN lands in a receive buffer posted before the save.
#[test]
fn after_a_restore_a_new_passt_addresses_the_guest_by_its_mac() {
    use hvbox_test_support::passt::Passt;
    use std::net::{TcpListener, TcpStream};
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let forward = format!("127.0.0.1/{port}:22");
    let start = |name: &str| Passt::start_with(dir.path(), name, &["-t", &forward]);
    let nic = |passt: &Passt| -> Vec<Box<dyn VirtioDevice>> {
        let backend = crate::config::NetBackend::Passt(passt.socket.clone());
        vec![Box::new(Net::new(MAC, backend).unwrap())]
    };
    let rx = TestQueue::new();
    let tx = rx.another(0x8000);
    let Some(first) = start("before") else {
        return;
    };
    let state = {
        let rig = rig(rx.mem, nic(&first));
        nic_driven(&rig, &rx, &tx);
        rx.add_chain(&[desc(0x20000, 2048, W)]);
        rig.kick(0, 0);
        std::thread::sleep(Duration::from_millis(100));
        through_json(&rig.save())
    };
    // The forwarded port is free for the next passt once this one is gone.
    drop(first);
    let second = start("after").expect("passt ran a moment ago");
    let mut rig = rig(rx.mem, nic(&second));
    rig.restore(&state).unwrap();
    // The announcement leaves as the worker starts; a resumed machine's ssh comes
    // seconds after, and here passt gets a moment to take it in first.
    std::thread::sleep(Duration::from_millis(300));
    // passt takes the host side of the connection at once and sends its SYN on.
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    wait_used(&rx, 1);
    let ethernet = rx.read(0x20000 + 12, 14);
    assert_eq!(&ethernet[12..14], &[0x08, 0x00], "an IPv4 frame (the SYN)");
    assert_eq!(
        &ethernet[..6],
        &MAC,
        "passt addressed the SYN to {:02x?}, not to the guest's MAC",
        &ethernet[..6]
    );
}
