//! DSDT: the AML namespace — sleep states, the serial port, the PCI host bridge, and the
//! Generic Event Device that delivers power-button presses.

use super::mcfg::PCI_END_BUS;
use super::tables::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{
    ACPI_GED_IRQ, ACPI_GED_PORT, COM1_IRQ, COM1_PORT, PCI_CONFIG_ADDRESS_PORT, PCI_ECAM_SIZE,
    PCI_ECAM_START, PCI_MMIO32_SIZE, PCI_MMIO32_START,
};
use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, And, Device, EISAName, Field, FieldAccessType, FieldEntry,
    FieldLockRule, FieldUpdateRule, If, Interrupt, Local, Memory32Fixed, Method, Name, Notify,
    OpRegion, OpRegionSpace, Package, Path, ResourceTemplate, Scope, Store, IO, ZERO,
};
use acpi_tables::sdt::Sdt;

/// DSDT revision 2: AML integers are 64-bit.
const DSDT_REVISION: u8 = 2;

/// SLP_TYP for S5 (soft off). The guest writes `(SLP_TYP << 2) | SLP_EN` = 0x34 to the
/// sleep control register; `devices::acpi_pm` decodes the same value.
pub const S5_SLP_TYP: u8 = 5;

/// GED event bit 0: the power button was pressed.
pub const GED_EVENT_POWER_BUTTON: u32 = 1;

/// `Notify` value for a power button: "button pressed".
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

/// A 16550 UART decodes eight consecutive ports.
const UART_PORT_COUNT: u8 = 8;

/// PCI I/O window for BARs: everything above the legacy ports and the 0xcf8 config ports.
const PCI_IO_WINDOW_START: u16 = 0x0d00;
const PCI_IO_WINDOW_END: u16 = 0xffff;

/// `\_S5_`: tells the guest's poweroff path to write SLP_TYP 5 to the sleep control
/// register. Package {SLP_TYPa, SLP_TYPb, reserved, reserved}; hardware-reduced guests
/// use only SLP_TYPa.
fn s5() -> Vec<u8> {
    to_bytes(&Name::new(
        Path::new("\\_S5_"),
        &Package::new(vec![&S5_SLP_TYP, &S5_SLP_TYP, &ZERO, &ZERO]),
    ))
}

/// `\_SB_.PWRB`: the ACPI power button (control-method style), which the GED notifies so
/// the host can ask the guest to shut down cleanly.
fn power_button() -> Vec<u8> {
    to_bytes(&Device::new(
        Path::new("PWRB"),
        vec![
            &Name::new(Path::new("_HID"), &EISAName::new("PNP0C0C")),
            &Name::new(Path::new("_UID"), &ZERO),
        ],
    ))
}

/// `\_SB_.COM1`: the 16550 UART, so the guest learns its port and IRQ from ACPI.
fn com1() -> Vec<u8> {
    to_bytes(&Device::new(
        Path::new("COM1"),
        vec![
            &Name::new(Path::new("_HID"), &EISAName::new("PNP0501")),
            &Name::new(Path::new("_UID"), &ZERO),
            &Name::new(
                Path::new("_CRS"),
                &ResourceTemplate::new(vec![
                    &IO::new(COM1_PORT, COM1_PORT, 1, UART_PORT_COUNT),
                    // Edge-triggered, active high, exclusive, like every ISA IRQ.
                    &Interrupt::new(true, true, false, false, COM1_IRQ),
                ]),
            ),
        ],
    ))
}

/// `\_SB_.PCI0`: the PCI Express host bridge for segment 0 and the windows its BARs use.
fn pci_host_bridge() -> Vec<u8> {
    let mmio_start = PCI_MMIO32_START.0 as u32;
    let mmio_end = (PCI_MMIO32_START.0 + PCI_MMIO32_SIZE - 1) as u32;
    to_bytes(&Device::new(
        Path::new("PCI0"),
        vec![
            &Name::new(Path::new("_HID"), &EISAName::new("PNP0A08")),
            &Name::new(Path::new("_CID"), &EISAName::new("PNP0A03")),
            &Name::new(Path::new("_SEG"), &ZERO),
            &Name::new(Path::new("_BBN"), &ZERO),
            &Name::new(Path::new("_UID"), &ZERO),
            &Name::new(
                Path::new("_CRS"),
                &ResourceTemplate::new(vec![
                    &AddressSpace::new_bus_number(0u16, u16::from(PCI_END_BUS)),
                    // The legacy config mechanism's ports, consumed by the bridge itself.
                    &IO::new(PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_ADDRESS_PORT, 1, 8),
                    &AddressSpace::new_io(PCI_IO_WINDOW_START, PCI_IO_WINDOW_END, None),
                    &AddressSpace::new_memory(
                        AddressSpaceCacheable::NotCacheable,
                        true,
                        mmio_start,
                        mmio_end,
                        None,
                    ),
                ]),
            ),
        ],
    ))
}

/// `\_SB_.MBRD`: motherboard resources reserving the ECAM window. Linux only trusts the
/// MCFG region if firmware reserves it (E820 or a PNP0C02 device); this covers both cases.
fn motherboard_resources() -> Vec<u8> {
    to_bytes(&Device::new(
        Path::new("MBRD"),
        vec![
            &Name::new(Path::new("_HID"), &EISAName::new("PNP0C02")),
            &Name::new(Path::new("_UID"), &ZERO),
            &Name::new(
                Path::new("_CRS"),
                &ResourceTemplate::new(vec![&Memory32Fixed::new(
                    true,
                    PCI_ECAM_START.0 as u32,
                    PCI_ECAM_SIZE as u32,
                )]),
            ),
        ],
    ))
}

/// `\_SB_.GED_`: the hardware-reduced replacement for GPEs. The VMM latches events in the
/// GDAT register and raises the GED IRQ; `_EVT` reads (and so clears) GDAT and turns the
/// power-button bit into `Notify (\_SB_.PWRB, 0x80)`.
fn generic_event_device() -> Vec<u8> {
    let port = ACPI_GED_PORT;
    let region_len = 4u8;
    let gdat = Path::new("GDAT");
    let button = Path::new("\\_SB_.PWRB");
    to_bytes(&Device::new(
        Path::new("GED_"),
        vec![
            &Name::new(Path::new("_HID"), &"ACPI0013"),
            &Name::new(Path::new("_UID"), &ZERO),
            &Name::new(
                Path::new("_CRS"),
                // Level-triggered, active high, exclusive: matches the MADT override.
                &ResourceTemplate::new(vec![&Interrupt::new(
                    true,
                    false,
                    false,
                    false,
                    ACPI_GED_IRQ,
                )]),
            ),
            &OpRegion::new(
                Path::new("GDST"),
                OpRegionSpace::SystemIO,
                &port,
                &region_len,
            ),
            &Field::new(
                Path::new("GDST"),
                FieldAccessType::DWord,
                FieldLockRule::NoLock,
                FieldUpdateRule::WriteAsZeroes,
                vec![FieldEntry::Named(*b"GDAT", 32)],
            ),
            &Method::new(
                Path::new("_EVT"),
                1, // Arg0 is the GSI; the GED has only one, so it is not inspected.
                true,
                vec![
                    &Store::new(&Local(0), &gdat),
                    &If::new(
                        &And::new(&ZERO, &Local(0), &GED_EVENT_POWER_BUTTON),
                        vec![&Notify::new(&button, &NOTIFY_BUTTON_PRESSED)],
                    ),
                ],
            ),
        ],
    ))
}

/// Builds the DSDT.
pub fn dsdt() -> Vec<u8> {
    let mut sb = Vec::new();
    sb.extend(power_button());
    sb.extend(com1());
    sb.extend(pci_host_bridge());
    sb.extend(motherboard_resources());
    sb.extend(generic_event_device());

    let mut sdt = Sdt::new(
        *b"DSDT",
        36,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    sdt.append_slice(&s5());
    sdt.append_slice(&Scope::raw(Path::new("\\_SB_"), sb));
    sdt.as_slice().to_vec()
}
