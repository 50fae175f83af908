//! Platform devices the guest reaches through port I/O.

pub mod acpi_pm;
pub mod i8042;
pub mod mmio_bus;
pub mod platform;
pub mod rtc;
pub mod serial;
