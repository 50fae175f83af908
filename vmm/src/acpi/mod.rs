//! ACPI tables for the guest: the only way a kernel without MP-table support finds its
//! CPUs and IOAPIC, and the path for clean poweroff (guest-initiated via `_S5_` and the
//! sleep control register, host-initiated via the GED and the ACPI power button).
//!
//! Everything lives in `ACPI_START..ACPI_START + ACPI_MAX_SIZE`, RSDP first so that a
//! guest scanning the BIOS area finds it too:
//!
//! ```text
//! RSDP ─► XSDT ─┬► FACP (FADT) ─► DSDT
//!               ├► APIC (MADT)
//!               └► MCFG
//! ```

mod dsdt;
mod fadt;
mod madt;
mod mcfg;
mod tables;
#[cfg(test)]
mod tests;

pub use dsdt::{GED_EVENT_POWER_BUTTON, S5_SLP_TYP};
pub use madt::MAX_CPUS;

use crate::layout::{ACPI_MAX_SIZE, ACPI_START};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// What the tables describe that varies per VM.
#[derive(Clone, Debug)]
pub struct AcpiConfig {
    /// Number of vCPUs; vCPU `i` has APIC id `i`.
    pub cpus: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("invalid vCPU count {0}: ACPI tables support 1..={MAX_CPUS}")]
    InvalidCpuCount(u8),
    #[error("ACPI tables need {needed} bytes, more than the {ACPI_MAX_SIZE} reserved")]
    TooLarge { needed: u64 },
    #[error("cannot write ACPI tables to guest memory: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// Tables start on 16-byte boundaries: the RSDP must, the others merely like it.
const TABLE_ALIGN: u64 = 16;

/// Places tables one after another in the ACPI area, refusing to run past its end.
struct TableWriter<'a> {
    mem: &'a GuestMemoryMmap<()>,
    /// Offset from ACPI_START of the next free byte.
    offset: u64,
}

impl TableWriter<'_> {
    fn write(&mut self, table: &[u8]) -> Result<GuestAddress, AcpiError> {
        let start = self.offset.next_multiple_of(TABLE_ALIGN);
        let end = start + table.len() as u64;
        if end > ACPI_MAX_SIZE {
            return Err(AcpiError::TooLarge { needed: end });
        }
        let addr = GuestAddress(ACPI_START.0 + start);
        self.mem.write_slice(table, addr)?;
        self.offset = end;
        Ok(addr)
    }
}

/// Write RSDP (at layout::ACPI_START), XSDT, FADT, DSDT, MADT, MCFG into guest memory
/// within ACPI_START..ACPI_START+ACPI_MAX_SIZE; return the RSDP address.
///
/// The caller hands the address to the guest (`boot_params.acpi_rsdp_addr` or PVH
/// `rsdp_paddr`) and must keep the area out of usable RAM in the memory map.
pub fn create_acpi_tables(
    mem: &GuestMemoryMmap<()>,
    cfg: &AcpiConfig,
) -> Result<GuestAddress, AcpiError> {
    if cfg.cpus == 0 || cfg.cpus > MAX_CPUS {
        return Err(AcpiError::InvalidCpuCount(cfg.cpus));
    }

    // The RSDP's content depends on the XSDT's address, so reserve its slot first and
    // fill it in last.
    let rsdp_len = tables::rsdp(0).len() as u64;
    let mut writer = TableWriter {
        mem,
        offset: rsdp_len,
    };
    let dsdt = writer.write(&dsdt::dsdt())?;
    let fadt = writer.write(&fadt::fadt(dsdt.0))?;
    let madt = writer.write(&madt::madt(cfg.cpus))?;
    let mcfg = writer.write(&mcfg::mcfg())?;
    let xsdt = writer.write(&tables::xsdt(&[fadt.0, madt.0, mcfg.0]))?;

    mem.write_slice(&tables::rsdp(xsdt.0), ACPI_START)?;
    Ok(ACPI_START)
}
