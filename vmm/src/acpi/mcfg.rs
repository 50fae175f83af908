//! MCFG: where PCI Express configuration space (ECAM) lives.

use super::tables::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{PCI_ECAM_SIZE, PCI_ECAM_START};
use acpi_tables::mcfg::MCFG;

/// ECAM gives each bus 1 MiB (32 devices × 8 functions × 4 KiB).
const ECAM_BUS_SIZE: u64 = 1 << 20;

/// The last PCI bus the ECAM window covers.
pub const PCI_END_BUS: u8 = {
    let buses = PCI_ECAM_SIZE / ECAM_BUS_SIZE;
    assert!(buses >= 1 && buses <= 256);
    (buses - 1) as u8
};

/// One allocation: segment 0, buses 0..=PCI_END_BUS, at PCI_ECAM_START.
pub fn mcfg() -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(PCI_ECAM_START.0, 0, 0, PCI_END_BUS);
    to_bytes(&mcfg)
}
