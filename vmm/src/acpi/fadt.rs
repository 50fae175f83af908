//! FADT ("FACP"): fixed platform description. hvbox is a hardware-reduced ACPI platform,
//! so there are no PM1/GPE blocks; poweroff goes through the sleep control register.

use super::tables::{to_bytes, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::layout::{ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

// IAPC_BOOT_ARCH bit 1 ("8042 present") stays clear. hvbox answers the 8042's ports
// only so that a guest can reset the CPU through them (Linux's reboot path writes the
// reset command without probing). With the bit set, Linux probes for a keyboard and
// polls the status port 10,000 times before giving up: each poll is an exit to the
// VMM, which under nested virtualization took long enough to look like a hang.
/// IAPC_BOOT_ARCH bit 2: no VGA, so the guest does not probe legacy VGA ranges.
const IAPC_BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
// IAPC_BOOT_ARCH bit 5 ("CMOS RTC not present") stays clear: hvbox emulates the RTC.

/// Hypervisor vendor identity (FADT 6.0+), informational only.
const HYPERVISOR_VENDOR: [u8; 8] = *b"HVBOXVMM";

/// One-byte I/O register, as the hardware-reduced sleep registers are defined.
fn io_byte_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// Builds the FADT (revision 6.5, 276 bytes) pointing at the DSDT through X_DSDT.
pub fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut builder = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // No fixed-feature buttons: the power button is the PNP0C0C device in the DSDT.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    builder.iapc_boot_arch = IAPC_BOOT_ARCH_VGA_NOT_PRESENT.into();
    builder.sleep_control_reg = io_byte_register(ACPI_SLEEP_CONTROL_PORT);
    builder.sleep_status_reg = io_byte_register(ACPI_SLEEP_STATUS_PORT);
    builder.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_VENDOR).into();
    to_bytes(&builder.finalize())
}
