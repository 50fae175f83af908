//! The virtio-pci common configuration structure (virtio 1.x, 4.1.4.3): feature
//! negotiation, device status and per-queue setup, as registers the driver reads
//! and writes in any width (64-bit fields often as two 32-bit halves).
//!
//! This is state and rules only; the transport acts on the [`Effect`] a write has
//! (start the device, reset it).

use super::pci_interrupt::{PciInterrupt, NO_VECTOR};
use serde::{Deserialize, Serialize};

pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
pub const DEVICE_FEATURE: u64 = 0x04;
pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
pub const DRIVER_FEATURE: u64 = 0x0c;
pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
pub const NUM_QUEUES: u64 = 0x12;
pub const DEVICE_STATUS: u64 = 0x14;
pub const CONFIG_GENERATION: u64 = 0x15;
pub const QUEUE_SELECT: u64 = 0x16;
pub const QUEUE_SIZE: u64 = 0x18;
pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
pub const QUEUE_ENABLE: u64 = 0x1c;
pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
pub const QUEUE_DESC: u64 = 0x20;
pub const QUEUE_DRIVER: u64 = 0x28;
pub const QUEUE_DEVICE: u64 = 0x30;
/// Bytes the structure takes (without the optional notify-data and reset fields,
/// whose features are never offered).
pub const COMMON_CONFIG_LEN: u64 = 0x38;

/// (offset, width) of every field, in order.
const FIELDS: [(u64, u64); 16] = [
    (DEVICE_FEATURE_SELECT, 4),
    (DEVICE_FEATURE, 4),
    (DRIVER_FEATURE_SELECT, 4),
    (DRIVER_FEATURE, 4),
    (CONFIG_MSIX_VECTOR, 2),
    (NUM_QUEUES, 2),
    (DEVICE_STATUS, 1),
    (CONFIG_GENERATION, 1),
    (QUEUE_SELECT, 2),
    (QUEUE_SIZE, 2),
    (QUEUE_MSIX_VECTOR, 2),
    (QUEUE_ENABLE, 2),
    (QUEUE_NOTIFY_OFF, 2),
    (QUEUE_DESC, 8),
    (QUEUE_DRIVER, 8),
    (QUEUE_DEVICE, 8),
];

/// Device status bits.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_NEEDS_RESET: u8 = 0x40;
pub const STATUS_FAILED: u8 = 0x80;

/// VIRTIO_F_VERSION_1: a modern driver; the only kind this transport serves.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// What a write asks of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// DRIVER_OK with negotiated features: start serving the queues.
    Activate,
    /// 0 written to device_status.
    Reset,
}

/// One queue as the driver sets it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSetup {
    pub max_size: u16,
    pub size: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

impl QueueSetup {
    fn new(max_size: u16) -> QueueSetup {
        QueueSetup {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// The driver's side of the common configuration, for a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonState {
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub status: u8,
    pub queue_select: u16,
    pub queues: Vec<QueueSetup>,
}

pub struct CommonConfig {
    /// What the device offers (fixed for the device's life).
    offered: u64,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    queues: Vec<QueueSetup>,
}

impl CommonConfig {
    pub fn new(offered: u64, queue_max_sizes: &[u16]) -> CommonConfig {
        CommonConfig {
            offered,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues: queue_max_sizes
                .iter()
                .map(|&m| QueueSetup::new(m))
                .collect(),
        }
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    pub fn queues(&self) -> &[QueueSetup] {
        &self.queues
    }

    /// The device cannot go on until the driver resets it.
    pub fn set_needs_reset(&mut self) {
        self.status |= STATUS_NEEDS_RESET;
    }

    /// Back to the state before the driver touched anything.
    pub fn reset(&mut self) {
        *self = CommonConfig::new(
            self.offered,
            &self.queues.iter().map(|q| q.max_size).collect::<Vec<_>>(),
        );
    }

    pub fn save(&self) -> CommonState {
        CommonState {
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            status: self.status,
            queue_select: self.queue_select,
            queues: self.queues.clone(),
        }
    }

    /// Takes on a saved state that this device could have reached: the same queues,
    /// features it offers, sizes the driver could have set.
    pub fn restore(&mut self, state: &CommonState) -> Result<(), String> {
        if state.queues.len() != self.queues.len() {
            return Err(format!(
                "{} queues saved, the device has {}",
                state.queues.len(),
                self.queues.len()
            ));
        }
        for (index, (saved, here)) in state.queues.iter().zip(&self.queues).enumerate() {
            if saved.max_size != here.max_size {
                return Err(format!(
                    "queue {index} had at most {} entries when saved, {} here",
                    saved.max_size, here.max_size
                ));
            }
            // Enabled or not, a size the driver could not have set is not ours.
            if saved.size > saved.max_size || !saved.size.is_power_of_two() {
                return Err(format!(
                    "queue {index}: size {} (at most {}, a power of two)",
                    saved.size, saved.max_size
                ));
            }
        }
        if state.driver_features & !self.offered != 0 {
            return Err(format!(
                "the driver accepted features {:#x}, the device offers {:#x}",
                state.driver_features, self.offered
            ));
        }
        const KNOWN: u8 = STATUS_ACKNOWLEDGE
            | STATUS_DRIVER
            | STATUS_DRIVER_OK
            | STATUS_FEATURES_OK
            | STATUS_NEEDS_RESET
            | STATUS_FAILED;
        if state.status & !KNOWN != 0 {
            return Err(format!(
                "device status {:#x} has undefined bits",
                state.status
            ));
        }
        if state.status & STATUS_FEATURES_OK != 0 && state.driver_features & VIRTIO_F_VERSION_1 == 0
        {
            return Err("features accepted without VIRTIO_F_VERSION_1".into());
        }
        self.device_feature_select = state.device_feature_select;
        self.driver_feature_select = state.driver_feature_select;
        self.driver_features = state.driver_features;
        self.status = state.status;
        self.queue_select = state.queue_select;
        self.queues.clone_from(&state.queues);
        Ok(())
    }

    pub fn read(&self, offset: u64, data: &mut [u8], irq: &PciInterrupt) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = match field_at(at) {
                Some((start, _)) => self.get(start, irq).to_le_bytes()[(at - start) as usize],
                None => 0,
            };
        }
    }

    /// Writes each field the access covers, merging partial writes (a 64-bit
    /// address written as two halves) with the field's current value.
    pub fn write(&mut self, offset: u64, data: &[u8], irq: &PciInterrupt) -> Effect {
        let end = offset + data.len() as u64;
        let mut effect = Effect::None;
        for (start, width) in FIELDS {
            if start + width <= offset || start >= end {
                continue;
            }
            let mut bytes = self.get(start, irq).to_le_bytes();
            for at in start.max(offset)..(start + width).min(end) {
                bytes[(at - start) as usize] = data[(at - offset) as usize];
            }
            let value = u64::from_le_bytes(bytes);
            match self.set(start, value, irq) {
                Effect::None => {}
                other => effect = other,
            }
        }
        effect
    }

    fn selected(&self) -> Option<&QueueSetup> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn half(value: u64, select: u32) -> u64 {
        match select {
            0 => value & 0xffff_ffff,
            1 => value >> 32,
            _ => 0,
        }
    }

    fn get(&self, field: u64, irq: &PciInterrupt) -> u64 {
        let queue = self.selected();
        match field {
            DEVICE_FEATURE_SELECT => u64::from(self.device_feature_select),
            DEVICE_FEATURE => Self::half(self.offered, self.device_feature_select),
            DRIVER_FEATURE_SELECT => u64::from(self.driver_feature_select),
            DRIVER_FEATURE => Self::half(self.driver_features, self.driver_feature_select),
            CONFIG_MSIX_VECTOR => u64::from(irq.config_vector()),
            NUM_QUEUES => self.queues.len() as u64,
            DEVICE_STATUS => u64::from(self.status),
            CONFIG_GENERATION => u64::from(irq.config_generation()),
            QUEUE_SELECT => u64::from(self.queue_select),
            // Size 0 tells the driver the selected queue does not exist.
            QUEUE_SIZE => queue.map_or(0, |q| u64::from(q.size)),
            QUEUE_MSIX_VECTOR => match queue {
                Some(_) => u64::from(irq.queue_vector(self.queue_select)),
                None => u64::from(NO_VECTOR),
            },
            QUEUE_ENABLE => queue.map_or(0, |q| u64::from(q.enabled)),
            // Each queue has its own doorbell: notify_off is the queue index.
            QUEUE_NOTIFY_OFF => queue.map_or(0, |_| u64::from(self.queue_select)),
            QUEUE_DESC => queue.map_or(0, |q| q.desc),
            QUEUE_DRIVER => queue.map_or(0, |q| q.driver),
            QUEUE_DEVICE => queue.map_or(0, |q| q.device),
            _ => 0,
        }
    }

    fn set(&mut self, field: u64, value: u64, irq: &PciInterrupt) -> Effect {
        let driver_ok = self.status & STATUS_DRIVER_OK != 0;
        let queue_index = self.queue_select;
        match field {
            DEVICE_FEATURE_SELECT => self.device_feature_select = value as u32,
            DRIVER_FEATURE_SELECT => self.driver_feature_select = value as u32,
            // Features are fixed once the driver said FEATURES_OK.
            DRIVER_FEATURE if self.status & STATUS_FEATURES_OK == 0 => {
                let value = value & 0xffff_ffff;
                match self.driver_feature_select {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
                    1 => self.driver_features = (self.driver_features & 0xffff_ffff) | value << 32,
                    _ => {}
                }
            }
            CONFIG_MSIX_VECTOR => irq.set_config_vector(value as u16),
            DEVICE_STATUS => return self.set_status(value as u8),
            QUEUE_SELECT => self.queue_select = value as u16,
            QUEUE_MSIX_VECTOR if self.selected().is_some() => {
                irq.set_queue_vector(queue_index, value as u16)
            }
            // A live queue's layout cannot change under the device.
            QUEUE_SIZE | QUEUE_ENABLE | QUEUE_DESC | QUEUE_DRIVER | QUEUE_DEVICE if !driver_ok => {
                if let Some(q) = self.queues.get_mut(usize::from(queue_index)) {
                    match field {
                        QUEUE_SIZE => q.size = value as u16,
                        // Drivers never disable a queue but by resetting the device.
                        QUEUE_ENABLE => q.enabled |= value == 1,
                        QUEUE_DESC => q.desc = value,
                        QUEUE_DRIVER => q.driver = value,
                        _ => q.device = value,
                    }
                }
            }
            // Read-only fields, and writes the state forbids.
            _ => {}
        }
        Effect::None
    }

    /// The driver only ever adds status bits, or writes 0 to reset.
    fn set_status(&mut self, new: u8) -> Effect {
        if new == 0 {
            return Effect::Reset;
        }
        let old = self.status;
        if new & old != old {
            return Effect::None;
        }
        let added = new & !old;
        self.status = new;
        if added & STATUS_FEATURES_OK != 0 && !self.features_acceptable() {
            // The driver reads status back and gives up on the device.
            self.status &= !STATUS_FEATURES_OK;
        }
        if added & STATUS_DRIVER_OK != 0 {
            if self.status & STATUS_FEATURES_OK == 0 {
                self.status &= !STATUS_DRIVER_OK;
                self.status |= STATUS_NEEDS_RESET;
                return Effect::None;
            }
            return Effect::Activate;
        }
        Effect::None
    }

    /// The driver may accept only offered features, and must be a modern one.
    fn features_acceptable(&self) -> bool {
        self.driver_features & !self.offered == 0 && self.driver_features & VIRTIO_F_VERSION_1 != 0
    }
}

fn field_at(at: u64) -> Option<(u64, u64)> {
    FIELDS
        .iter()
        .copied()
        .find(|&(start, width)| (start..start + width).contains(&at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::msix::Msix;
    use crate::vstate::interrupts::fake::FakeVm;
    use crate::vstate::interrupts::GsiRouter;
    use std::sync::Arc;

    const OFFERED: u64 = VIRTIO_F_VERSION_1 | 1 << 9 | 1 << 1;

    fn setup() -> (CommonConfig, PciInterrupt) {
        let router = Arc::new(GsiRouter::new(Arc::new(FakeVm::default())));
        let irq = PciInterrupt::new(Msix::new(3, router).unwrap(), 2);
        (CommonConfig::new(OFFERED, &[256, 128]), irq)
    }

    fn r(c: &CommonConfig, irq: &PciInterrupt, offset: u64, width: usize) -> u64 {
        let mut b = [0u8; 8];
        c.read(offset, &mut b[..width], irq);
        u64::from_le_bytes(b)
    }

    fn w(c: &mut CommonConfig, irq: &PciInterrupt, offset: u64, width: usize, v: u64) -> Effect {
        c.write(offset, &v.to_le_bytes()[..width], irq)
    }

    /// ACKNOWLEDGE, DRIVER, features, FEATURES_OK: the start of every driver.
    fn negotiate(c: &mut CommonConfig, irq: &PciInterrupt, features: u64) -> u8 {
        w(c, irq, DEVICE_STATUS, 1, 1);
        w(c, irq, DEVICE_STATUS, 1, 3);
        w(c, irq, DRIVER_FEATURE_SELECT, 4, 0);
        w(c, irq, DRIVER_FEATURE, 4, features & 0xffff_ffff);
        w(c, irq, DRIVER_FEATURE_SELECT, 4, 1);
        w(c, irq, DRIVER_FEATURE, 4, features >> 32);
        w(c, irq, DEVICE_STATUS, 1, 0xb);
        r(c, irq, DEVICE_STATUS, 1) as u8
    }

    #[test]
    fn device_features_read_in_two_halves() {
        let (mut c, irq) = setup();
        assert_eq!(r(&c, &irq, DEVICE_FEATURE, 4), 1 << 9 | 1 << 1);
        w(&mut c, &irq, DEVICE_FEATURE_SELECT, 4, 1);
        assert_eq!(r(&c, &irq, DEVICE_FEATURE, 4), 1);
        w(&mut c, &irq, DEVICE_FEATURE_SELECT, 4, 2);
        assert_eq!(r(&c, &irq, DEVICE_FEATURE, 4), 0);
        assert_eq!(r(&c, &irq, NUM_QUEUES, 2), 2);
    }

    #[test]
    fn features_ok_needs_offered_features_and_version_1() {
        let (mut c, irq) = setup();
        assert_eq!(negotiate(&mut c, &irq, VIRTIO_F_VERSION_1 | 1 << 9), 0xb);
        assert_eq!(c.driver_features(), VIRTIO_F_VERSION_1 | 1 << 9);
        // Fixed from now on.
        w(&mut c, &irq, DRIVER_FEATURE_SELECT, 4, 0);
        w(&mut c, &irq, DRIVER_FEATURE, 4, 0);
        assert_eq!(c.driver_features(), VIRTIO_F_VERSION_1 | 1 << 9);

        let (mut c, irq) = setup();
        assert_eq!(negotiate(&mut c, &irq, VIRTIO_F_VERSION_1 | 1 << 5), 3);
        let (mut c, irq) = setup();
        assert_eq!(negotiate(&mut c, &irq, 1 << 9), 3);
    }

    #[test]
    fn driver_ok_activates_only_after_features_ok() {
        let (mut c, irq) = setup();
        w(&mut c, &irq, DEVICE_STATUS, 1, 3);
        assert_eq!(w(&mut c, &irq, DEVICE_STATUS, 1, 7), Effect::None);
        assert_eq!(c.status() & STATUS_NEEDS_RESET, STATUS_NEEDS_RESET);
        assert_eq!(c.status() & STATUS_DRIVER_OK, 0);

        let (mut c, irq) = setup();
        negotiate(&mut c, &irq, VIRTIO_F_VERSION_1);
        assert_eq!(w(&mut c, &irq, DEVICE_STATUS, 1, 0xf), Effect::Activate);
        // Clearing bits is not a thing drivers do; only 0 resets.
        assert_eq!(w(&mut c, &irq, DEVICE_STATUS, 1, 0x3), Effect::None);
        assert_eq!(c.status(), 0xf);
        assert_eq!(w(&mut c, &irq, DEVICE_STATUS, 1, 0), Effect::Reset);
    }

    #[test]
    fn queue_setup_through_queue_select() {
        let (mut c, irq) = setup();
        assert_eq!(r(&c, &irq, QUEUE_SIZE, 2), 256);
        w(&mut c, &irq, QUEUE_SELECT, 2, 1);
        assert_eq!(r(&c, &irq, QUEUE_SIZE, 2), 128);
        assert_eq!(r(&c, &irq, QUEUE_NOTIFY_OFF, 2), 1);
        w(&mut c, &irq, QUEUE_SIZE, 2, 64);
        // 64-bit addresses as two 32-bit halves, low first.
        w(&mut c, &irq, QUEUE_DESC, 4, 0x8000_1000);
        w(&mut c, &irq, QUEUE_DESC + 4, 4, 0x1);
        w(&mut c, &irq, QUEUE_DRIVER, 8, 0x2000);
        w(&mut c, &irq, QUEUE_DEVICE, 8, 0x3000);
        w(&mut c, &irq, QUEUE_MSIX_VECTOR, 2, 2);
        w(&mut c, &irq, QUEUE_ENABLE, 2, 1);
        assert_eq!(r(&c, &irq, QUEUE_DESC, 8), 0x1_8000_1000);
        assert_eq!(r(&c, &irq, QUEUE_DESC + 4, 4), 1);
        assert_eq!(r(&c, &irq, QUEUE_MSIX_VECTOR, 2), 2);
        assert_eq!(
            c.queues()[1],
            QueueSetup {
                max_size: 128,
                size: 64,
                enabled: true,
                desc: 0x1_8000_1000,
                driver: 0x2000,
                device: 0x3000
            }
        );
        // A queue that does not exist: size 0, no vector, writes ignored.
        w(&mut c, &irq, QUEUE_SELECT, 2, 2);
        assert_eq!(r(&c, &irq, QUEUE_SIZE, 2), 0);
        assert_eq!(r(&c, &irq, QUEUE_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
        w(&mut c, &irq, QUEUE_ENABLE, 2, 1);
        assert_eq!(r(&c, &irq, QUEUE_ENABLE, 2), 0);
    }

    #[test]
    fn vectors_beyond_the_table_read_back_as_no_vector() {
        let (mut c, irq) = setup();
        w(&mut c, &irq, CONFIG_MSIX_VECTOR, 2, 0);
        assert_eq!(r(&c, &irq, CONFIG_MSIX_VECTOR, 2), 0);
        w(&mut c, &irq, CONFIG_MSIX_VECTOR, 2, 3);
        assert_eq!(r(&c, &irq, CONFIG_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
        w(&mut c, &irq, QUEUE_MSIX_VECTOR, 2, 7);
        assert_eq!(r(&c, &irq, QUEUE_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
    }

    #[test]
    fn queues_are_frozen_after_driver_ok_and_reset_restores_defaults() {
        let (mut c, irq) = setup();
        negotiate(&mut c, &irq, VIRTIO_F_VERSION_1);
        w(&mut c, &irq, QUEUE_SIZE, 2, 16);
        w(&mut c, &irq, QUEUE_ENABLE, 2, 1);
        w(&mut c, &irq, DEVICE_STATUS, 1, 0xf);
        w(&mut c, &irq, QUEUE_SIZE, 2, 32);
        assert_eq!(c.queues()[0].size, 16);
        c.reset();
        assert_eq!(c.status(), 0);
        assert_eq!(c.driver_features(), 0);
        assert_eq!(c.queues()[0], QueueSetup::new(256));
    }

    #[test]
    fn config_generation_follows_config_changes() {
        use crate::virtio::device::VirtioInterrupt;
        let (c, irq) = setup();
        assert_eq!(r(&c, &irq, CONFIG_GENERATION, 1), 0);
        irq.notify_config().unwrap();
        assert_eq!(r(&c, &irq, CONFIG_GENERATION, 1), 1);
        // A dword read at device_status covers status, generation and queue_select.
        assert_eq!(r(&c, &irq, DEVICE_STATUS, 4), 0x0000_0100);
    }
}
