//! The virtio 1.x PCI transport (modern, non-transitional): one PCI function per
//! virtio device, its registers in BAR 0, interrupts through MSI-X.
//!
//! BAR 0 (64-bit memory, 32 KiB), one page per structure so a driver can map each
//! on its own:
//!
//! ```text
//! 0x0000  common configuration   (pci_common.rs)
//! 0x1000  ISR status             (read to clear)
//! 0x2000  device configuration   (the device's read_config/write_config)
//! 0x3000  notify: a 4-byte doorbell per queue, each an ioeventfd in KVM
//! 0x4000  MSI-X table            (msix.rs)
//! 0x5000  MSI-X pending bits
//! ```
//!
//! Doorbell writes never reach this code while the BAR is where KVM has the
//! ioeventfds; the write handler here serves only writes KVM did not catch.

use super::device::{
    Activation, ActiveQueue, DeviceState, PausedQueues, VirtioDevice, VirtioInterrupt,
};
use super::msix::{self, Msix, MsixState};
use super::pci_common::{CommonConfig, CommonState, Effect, COMMON_CONFIG_LEN, STATUS_DRIVER_OK};
use super::pci_interrupt::{InterruptState, PciInterrupt};
use crate::memory::GuestMemory;
use crate::pci::config_space::{ConfigSpace, Identity};
use crate::pci::PciFunction;
use crate::snapshot::devices::FunctionState;
use crate::vstate::interrupts::{GsiRouter, VmInterrupts};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Arc;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Red Hat's virtio vendor ID; modern device IDs are 0x1040 + the virtio type.
pub const VIRTIO_VENDOR_ID: u16 = 0x1af4;
pub const VIRTIO_DEVICE_ID_BASE: u16 = 0x1040;
/// Revision 1: a modern-only device.
const REVISION: u8 = 1;

/// Virtio device types with a PCI class of their own.
const VIRTIO_TYPE_NET: u16 = 1;
const VIRTIO_TYPE_BLOCK: u16 = 2;
const VIRTIO_TYPE_RNG: u16 = 4;
const VIRTIO_TYPE_FS: u16 = 26;
const CLASS_ETHERNET: u32 = 0x02_00_00;
const CLASS_STORAGE_OTHER: u32 = 0x01_80_00;
const CLASS_OTHER: u32 = 0xff_00_00;

pub const BAR_INDEX: u8 = 0;
pub const BAR_SIZE: u64 = 0x8000;
const REGION_LEN: u64 = 0x1000;
const COMMON_OFFSET: u64 = 0x0000;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_CONFIG_OFFSET: u64 = 0x2000;
const NOTIFY_OFFSET: u64 = 0x3000;
const MSIX_TABLE_OFFSET: u64 = 0x4000;
const MSIX_PBA_OFFSET: u64 = 0x5000;
/// Queue `n`'s doorbell is at NOTIFY_OFFSET + n * NOTIFY_OFF_MULTIPLIER.
const NOTIFY_OFF_MULTIPLIER: u32 = 4;

/// Vendor-specific capability carrying a virtio structure's location.
const CAPABILITY_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;
const CFG_PCI: u8 = 5;

/// Feature bits this transport cannot serve, removed from what a device offers:
/// packed rings (34), notification data (38, 39), ring reset (40), admin queues (41).
const UNSUPPORTED_FEATURES: u64 = 1 << 34 | 1 << 38 | 1 << 39 | 1 << 40 | 1 << 41;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// The VIRTIO_PCI_CAP_PCI_CFG window: the driver names a BAR offset and length in
/// the capability and reads or writes through its data dword.
const PCI_CFG_BAR: usize = 4;
const PCI_CFG_OFFSET: usize = 8;
const PCI_CFG_LENGTH: usize = 12;
const PCI_CFG_DATA: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    #[error("virtio device type {device_type}: setting up MSI-X: {source}")]
    Msix { device_type: u16, source: io::Error },
    #[error("virtio device type {device_type}: creating queue doorbells: {source}")]
    Doorbell { device_type: u16, source: io::Error },
}

/// A virtio-pci function in a snapshot: the PCI side (configuration space, MSI-X),
/// the virtio side (common configuration, vectors), where each queue stood, and
/// the device's own state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioPciState {
    pub device_type: u16,
    pub config_space: Vec<u8>,
    pub msix: MsixState,
    pub interrupt: InterruptState,
    pub common: CommonState,
    /// The device was serving its queues (the driver's DRIVER_OK was accepted).
    pub activated: bool,
    /// Where each queue the device served stood when it paused.
    pub positions: Vec<QueuePosition>,
    pub device: DeviceState,
}

/// A served queue's indices: the next available entry the device takes and the
/// next used entry it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePosition {
    pub index: u16,
    pub next_avail: u16,
    pub next_used: u16,
}

/// The name of virtio device type `device_type`, for messages.
pub fn device_name(device_type: u16) -> &'static str {
    match device_type {
        VIRTIO_TYPE_NET => "virtio-net",
        VIRTIO_TYPE_BLOCK => "virtio-blk",
        VIRTIO_TYPE_RNG => "virtio-rng",
        VIRTIO_TYPE_FS => "virtio-fs",
        _ => "virtio device",
    }
}

pub struct VirtioPciFunction {
    config: ConfigSpace,
    device: Box<dyn VirtioDevice>,
    common: CommonConfig,
    interrupt: Arc<PciInterrupt>,
    /// One doorbell per queue, registered as ioeventfds while BAR 0 is mapped.
    kicks: Vec<EventFd>,
    vm: Arc<dyn VmInterrupts>,
    memory: GuestMemory,
    /// Where BAR 0 is mapped, so the doorbells can follow it.
    bar_addr: Option<u64>,
    msix_capability: usize,
    pci_cfg_capability: usize,
    activated: bool,
    /// Paused for a snapshot: the queues the device gave back.
    paused: Option<PausedQueues>,
}

impl VirtioPciFunction {
    /// `device` behind a function whose BAR 0 starts at `bar_addr` (BAR_SIZE
    /// aligned, in the host bridge's MMIO window).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        bar_addr: u64,
        memory: GuestMemory,
        router: &Arc<GsiRouter>,
    ) -> Result<VirtioPciFunction, VirtioPciError> {
        let device_type = device.device_type();
        let queues = device.queue_max_sizes().len();
        // One vector per queue and one for configuration changes.
        let vectors = queues as u16 + 1;
        let msix =
            Msix::new(vectors, Arc::clone(router)).map_err(|source| VirtioPciError::Msix {
                device_type,
                source,
            })?;
        let kicks = (0..queues)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|source| VirtioPciError::Doorbell {
                device_type,
                source,
            })?;

        assert!(
            msix.table_len() <= REGION_LEN && msix.pba_len() <= REGION_LEN,
            "{vectors} MSI-X vectors do not fit their pages of BAR 0"
        );
        let layout = config_space(device_type, queues, vectors, bar_addr);

        let offered = device.features() & !UNSUPPORTED_FEATURES;
        let common = CommonConfig::new(offered, device.queue_max_sizes());
        Ok(VirtioPciFunction {
            config: layout.config,
            device,
            common,
            interrupt: Arc::new(PciInterrupt::new(msix, queues)),
            kicks,
            vm: Arc::clone(router.vm()),
            memory,
            bar_addr: None,
            msix_capability: layout.msix_capability,
            pci_cfg_capability: layout.pci_cfg_capability,
            activated: false,
            paused: None,
        })
    }

    pub fn interrupt(&self) -> &Arc<PciInterrupt> {
        &self.interrupt
    }

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            o if o < COMMON_OFFSET + REGION_LEN => self.common.read(o, data, &self.interrupt),
            // One byte of ISR status; the rest of its page reads 0.
            ISR_OFFSET => data[0] = self.interrupt.take_isr(),
            o if (DEVICE_CONFIG_OFFSET..DEVICE_CONFIG_OFFSET + REGION_LEN).contains(&o) => {
                self.device.read_config(o - DEVICE_CONFIG_OFFSET, data)
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + REGION_LEN).contains(&o) => self
                .interrupt
                .msix()
                .read_table(o - MSIX_TABLE_OFFSET, data),
            o if (MSIX_PBA_OFFSET..MSIX_PBA_OFFSET + REGION_LEN).contains(&o) => {
                self.interrupt.msix().read_pba(o - MSIX_PBA_OFFSET, data)
            }
            // Doorbells read as 0, as does the unused rest of the BAR.
            _ => {}
        }
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            o if o < COMMON_OFFSET + REGION_LEN => {
                match self.common.write(o, data, &self.interrupt) {
                    Effect::None => {}
                    Effect::Activate => self.activate(),
                    Effect::Reset => self.reset(),
                }
            }
            o if (DEVICE_CONFIG_OFFSET..DEVICE_CONFIG_OFFSET + REGION_LEN).contains(&o) => {
                self.device.write_config(o - DEVICE_CONFIG_OFFSET, data)
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + REGION_LEN).contains(&o) => {
                let queue = (o - NOTIFY_OFFSET) / u64::from(NOTIFY_OFF_MULTIPLIER);
                if let Some(kick) = self.kicks.get(queue as usize) {
                    let _ = kick.write(1);
                }
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + REGION_LEN).contains(&o) => {
                if let Err(e) = self
                    .interrupt
                    .msix()
                    .write_table(o - MSIX_TABLE_OFFSET, data)
                {
                    eprintln!("vmm: virtio-pci MSI-X: {e}");
                }
            }
            // ISR and PBA are read-only.
            _ => {}
        }
    }

    /// DRIVER_OK: hand the enabled queues to the device.
    fn activate(&mut self) {
        self.paused = None;
        match self.build_activation() {
            Ok(activation) => match self.device.activate(activation) {
                Ok(()) => self.activated = true,
                Err(e) => self.fail(&format!("activation failed: {e}")),
            },
            Err(e) => self.fail(&e),
        }
    }

    fn build_activation(&self) -> Result<Activation, String> {
        let features = self.common.driver_features();
        let mut queues = Vec::new();
        for (index, setup) in self.common.queues().iter().enumerate() {
            if !setup.enabled {
                continue;
            }
            let bad = |what: &str| format!("queue {index}: {what}");
            let mut queue = Queue::new(setup.max_size).map_err(|e| bad(&e.to_string()))?;
            queue
                .try_set_size(setup.size)
                .map_err(|e| bad(&format!("size {}: {e}", setup.size)))?;
            queue
                .try_set_desc_table_address(GuestAddress(setup.desc))
                .and_then(|()| queue.try_set_avail_ring_address(GuestAddress(setup.driver)))
                .and_then(|()| queue.try_set_used_ring_address(GuestAddress(setup.device)))
                .map_err(|e| bad(&e.to_string()))?;
            queue.set_event_idx(features & VIRTIO_RING_F_EVENT_IDX != 0);
            queue.set_ready(true);
            if !queue.is_valid(&self.memory) {
                return Err(bad("rings outside guest memory"));
            }
            let kick = self.kicks[index]
                .try_clone()
                .map_err(|e| bad(&e.to_string()))?;
            queues.push(ActiveQueue {
                index: index as u16,
                queue,
                kick,
            });
        }
        let interrupt: Arc<dyn VirtioInterrupt> = self.interrupt.clone();
        Ok(Activation {
            memory: self.memory.clone(),
            queues,
            interrupt,
            features,
        })
    }

    /// The device cannot run as the driver set it up: say so in device_status.
    fn fail(&mut self, why: &str) {
        eprintln!(
            "vmm: virtio device type {}: {why}",
            self.device.device_type()
        );
        self.common.set_needs_reset();
        let _ = self.interrupt.notify_config();
    }

    /// device_status = 0: stop the device and forget the driver's setup.
    fn reset(&mut self) {
        self.paused = None;
        if self.activated {
            self.device.reset();
            self.activated = false;
        }
        self.common.reset();
        self.interrupt.reset();
    }

    /// Starts the device as the driver set it up, its queues at `positions` (one per
    /// enabled queue): a resume after a pause, or a restored snapshot.
    fn start_at(&mut self, positions: &[QueuePosition]) -> Result<(), String> {
        let mut activation = self.build_activation()?;
        let enabled: Vec<u16> = activation.queues.iter().map(|q| q.index).collect();
        let saved: Vec<u16> = positions.iter().map(|p| p.index).collect();
        if enabled != saved {
            return Err(format!(
                "positions saved for queues {saved:?}, but the driver enabled {enabled:?}"
            ));
        }
        for (active, at) in activation.queues.iter_mut().zip(positions) {
            let queue = &mut active.queue;
            // Never more chains in flight than the ring holds.
            if at.next_avail.wrapping_sub(at.next_used) > queue.size() {
                return Err(format!(
                    "queue {}: next available {} and next used {} are more than its {} entries apart",
                    at.index,
                    at.next_avail,
                    at.next_used,
                    queue.size()
                ));
            }
            queue.set_next_avail(at.next_avail);
            queue.set_next_used(at.next_used);
        }
        self.device
            .activate(activation)
            .map_err(|e| format!("starting the device: {e}"))?;
        self.activated = true;
        Ok(())
    }

    /// Move the doorbells' ioeventfds to where BAR 0 now is.
    fn move_doorbells(&mut self, to: Option<u64>) {
        let doorbell = |base: u64, queue: usize| {
            base + NOTIFY_OFFSET + queue as u64 * u64::from(NOTIFY_OFF_MULTIPLIER)
        };
        if let Some(old) = self.bar_addr.take() {
            for (queue, kick) in self.kicks.iter().enumerate() {
                let _ = self.vm.unregister_ioeventfd(kick, doorbell(old, queue));
            }
        }
        if let Some(new) = to {
            for (queue, kick) in self.kicks.iter().enumerate() {
                // Without it the doorbell still works, through bar0_write.
                if let Err(e) = self.vm.register_ioeventfd(kick, doorbell(new, queue)) {
                    eprintln!("vmm: virtio-pci doorbell for queue {queue}: {e}");
                }
            }
        }
        self.bar_addr = to;
    }

    fn overlaps(offset: u64, len: usize, field: usize, field_len: usize) -> bool {
        let field = field as u64;
        offset < field + field_len as u64 && field < offset + len as u64
    }

    /// The PCI_CFG capability's BAR window: (offset, length) if it names BAR 0
    /// with a 1, 2 or 4 byte access.
    fn pci_cfg_window(&self) -> Option<(u64, usize)> {
        let cap = self.pci_cfg_capability;
        let bar = self.config.u8_at(cap + PCI_CFG_BAR);
        let offset = u64::from(self.config.u32_at(cap + PCI_CFG_OFFSET));
        let length = self.config.u32_at(cap + PCI_CFG_LENGTH) as usize;
        (bar == BAR_INDEX && matches!(length, 1 | 2 | 4)).then_some((offset, length))
    }
}

/// A function's configuration space and where its live capabilities are.
struct Layout {
    config: ConfigSpace,
    msix_capability: usize,
    pci_cfg_capability: usize,
}

/// The header, BAR 0 and the capabilities that point into it: the four virtio
/// structures, the PCI_CFG window, then MSI-X.
fn config_space(device_type: u16, queues: usize, vectors: u16, bar_addr: u64) -> Layout {
    let id = VIRTIO_DEVICE_ID_BASE + device_type;
    let mut config = ConfigSpace::new(&Identity {
        vendor: VIRTIO_VENDOR_ID,
        device: id,
        revision: REVISION,
        class: match device_type {
            VIRTIO_TYPE_NET => CLASS_ETHERNET,
            VIRTIO_TYPE_BLOCK | VIRTIO_TYPE_FS => CLASS_STORAGE_OTHER,
            _ => CLASS_OTHER,
        },
        subsystem_vendor: VIRTIO_VENDOR_ID,
        subsystem_id: id,
    });
    config.add_memory_bar64(usize::from(BAR_INDEX), bar_addr, BAR_SIZE);
    let common = virtio_capability(CFG_COMMON, COMMON_OFFSET, COMMON_CONFIG_LEN);
    config.add_capability(CAPABILITY_VENDOR, &common);
    let doorbells = queues as u64 * u64::from(NOTIFY_OFF_MULTIPLIER);
    let mut notify = virtio_capability(CFG_NOTIFY, NOTIFY_OFFSET, doorbells);
    notify.extend_from_slice(&NOTIFY_OFF_MULTIPLIER.to_le_bytes());
    config.add_capability(CAPABILITY_VENDOR, &notify);
    let isr = virtio_capability(CFG_ISR, ISR_OFFSET, 1);
    config.add_capability(CAPABILITY_VENDOR, &isr);
    let device = virtio_capability(CFG_DEVICE, DEVICE_CONFIG_OFFSET, REGION_LEN);
    config.add_capability(CAPABILITY_VENDOR, &device);

    // The driver picks BAR, offset and length, then reads or writes the data dword.
    let mut pci_cfg = virtio_capability(CFG_PCI, 0, 0);
    pci_cfg.extend_from_slice(&[0; 4]);
    let pci_cfg_capability = config.add_capability(CAPABILITY_VENDOR, &pci_cfg);
    config.set_writable(pci_cfg_capability + PCI_CFG_BAR, &[0xff]);
    config.set_writable(pci_cfg_capability + PCI_CFG_OFFSET, &[0xff; 12]);

    let table = MSIX_TABLE_OFFSET as u32;
    let pba = MSIX_PBA_OFFSET as u32;
    let msix_body = msix::capability_body(vectors, BAR_INDEX, table, pba);
    let msix_capability = config.add_capability(msix::CAPABILITY_ID, &msix_body);
    config.set_writable(
        msix_capability + msix::CONTROL_OFFSET,
        &msix::CONTROL_WRITABLE,
    );
    Layout {
        config,
        msix_capability,
        pci_cfg_capability,
    }
}

/// A virtio_pci_cap after its ID and next pointer: cap_len, cfg_type, bar, id,
/// padding, offset, length.
fn virtio_capability(cfg_type: u8, offset: u64, length: u64) -> Vec<u8> {
    // cap_len counts the ID and next bytes too; the notify capability adds 4 more.
    let cap_len = if cfg_type == CFG_NOTIFY || cfg_type == CFG_PCI {
        20
    } else {
        16
    };
    let mut body = vec![cap_len, cfg_type, BAR_INDEX, 0, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    body
}

impl PciFunction for VirtioPciFunction {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        let data_field = self.pci_cfg_capability + PCI_CFG_DATA;
        if Self::overlaps(offset, data.len(), data_field, 4) {
            if let Some((bar_offset, length)) = self.pci_cfg_window() {
                let mut window = [0u8; 4];
                self.bar0_read(bar_offset, &mut window[..length]);
                for (i, byte) in window.iter().enumerate() {
                    self.config.set_u8(data_field + i, *byte);
                }
            }
        }
        self.config.read(offset, data);
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        self.config.write(offset, data);
        let control = self.msix_capability + msix::CONTROL_OFFSET;
        if Self::overlaps(offset, data.len(), control, 2) {
            let value = self.config.u16_at(control);
            if let Err(e) = self.interrupt.msix().set_control(value) {
                eprintln!("vmm: virtio-pci MSI-X: {e}");
            }
        }
        let data_field = self.pci_cfg_capability + PCI_CFG_DATA;
        if Self::overlaps(offset, data.len(), data_field, 4) {
            if let Some((bar_offset, length)) = self.pci_cfg_window() {
                let mut window = [0u8; 4];
                self.config.read(data_field as u64, &mut window);
                self.bar0_write(bar_offset, &window[..length]);
            }
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar == BAR_INDEX {
            self.bar0_read(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar == BAR_INDEX {
            self.bar0_write(offset, data);
        }
    }

    fn bar_mapped(&mut self, bar: u8, addr: Option<u64>) {
        if bar == BAR_INDEX {
            self.move_doorbells(addr);
        }
    }

    fn name(&self) -> &'static str {
        device_name(self.device.device_type())
    }

    fn check_savable(&self) -> Result<(), String> {
        self.device.can_save()
    }

    fn pause(&mut self) -> Result<(), String> {
        if self.activated && self.paused.is_none() {
            let queues = self.device.pause()?;
            self.activated = false;
            self.paused = Some(queues);
        }
        Ok(())
    }

    fn resume(&mut self) -> Result<(), String> {
        match self.paused.take() {
            Some(queues) => self.start_at(&positions(&queues)),
            None => Ok(()),
        }
    }

    fn save(&self) -> Result<FunctionState, String> {
        let positions = match &self.paused {
            Some(queues) => positions(queues),
            None if self.activated => return Err("the device is running: pause it first".into()),
            None => Vec::new(),
        };
        Ok(FunctionState::Virtio(Box::new(VirtioPciState {
            device_type: self.device.device_type(),
            config_space: self.config.save(),
            msix: self.interrupt.msix().save(),
            interrupt: self.interrupt.save(),
            common: self.common.save(),
            activated: self.paused.is_some(),
            positions,
            device: self.device.save_state()?,
        })))
    }

    fn restore(&mut self, state: &FunctionState) -> Result<(), String> {
        let FunctionState::Virtio(state) = state else {
            return Err(format!("{} saved here", state.name()));
        };
        let here = self.device.device_type();
        if state.device_type != here {
            return Err(format!("{} saved here", device_name(state.device_type)));
        }
        if self.activated || self.paused.is_some() {
            return Err("the device already runs".into());
        }
        self.device.restore_state(&state.device)?;
        self.config.restore(&state.config_space)?;
        let control = self
            .config
            .u16_at(self.msix_capability + msix::CONTROL_OFFSET);
        self.interrupt.msix().restore(&state.msix, control)?;
        self.interrupt.restore(&state.interrupt)?;
        self.common.restore(&state.common)?;
        match state.activated {
            true if self.common.status() & STATUS_DRIVER_OK == 0 => {
                Err("saved as running, but without DRIVER_OK".into())
            }
            true => self.start_at(&state.positions),
            false if !state.positions.is_empty() => {
                Err("queue positions saved for a device that was not running".into())
            }
            false => Ok(()),
        }
    }
}

/// Where each of a paused device's queues stands.
fn positions(queues: &PausedQueues) -> Vec<QueuePosition> {
    queues
        .iter()
        .map(|(index, queue)| QueuePosition {
            index: *index,
            next_avail: queue.next_avail(),
            next_used: queue.next_used(),
        })
        .collect()
}

impl Drop for VirtioPciFunction {
    fn drop(&mut self) {
        if self.activated {
            self.device.reset();
        }
    }
}

#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
