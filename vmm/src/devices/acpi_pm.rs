//! ACPI power management registers of a hardware-reduced platform: the sleep control and
//! status registers named by the FADT, and the Generic Event Device's event register that
//! the DSDT's `_EVT` method reads.

use crate::layout::{ACPI_GED_PORT, ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT};

/// The sleep-state requests the VMM acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    /// S5: the guest has shut down and wants the power cut.
    Poweroff,
}

/// Sleep control register: SLP_EN (bit 5) starts the transition...
const SLP_EN: u8 = 1 << 5;
/// ...to the state in SLP_TYP (bits 2-4).
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111;
/// SLP_TYP for S5, as the DSDT's `_S5_` package declares it.
const SLP_TYP_S5: u8 = crate::acpi::S5_SLP_TYP;

/// GED register width in bytes.
const GED_LEN: u16 = 4;
/// GED event bit for the power button, as the DSDT's `_EVT` tests it.
const GED_POWER_BUTTON: u32 = crate::acpi::GED_EVENT_POWER_BUTTON;

/// The sleep registers (control, status: adjacent bytes) and the GED register.
const PORTS: [(u16, u16); 2] = [(ACPI_SLEEP_CONTROL_PORT, 2), (ACPI_GED_PORT, GED_LEN)];
const _: () = assert!(ACPI_SLEEP_STATUS_PORT == ACPI_SLEEP_CONTROL_PORT + 1);

/// Port-I/O device for the ACPI sleep registers and the GED event register.
#[derive(Debug, Default)]
pub struct AcpiPmDevice {
    /// Events latched for the guest; cleared when the guest reads the GED register.
    ged_events: u32,
}

impl AcpiPmDevice {
    pub fn new() -> Self {
        Self::default()
    }

    /// The port ranges (base, length) this device answers.
    pub fn ports() -> &'static [(u16 /*base*/, u16 /*len*/)] {
        &PORTS
    }

    /// Port I/O read at an absolute port (sleep control/status/GED ports); unknown → 0xff bytes.
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        let mut ged_read = false;
        for (i, byte) in data.iter_mut().enumerate() {
            let Some(p) = port.checked_add(i as u16) else {
                *byte = 0xff;
                continue;
            };
            *byte = match p {
                // Write-only in practice; nothing is ever pending, so the guest never
                // sees WAK_STS and never waits on it.
                ACPI_SLEEP_CONTROL_PORT | ACPI_SLEEP_STATUS_PORT => 0,
                p if (ACPI_GED_PORT..ACPI_GED_PORT + GED_LEN).contains(&p) => {
                    ged_read = true;
                    self.ged_events.to_le_bytes()[usize::from(p - ACPI_GED_PORT)]
                }
                _ => 0xff,
            };
        }
        // Read-to-clear, so each press is seen once; `_EVT` reads the whole dword.
        if ged_read {
            self.ged_events = 0;
        }
    }

    /// Port I/O write; returns Some(PowerEvent::Poweroff) when the guest writes SLP_EN with SLP_TYP == 5 to the sleep control register.
    pub fn pio_write(&mut self, port: u16, data: &[u8]) -> Option<PowerEvent> {
        // Only the sleep control register has an effect. Status writes (write-1-to-clear
        // of WAK_STS) and GED writes are accepted and ignored.
        if port != ACPI_SLEEP_CONTROL_PORT {
            return None;
        }
        let value = *data.first()?;
        let slp_typ = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
        (value & SLP_EN != 0 && slp_typ == SLP_TYP_S5).then_some(PowerEvent::Poweroff)
    }

    /// Events latched and not yet read by the guest (a snapshot keeps them).
    pub fn latched_events(&self) -> u32 {
        self.ged_events
    }

    pub fn restore_latched_events(&mut self, events: u32) -> Result<(), String> {
        if events & !GED_POWER_BUTTON != 0 {
            return Err(format!("GED events {events:#x} include unknown ones"));
        }
        self.ged_events = events;
        Ok(())
    }

    /// Latch a power-button event in the GED register (the caller then raises layout::ACPI_GED_IRQ); a read of the GED register returns and clears the latched events.
    ///
    /// The IRQ is level-triggered in the MADT and DSDT: the caller may pulse it (assert,
    /// then deassert), which KVM's IOAPIC delivers once.
    pub fn press_power_button(&mut self) {
        self.ged_events |= GED_POWER_BUTTON;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acpi_pm_s5_write_requests_poweroff() {
        let mut dev = AcpiPmDevice::new();
        assert_eq!(
            dev.pio_write(ACPI_SLEEP_CONTROL_PORT, &[0x34]),
            Some(PowerEvent::Poweroff)
        );
    }

    #[test]
    fn acpi_pm_other_writes_do_nothing() {
        let mut dev = AcpiPmDevice::new();
        // SLP_TYP 5 without SLP_EN, SLP_EN with other sleep types, zero, garbage.
        for value in [0x14, 0x20, 0x24, 0x2c, 0x3c, 0x00, !SLP_EN] {
            assert_eq!(
                dev.pio_write(ACPI_SLEEP_CONTROL_PORT, &[value]),
                None,
                "{value:#x}"
            );
        }
        assert_eq!(dev.pio_write(ACPI_SLEEP_STATUS_PORT, &[0x34]), None);
        assert_eq!(dev.pio_write(ACPI_GED_PORT, &[0x34, 0, 0, 0]), None);
        assert_eq!(dev.pio_write(0x1234, &[0x34]), None);
        assert_eq!(dev.pio_write(ACPI_SLEEP_CONTROL_PORT, &[]), None);
    }

    #[test]
    fn acpi_pm_ged_read_returns_then_clears_events() {
        let mut dev = AcpiPmDevice::new();
        dev.press_power_button();
        let mut data = [0u8; 4];
        dev.pio_read(ACPI_GED_PORT, &mut data);
        assert_eq!(u32::from_le_bytes(data), 1);
        dev.pio_read(ACPI_GED_PORT, &mut data);
        assert_eq!(u32::from_le_bytes(data), 0);
    }

    #[test]
    fn acpi_pm_unknown_ports_read_all_ones() {
        let mut dev = AcpiPmDevice::new();
        let mut data = [0u8; 2];
        dev.pio_read(0x1234, &mut data);
        assert_eq!(data, [0xff, 0xff]);
        let mut status = [0xaa];
        dev.pio_read(ACPI_SLEEP_STATUS_PORT, &mut status);
        assert_eq!(status, [0]);
    }

    #[test]
    fn acpi_pm_ports_cover_every_register() {
        let covers = |port: u16| {
            AcpiPmDevice::ports()
                .iter()
                .any(|&(base, len)| (base..base + len).contains(&port))
        };
        assert!(covers(ACPI_SLEEP_CONTROL_PORT));
        assert!(covers(ACPI_SLEEP_STATUS_PORT));
        assert!((0..GED_LEN).all(|i| covers(ACPI_GED_PORT + i)));
    }
}
