//! Guest physical memory and I/O layout: every fixed address the VMM uses, in one place.
//!
//! ```text
//! 0x0000_0000  low RAM: boot structures, page tables, command line
//! 0x0009_fc00  reserved (EBDA, VGA hole, BIOS area): ACPI tables live at 0xe0000
//! 0x0010_0000  RAM: kernel at 1 MiB, initrd near the top of low memory
//! 0xc000_0000  32-bit hole: PCI MMIO window, ECAM, IOAPIC, LAPIC
//! 0x1_0000_0000 RAM above 4 GiB, for guests with more than 3 GiB
//! ```

use vm_memory::GuestAddress;

pub const PAGE_SIZE: u64 = 4096;

// --- boot structures in low memory ---------------------------------------------
/// Boot GDT used to enter 64-bit mode (bzImage) or 32-bit protected mode (PVH).
pub const BOOT_GDT_START: GuestAddress = GuestAddress(0x500);
/// Empty IDT: interrupts stay off until the kernel installs its own.
pub const BOOT_IDT_START: GuestAddress = GuestAddress(0x520);
/// PVH `hvm_start_info`, followed by its memory map and module list.
pub const PVH_INFO_START: GuestAddress = GuestAddress(0x6000);
/// Linux `boot_params` (the "zero page") for the 64-bit boot protocol.
pub const ZERO_PAGE_START: GuestAddress = GuestAddress(0x7000);
/// Identity-mapped page tables for 64-bit entry: PML4, PDPT, PD (first 1 GiB).
pub const PML4_START: GuestAddress = GuestAddress(0x9000);
pub const PDPTE_START: GuestAddress = GuestAddress(0xa000);
pub const PDE_START: GuestAddress = GuestAddress(0xb000);
/// Initial stack pointer for the boot vCPU.
pub const BOOT_STACK_POINTER: GuestAddress = GuestAddress(0x8ff0);
/// Kernel command line.
pub const CMDLINE_START: GuestAddress = GuestAddress(0x20000);
pub const CMDLINE_MAX_SIZE: usize = 0x10000;

/// Start of the area the BIOS would own: reserved in the memory map.
pub const EBDA_START: GuestAddress = GuestAddress(0x9fc00);
/// ACPI tables (RSDP first) in the BIOS read-only area, where an OS may look for the RSDP.
pub const ACPI_START: GuestAddress = GuestAddress(0xe0000);
pub const ACPI_MAX_SIZE: u64 = 0x20000;
/// Kernels load at 1 MiB and above.
pub const HIMEM_START: GuestAddress = GuestAddress(0x10_0000);

// --- the 32-bit hole -------------------------------------------------------------
/// Low RAM ends here; the rest of the first 4 GiB is for devices.
pub const MEM_32BIT_HOLE_START: GuestAddress = GuestAddress(0xc000_0000);
pub const MEM_32BIT_HOLE_SIZE: u64 = 0x4000_0000;
/// 32-bit PCI MMIO window for BARs: the DSDT gives it to the host bridge, and each
/// virtio-pci function's BAR 0 is placed here in slot order (1, 2, ...).
pub const PCI_MMIO32_START: GuestAddress = GuestAddress(0xc000_0000);
pub const PCI_MMIO32_SIZE: u64 = 0x2000_0000;
/// PCI Express enhanced configuration (ECAM), described by MCFG: bus 0 only.
pub const PCI_ECAM_START: GuestAddress = GuestAddress(0xe000_0000);
pub const PCI_ECAM_SIZE: u64 = 0x10_0000;
pub const IOAPIC_START: GuestAddress = GuestAddress(0xfec0_0000);
pub const LAPIC_START: GuestAddress = GuestAddress(0xfee0_0000);
/// RAM beyond the hole continues here.
pub const RAM_64BIT_START: GuestAddress = GuestAddress(0x1_0000_0000);

// --- I/O ports and interrupt lines -----------------------------------------------
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const I8042_DATA_PORT: u16 = 0x60;
pub const I8042_COMMAND_PORT: u16 = 0x64;
pub const CMOS_PORT: u16 = 0x70;
/// ACPI hardware-reduced sleep control and status registers (one byte each).
pub const ACPI_SLEEP_CONTROL_PORT: u16 = 0x600;
pub const ACPI_SLEEP_STATUS_PORT: u16 = 0x601;
/// ACPI Generic Event Device: a 4-byte event register the guest reads in `_EVT`.
pub const ACPI_GED_PORT: u16 = 0x604;
/// The GED's interrupt (level-triggered, active high), used for the power button.
pub const ACPI_GED_IRQ: u32 = 9;
/// Legacy PCI configuration mechanism #1.
pub const PCI_CONFIG_ADDRESS_PORT: u16 = 0xcf8;
pub const PCI_CONFIG_DATA_PORT: u16 = 0xcfc;
/// IOAPIC pins: 24, as on real chipsets.
pub const IOAPIC_PINS: u32 = 24;
