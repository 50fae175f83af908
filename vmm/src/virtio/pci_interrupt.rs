//! How a virtio-pci function interrupts its driver: the MSI-X vector the driver
//! chose for each queue and for configuration changes, and the ISR byte. Shared
//! between the vCPU that programs it and the device worker that raises it.

use super::device::VirtioInterrupt;
use super::msix::Msix;
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

/// "No vector": the driver has not assigned one (or asked for one that does not
/// exist, which the device reports back this way).
pub const NO_VECTOR: u16 = 0xffff;
/// ISR status bits.
pub const ISR_QUEUE: u8 = 1;
pub const ISR_CONFIG: u8 = 2;

/// The interrupt side of a snapshot: the vectors the driver chose and the ISR byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterruptState {
    pub isr: u8,
    pub config_generation: u8,
    pub config_vector: u16,
    pub queue_vectors: Vec<u16>,
}

pub struct PciInterrupt {
    msix: Mutex<Msix>,
    isr: AtomicU8,
    config_generation: AtomicU8,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
}

impl PciInterrupt {
    pub fn new(msix: Msix, queues: usize) -> PciInterrupt {
        PciInterrupt {
            msix: Mutex::new(msix),
            isr: AtomicU8::new(0),
            config_generation: AtomicU8::new(0),
            config_vector: AtomicU16::new(NO_VECTOR),
            queue_vectors: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
        }
    }

    pub fn msix(&self) -> MutexGuard<'_, Msix> {
        self.msix.lock().expect("MSI-X lock")
    }

    /// Reading ISR status clears it.
    pub fn take_isr(&self) -> u8 {
        self.isr.swap(0, Ordering::AcqRel)
    }

    pub fn config_generation(&self) -> u8 {
        self.config_generation.load(Ordering::Acquire)
    }

    pub fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::Acquire)
    }

    pub fn queue_vector(&self, queue: u16) -> u16 {
        self.queue_vectors
            .get(usize::from(queue))
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire))
    }

    /// A vector the table does not have reads back as NO_VECTOR, which is how the
    /// driver learns it asked too much.
    fn valid(&self, vector: u16) -> u16 {
        if vector < self.msix().count() {
            vector
        } else {
            NO_VECTOR
        }
    }

    pub fn set_config_vector(&self, vector: u16) {
        self.config_vector
            .store(self.valid(vector), Ordering::Release);
    }

    pub fn set_queue_vector(&self, queue: u16, vector: u16) {
        let vector = self.valid(vector);
        if let Some(v) = self.queue_vectors.get(usize::from(queue)) {
            v.store(vector, Ordering::Release);
        }
    }

    /// Device reset: vectors unassigned, nothing pending in ISR. The MSI-X table is
    /// PCI function state and stays.
    pub fn reset(&self) {
        self.isr.store(0, Ordering::Release);
        self.config_vector.store(NO_VECTOR, Ordering::Release);
        for v in &self.queue_vectors {
            v.store(NO_VECTOR, Ordering::Release);
        }
    }

    pub fn save(&self) -> InterruptState {
        InterruptState {
            isr: self.isr.load(Ordering::Acquire),
            config_generation: self.config_generation(),
            config_vector: self.config_vector(),
            queue_vectors: (0..self.queue_vectors.len())
                .map(|q| self.queue_vector(q as u16))
                .collect(),
        }
    }

    /// Takes on saved vectors, each one the table has (or none).
    pub fn restore(&self, state: &InterruptState) -> Result<(), String> {
        if state.queue_vectors.len() != self.queue_vectors.len() {
            return Err(format!(
                "{} queue vectors saved, the device has {} queues",
                state.queue_vectors.len(),
                self.queue_vectors.len()
            ));
        }
        if state.isr & !(ISR_QUEUE | ISR_CONFIG) != 0 {
            return Err(format!("ISR status {:#x} has undefined bits", state.isr));
        }
        let vectors = std::iter::once(("configuration", state.config_vector))
            .chain(state.queue_vectors.iter().map(|&v| ("queue", v)));
        for (what, vector) in vectors {
            if vector != NO_VECTOR && self.valid(vector) == NO_VECTOR {
                return Err(format!(
                    "{what} MSI-X vector {vector} is past the table's {} vectors",
                    self.msix().count()
                ));
            }
        }
        self.isr.store(state.isr, Ordering::Release);
        self.config_generation
            .store(state.config_generation, Ordering::Release);
        self.config_vector
            .store(state.config_vector, Ordering::Release);
        for (slot, &vector) in self.queue_vectors.iter().zip(&state.queue_vectors) {
            slot.store(vector, Ordering::Release);
        }
        Ok(())
    }

    fn raise(&self, isr: u8, vector: u16) -> io::Result<()> {
        // ISR is what a driver without MSI-X polls; set it either way.
        self.isr.fetch_or(isr, Ordering::AcqRel);
        if vector != NO_VECTOR {
            self.msix().trigger(vector)?;
        }
        Ok(())
    }
}

impl VirtioInterrupt for PciInterrupt {
    fn notify_queue(&self, queue: u16) -> io::Result<()> {
        if usize::from(queue) >= self.queue_vectors.len() {
            return Err(io::Error::other(format!("no queue {queue}")));
        }
        self.raise(ISR_QUEUE, self.queue_vector(queue))
    }

    fn notify_config(&self) -> io::Result<()> {
        // A driver re-reads config space until the generation holds still.
        self.config_generation.fetch_add(1, Ordering::AcqRel);
        self.raise(ISR_CONFIG, self.config_vector())
    }
}
