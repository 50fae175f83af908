//! MSI-X for one PCI function: the vector table and pending-bit array the guest
//! reaches in a BAR, the enable and function-mask bits of the capability, and an
//! irqfd per vector whose GSI KVM routes to the message the guest programmed.
//!
//! Masking is done here, not in KVM: a masked vector's interrupt sets its pending
//! bit instead of signalling the irqfd, and is delivered when the vector (or the
//! function) is unmasked.

use crate::vstate::interrupts::{GsiRouter, MsiMessage};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Arc;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// PCI capability ID of MSI-X.
pub const CAPABILITY_ID: u8 = 0x11;
/// Message control, in the capability's bytes 2-3: enable and function mask.
pub const CONTROL_ENABLE: u16 = 1 << 15;
pub const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Offset of message control within the capability.
pub const CONTROL_OFFSET: usize = 2;

/// One table entry: address low/high, data, vector control (16 bytes).
pub const ENTRY_SIZE: u64 = 16;
const ENTRY_DWORDS: usize = 4;
const ADDRESS_LO: usize = 0;
const ADDRESS_HI: usize = 1;
const DATA: usize = 2;
const VECTOR_CONTROL: usize = 3;
/// Vector control bit 0: the vector is masked (its reset value).
const VECTOR_MASKED: u32 = 1;

/// The capability after its ID and next pointer: message control (table size - 1),
/// then table and PBA offsets, each with the BAR index in the low 3 bits.
pub fn capability_body(vectors: u16, bar: u8, table_offset: u32, pba_offset: u32) -> [u8; 10] {
    let mut body = [0; 10];
    body[0..2].copy_from_slice(&(vectors - 1).to_le_bytes());
    body[2..6].copy_from_slice(&(table_offset | u32::from(bar)).to_le_bytes());
    body[6..10].copy_from_slice(&(pba_offset | u32::from(bar)).to_le_bytes());
    body
}

/// The guest may write only the enable and function-mask bits (high byte of message
/// control); offsets as from the capability's start.
pub const CONTROL_WRITABLE: [u8; 2] = [0, 0xc0];

/// The table and pending bits of a snapshot (enable and function mask are in
/// the configuration space's message control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixState {
    /// Per vector: address low, address high, data, vector control.
    pub table: Vec<[u32; ENTRY_DWORDS]>,
    pub pending: Vec<u64>,
}

struct Vector {
    gsi: u32,
    irqfd: EventFd,
}

pub struct Msix {
    table: Vec<[u32; ENTRY_DWORDS]>,
    /// Pending bits, 64 vectors per qword as the PBA lays them out.
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    vectors: Vec<Vector>,
    router: Arc<GsiRouter>,
}

impl Msix {
    /// `count` vectors (1..=2048), each with its own GSI and irqfd registered in KVM.
    pub fn new(count: u16, router: Arc<GsiRouter>) -> io::Result<Msix> {
        assert!((1..=2048).contains(&count), "MSI-X table size {count}");
        let mut vectors = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let gsi = router.allocate()?;
            let irqfd = EventFd::new(EFD_NONBLOCK)?;
            router.vm().register_irqfd(&irqfd, gsi)?;
            vectors.push(Vector { gsi, irqfd });
        }
        let mut masked = [0; ENTRY_DWORDS];
        masked[VECTOR_CONTROL] = VECTOR_MASKED;
        Ok(Msix {
            table: vec![masked; usize::from(count)],
            pending: vec![0; usize::from(count).div_ceil(64)],
            enabled: false,
            function_masked: false,
            vectors,
            router,
        })
    }

    pub fn count(&self) -> u16 {
        self.table.len() as u16
    }

    /// Bytes the table and the PBA take in the BAR.
    pub fn table_len(&self) -> u64 {
        self.table.len() as u64 * ENTRY_SIZE
    }

    pub fn pba_len(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn gsi(&self, vector: u16) -> Option<u32> {
        self.vectors.get(usize::from(vector)).map(|v| v.gsi)
    }

    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = self
                .dword(at)
                .map_or(0, |(entry, dword)| self.table[entry][dword])
                .to_le_bytes()[(at % 4) as usize];
        }
    }

    /// The entry and dword at byte `at` of the table.
    fn dword(&self, at: u64) -> Option<(usize, usize)> {
        let entry = usize::try_from(at / ENTRY_SIZE).ok()?;
        (entry < self.table.len()).then_some((entry, (at % ENTRY_SIZE / 4) as usize))
    }

    pub fn write_table(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut touched = Vec::new();
        for (i, &value) in data.iter().enumerate() {
            let at = offset + i as u64;
            let Some((entry, dword)) = self.dword(at) else {
                continue;
            };
            let mut bytes = self.table[entry][dword].to_le_bytes();
            bytes[(at % 4) as usize] = value;
            let mut new = u32::from_le_bytes(bytes);
            if dword == VECTOR_CONTROL {
                // Only the mask bit is defined; the rest reads as zero.
                new &= VECTOR_MASKED;
            }
            self.table[entry][dword] = new;
            if !touched.contains(&entry) {
                touched.push(entry);
            }
        }
        for entry in touched {
            let vector = &self.vectors[entry];
            self.router.set_msi(vector.gsi, self.message(entry))?;
        }
        self.deliver_pending()
    }

    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = usize::try_from(at / 8)
                .ok()
                .and_then(|q| self.pending.get(q))
                .map_or(0, |bits| bits.to_le_bytes()[(at % 8) as usize]);
        }
    }

    /// The guest wrote message control.
    pub fn set_control(&mut self, control: u16) -> io::Result<()> {
        self.enabled = control & CONTROL_ENABLE != 0;
        self.function_masked = control & CONTROL_FUNCTION_MASK != 0;
        self.deliver_pending()
    }

    fn message(&self, entry: usize) -> MsiMessage {
        let e = &self.table[entry];
        MsiMessage {
            address: u64::from(e[ADDRESS_HI]) << 32 | u64::from(e[ADDRESS_LO]),
            data: e[DATA],
        }
    }

    fn masked(&self, vector: usize) -> bool {
        self.function_masked || self.table[vector][VECTOR_CONTROL] & VECTOR_MASKED != 0
    }

    pub fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        self.pending
            .get(v / 64)
            .is_some_and(|b| b & (1 << (v % 64)) != 0)
    }

    fn set_pending(&mut self, vector: usize, pending: bool) {
        let bit = 1u64 << (vector % 64);
        if pending {
            self.pending[vector / 64] |= bit;
        } else {
            self.pending[vector / 64] &= !bit;
        }
    }

    /// Raise `vector`: signalled now, or left pending while masked. Returns false
    /// when MSI-X is off (the function then has no way to interrupt) or the vector
    /// does not exist.
    pub fn trigger(&mut self, vector: u16) -> io::Result<bool> {
        let v = usize::from(vector);
        if !self.enabled || v >= self.table.len() {
            return Ok(false);
        }
        if self.masked(v) {
            self.set_pending(v, true);
        } else {
            self.vectors[v].irqfd.write(1)?;
        }
        Ok(true)
    }

    fn deliver_pending(&mut self) -> io::Result<()> {
        if !self.enabled || self.function_masked {
            return Ok(());
        }
        for v in 0..self.table.len() {
            if self.is_pending(v as u16) && !self.masked(v) {
                self.set_pending(v, false);
                self.vectors[v].irqfd.write(1)?;
            }
        }
        Ok(())
    }

    pub fn save(&self) -> MsixState {
        MsixState {
            table: self.table.clone(),
            pending: self.pending.clone(),
        }
    }

    /// Takes on a saved table and pending bits, routes every programmed vector's GSI
    /// in KVM again, then applies message `control` (which delivers what is pending
    /// and unmasked, as an unmask would).
    pub fn restore(&mut self, state: &MsixState, control: u16) -> Result<(), String> {
        if state.table.len() != self.table.len() || state.pending.len() != self.pending.len() {
            return Err(format!(
                "{} MSI-X vectors saved, the device has {}",
                state.table.len(),
                self.table.len()
            ));
        }
        if let Some(v) = state
            .table
            .iter()
            .position(|e| e[VECTOR_CONTROL] & !VECTOR_MASKED != 0)
        {
            return Err(format!(
                "MSI-X vector {v}: reserved vector control bits set"
            ));
        }
        let count = self.table.len();
        let beyond = |(q, bits): (usize, &u64)| {
            let valid = count.saturating_sub(q * 64).min(64);
            valid < 64 && bits >> valid != 0
        };
        if state.pending.iter().enumerate().any(beyond) {
            return Err("MSI-X pending bits set for vectors the device does not have".into());
        }
        self.table.clone_from(&state.table);
        self.pending.clone_from(&state.pending);
        for entry in 0..count {
            let message = self.message(entry);
            // An entry the guest never programmed has no route, as at boot.
            if message != MsiMessage::default() {
                self.router
                    .set_msi(self.vectors[entry].gsi, message)
                    .map_err(|e| format!("routing MSI-X vector {entry}: {e}"))?;
            }
        }
        self.set_control(control)
            .map_err(|e| format!("delivering pending MSI-X vectors: {e}"))
    }

    /// How many times `vector`'s irqfd fired since the last call (tests only: the
    /// real reader is KVM).
    #[cfg(test)]
    pub fn take_fired(&self, vector: u16) -> u64 {
        self.vectors[usize::from(vector)].irqfd.read().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::interrupts::fake::FakeVm;
    use crate::vstate::interrupts::{legacy_routes, Route, FIRST_MSI_GSI};

    fn msix(count: u16) -> (Arc<FakeVm>, Msix) {
        let vm = Arc::new(FakeVm::default());
        let router = Arc::new(GsiRouter::new(vm.clone()));
        (vm, Msix::new(count, router).unwrap())
    }

    fn write32(m: &mut Msix, offset: u64, value: u32) {
        m.write_table(offset, &value.to_le_bytes()).unwrap();
    }

    fn read32(m: &Msix, offset: u64) -> u32 {
        let mut b = [0; 4];
        m.read_table(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// Program `vector` with a message for APIC 0 and `irq`, leaving it masked.
    fn program(m: &mut Msix, vector: u64, irq: u32) {
        let base = vector * ENTRY_SIZE;
        write32(m, base, 0xfee0_0000);
        write32(m, base + 4, 0);
        write32(m, base + 8, irq);
    }

    fn unmask(m: &mut Msix, vector: u64) {
        write32(m, vector * ENTRY_SIZE + 12, 0);
    }

    #[test]
    fn capability_body_names_table_and_pba() {
        let body = capability_body(3, 0, 0x4000, 0x5000);
        assert_eq!(body, [2, 0, 0, 0x40, 0, 0, 0, 0x50, 0, 0]);
        assert_eq!(capability_body(1, 2, 0x800, 0x900)[2], 2);
    }

    #[test]
    fn every_vector_gets_an_irqfd_on_its_own_gsi() {
        let (vm, m) = msix(3);
        let gsis: Vec<u32> = (0..3).map(|v| FIRST_MSI_GSI + v).collect();
        assert_eq!(*vm.irqfds.lock().unwrap(), gsis);
        assert_eq!(m.gsi(2), Some(FIRST_MSI_GSI + 2));
        assert_eq!((m.table_len(), m.pba_len()), (48, 8));
    }

    #[test]
    fn entries_start_masked_and_keep_only_the_mask_bit() {
        let (_, mut m) = msix(2);
        assert_eq!(read32(&m, 12), 1);
        assert_eq!(read32(&m, 16 + 12), 1);
        write32(&mut m, 12, 0xffff_fffe);
        assert_eq!(read32(&m, 12), 0);
        // Byte accesses to the table work too.
        m.write_table(8, &[0x41]).unwrap();
        assert_eq!(read32(&m, 8), 0x41);
        // Past the table: zeros, writes ignored.
        write32(&mut m, 32, 7);
        assert_eq!(read32(&m, 32), 0);
    }

    #[test]
    fn programming_an_entry_routes_its_gsi() {
        let (vm, mut m) = msix(2);
        program(&mut m, 1, 0x45);
        let tables = vm.tables.lock().unwrap();
        let last = tables.last().unwrap();
        assert!(last.starts_with(&legacy_routes()));
        assert_eq!(last.last().unwrap().gsi, FIRST_MSI_GSI + 1);
        assert_eq!(
            last.last().unwrap().route,
            Route::Msi(MsiMessage {
                address: 0xfee0_0000,
                data: 0x45
            })
        );
    }

    #[test]
    fn nothing_fires_while_msix_is_disabled() {
        let (_, mut m) = msix(1);
        program(&mut m, 0, 0x40);
        unmask(&mut m, 0);
        assert!(!m.trigger(0).unwrap());
        assert_eq!(m.take_fired(0), 0);
        assert!(!m.is_pending(0));
    }

    #[test]
    fn masked_vectors_pend_and_fire_when_unmasked() {
        let (_, mut m) = msix(2);
        m.set_control(CONTROL_ENABLE).unwrap();
        program(&mut m, 1, 0x41);
        assert!(m.trigger(1).unwrap());
        assert_eq!(m.take_fired(1), 0);
        assert!(m.is_pending(1));
        let mut pba = [0; 8];
        m.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0b10);
        unmask(&mut m, 1);
        assert_eq!(m.take_fired(1), 1);
        assert!(!m.is_pending(1));
        // Unmasked: straight to the irqfd.
        m.trigger(1).unwrap();
        assert_eq!(m.take_fired(1), 1);
        assert!(!m.trigger(9).unwrap());
    }

    #[test]
    fn the_function_mask_holds_every_vector() {
        let (_, mut m) = msix(2);
        program(&mut m, 0, 0x40);
        unmask(&mut m, 0);
        m.set_control(CONTROL_ENABLE | CONTROL_FUNCTION_MASK)
            .unwrap();
        m.trigger(0).unwrap();
        assert_eq!(m.take_fired(0), 0);
        assert!(m.is_pending(0));
        m.set_control(CONTROL_ENABLE).unwrap();
        assert_eq!(m.take_fired(0), 1);
        assert!(!m.is_pending(0));
    }
}
