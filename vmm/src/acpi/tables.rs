//! The root of the table tree: RSDP (found by the guest) and XSDT (lists every other table).

use acpi_tables::{rsdp::Rsdp, xsdt::XSDT, Aml};

/// OEM identity stamped into every table header.
pub const OEM_ID: [u8; 6] = *b"HVBOX ";
pub const OEM_TABLE_ID: [u8; 8] = *b"HVBOXVMM";
pub const OEM_REVISION: u32 = 1;

/// Serializes any `acpi_tables` object into its raw bytes.
pub fn to_bytes(aml: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    bytes
}

/// RSDP revision 2: only the 64-bit XSDT pointer is used, the 32-bit RSDT stays 0.
pub fn rsdp(xsdt_addr: u64) -> Vec<u8> {
    to_bytes(&Rsdp::new(OEM_ID, xsdt_addr))
}

/// XSDT pointing at `tables` (guest physical addresses). The DSDT is not listed: the
/// FADT points at it.
pub fn xsdt(tables: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &table in tables {
        xsdt.add_entry(table);
    }
    to_bytes(&xsdt)
}
