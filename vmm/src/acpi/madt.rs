//! MADT ("APIC"): the interrupt controllers. The guest kernel has no MP-table support, so
//! this is the only way it learns about its CPUs and the IOAPIC.
//!
//! Built byte by byte on `acpi_tables::sdt::Sdt` because the crate's MADT type has no
//! Interrupt Source Override or Local APIC NMI entries and cannot set the header flags.

use super::tables::{OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{ACPI_GED_IRQ, IOAPIC_START, LAPIC_START};
use acpi_tables::sdt::Sdt;

/// MADT revision 5 (ACPI 6.2+).
const MADT_REVISION: u8 = 5;
/// Header flag PCAT_COMPAT: set because KVM's in-kernel irqchip also emulates the dual
/// 8259 PICs, so the guest must mask them before using the IOAPIC.
pub const MADT_PCAT_COMPAT: u32 = 1;

const TYPE_LOCAL_APIC: u8 = 0;
const TYPE_IO_APIC: u8 = 1;
const TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const TYPE_LOCAL_APIC_NMI: u8 = 4;

/// Local APIC flag: the processor is usable.
const LAPIC_ENABLED: u32 = 1;
/// MPS INTI flags: polarity in bits 0-1 (1 = active high), trigger in bits 2-3
/// (1 = edge, 3 = level).
pub const INTI_EDGE_HIGH: u16 = 0b0101;
pub const INTI_LEVEL_HIGH: u16 = 0b1101;
/// "Conforms to the bus": used for the NMI line, which has no bus to conform to.
const INTI_CONFORMING: u16 = 0;
/// Local APIC NMI entry meaning "every processor".
const ALL_PROCESSORS: u8 = 0xff;
/// LINT1 is the NMI pin on every PC.
const LINT1: u8 = 1;

/// Largest vCPU count: xAPIC ids are 8 bits, 0xff is broadcast, and the IOAPIC takes the
/// id right after the last CPU.
pub const MAX_CPUS: u8 = 254;

/// The IOAPIC id: the first id after the CPUs' APIC ids (0..cpus), so none clash.
pub fn ioapic_id(cpus: u8) -> u8 {
    cpus
}

fn local_apic(uid: u8, apic_id: u8) -> Vec<u8> {
    let mut e = vec![TYPE_LOCAL_APIC, 8, uid, apic_id];
    e.extend_from_slice(&LAPIC_ENABLED.to_le_bytes());
    e
}

fn io_apic(id: u8, addr: u32, gsi_base: u32) -> Vec<u8> {
    let mut e = vec![TYPE_IO_APIC, 12, id, 0];
    e.extend_from_slice(&addr.to_le_bytes());
    e.extend_from_slice(&gsi_base.to_le_bytes());
    e
}

/// Maps ISA IRQ `source` to `gsi` with the given INTI flags.
fn interrupt_source_override(source: u8, gsi: u32, flags: u16) -> Vec<u8> {
    let mut e = vec![
        TYPE_INTERRUPT_SOURCE_OVERRIDE,
        10,
        0, /* ISA bus */
        source,
    ];
    e.extend_from_slice(&gsi.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn local_apic_nmi(uid: u8, flags: u16, lint: u8) -> Vec<u8> {
    let mut e = vec![TYPE_LOCAL_APIC_NMI, 6, uid];
    e.extend_from_slice(&flags.to_le_bytes());
    e.push(lint);
    e
}

/// Builds the MADT for `cpus` vCPUs (1..=MAX_CPUS; the caller validates): CPU `i` has
/// ACPI processor UID `i` and APIC id `i`, matching the APIC ids KVM assigns by vCPU index.
pub fn madt(cpus: u8) -> Vec<u8> {
    let mut sdt = Sdt::new(
        *b"APIC",
        44,
        MADT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    sdt.write_u32(36, LAPIC_START.0 as u32);
    sdt.write_u32(40, MADT_PCAT_COMPAT);

    for cpu in 0..cpus {
        sdt.append_slice(&local_apic(cpu, cpu));
    }
    sdt.append_slice(&io_apic(ioapic_id(cpus), IOAPIC_START.0 as u32, 0));
    // The PIT's IRQ0 is wired to IOAPIC pin 2 on every PC (pin 0 is the 8259 cascade).
    sdt.append_slice(&interrupt_source_override(0, 2, INTI_EDGE_HIGH));
    // ISA IRQs default to edge/active high; the GED's IRQ is level-triggered, so say so.
    sdt.append_slice(&interrupt_source_override(
        ACPI_GED_IRQ as u8,
        ACPI_GED_IRQ,
        INTI_LEVEL_HIGH,
    ));
    sdt.append_slice(&local_apic_nmi(ALL_PROCESSORS, INTI_CONFORMING, LINT1));
    sdt.as_slice().to_vec()
}
