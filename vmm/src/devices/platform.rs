//! The port-I/O bus: which device answers which port.

use super::acpi_pm::{AcpiPmDevice, PowerEvent};
use super::i8042::I8042;
use super::rtc::Rtc;
use super::serial::SerialPort;
use crate::layout::{
    ACPI_GED_PORT, ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT, CMOS_PORT, COM1_PORT,
    I8042_COMMAND_PORT, I8042_DATA_PORT,
};
use crate::pci::PciConfigIo;

/// What a port write can make of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformEvent {
    Poweroff,
    Reset,
}

pub struct Platform {
    pub serial: SerialPort,
    pub i8042: I8042,
    pub rtc: Rtc,
    pub acpi_pm: AcpiPmDevice,
    /// PCI configuration mechanism #1 (0xCF8..0xCFF).
    pub pci: PciConfigIo,
}

const COM1_LEN: u16 = 8;
const GED_LEN: u16 = 4;

impl Platform {
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        match port {
            p if (COM1_PORT..COM1_PORT + COM1_LEN).contains(&p) => {
                self.serial.pio_read((p - COM1_PORT) as u8, data)
            }
            I8042_DATA_PORT | I8042_COMMAND_PORT => self.i8042.pio_read(port, data),
            p if p == CMOS_PORT || p == CMOS_PORT + 1 => self.rtc.pio_read(p, data),
            p if is_acpi_port(p) => self.acpi_pm.pio_read(p, data),
            p if PciConfigIo::claims(p) => self.pci.pio_read(p, data),
            // Nothing here: an empty ISA bus floats high.
            _ => data.fill(0xff),
        }
    }

    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> Option<PlatformEvent> {
        match port {
            p if (COM1_PORT..COM1_PORT + COM1_LEN).contains(&p) => {
                self.serial.pio_write((p - COM1_PORT) as u8, data);
                None
            }
            I8042_DATA_PORT | I8042_COMMAND_PORT => self
                .i8042
                .pio_write(port, data)
                .then_some(PlatformEvent::Reset),
            p if p == CMOS_PORT || p == CMOS_PORT + 1 => {
                self.rtc.pio_write(p, data);
                None
            }
            p if is_acpi_port(p) => self
                .acpi_pm
                .pio_write(p, data)
                .map(|PowerEvent::Poweroff| PlatformEvent::Poweroff),
            p if PciConfigIo::claims(p) => {
                self.pci.pio_write(p, data);
                None
            }
            _ => None,
        }
    }
}

fn is_acpi_port(p: u16) -> bool {
    p == ACPI_SLEEP_CONTROL_PORT
        || p == ACPI_SLEEP_STATUS_PORT
        || (ACPI_GED_PORT..ACPI_GED_PORT + GED_LEN).contains(&p)
}
