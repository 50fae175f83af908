//! The devices' part of a snapshot: every PCI function (the host bridge, each
//! virtio-pci function with its queues and its device's own state, virtiofsd's
//! included) and the platform devices (COM1, the CMOS clock, the ACPI GED latch,
//! the PCI configuration address).
//!
//! Saving needs the vCPUs stopped first. [`save`] pauses every device worker (what
//! the driver queued is served, chains taken but not served go back), so the
//! queue indices in the state account for every request; the devices stay paused
//! until [`resume`]. [`restore`] takes a state into a machine freshly built from
//! the same configuration, checking everything against it: the state is untrusted
//! input, and a mismatch is an error naming what differs.
//!
//! Interrupts raised while pausing (a request completed on the way) are written to
//! their irqfds before [`save`] returns, so the vCPUs' interrupt state should be
//! read after it.

use crate::devices::platform::Platform;
use crate::devices::rtc::RtcState;
use crate::devices::serial::SerialPortState;
use crate::pci::PciBus;
use crate::virtio::virtio_pci::{device_name, VirtioPciState};
use serde::{Deserialize, Serialize};

/// Every device of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesState {
    /// The functions on PCI bus 0, by slot.
    pub pci: Vec<SlotState>,
    pub platform: PlatformState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    pub slot: u8,
    pub function: FunctionState,
}

/// One PCI function's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FunctionState {
    HostBridge { config_space: Vec<u8> },
    Virtio(Box<VirtioPciState>),
}

impl FunctionState {
    /// What the saved function was, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            FunctionState::HostBridge { .. } => "a host bridge",
            FunctionState::Virtio(v) => device_name(v.device_type),
        }
    }
}

/// The port-I/O devices. The i8042 has no state (it only resets the machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformState {
    pub serial: SerialPortState,
    pub rtc: RtcState,
    /// ACPI GED events latched and not yet read by the guest.
    pub ged_events: u32,
    /// PCI configuration mechanism #1's CONFIG_ADDRESS register.
    pub pci_config_address: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{name} at PCI 00:{slot:02x}.0: {reason}")]
    Function {
        slot: u8,
        name: &'static str,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the saved machine had PCI functions in slots {saved:?}, this one in {here:?}")]
    Slots { saved: Vec<u8>, here: Vec<u8> },
    #[error("{name} at PCI 00:{slot:02x}.0: {reason}")]
    Function {
        slot: u8,
        name: &'static str,
        reason: String,
    },
    #[error("{device}: {reason}")]
    Platform {
        device: &'static str,
        reason: String,
    },
}

/// Calls `act` on every function of the bus in slot order, stopping at the first
/// error, which names the function.
fn each_function(
    bus: &PciBus,
    mut act: impl FnMut(u8, &mut dyn crate::pci::PciFunction) -> Result<(), String>,
) -> Result<(), SaveError> {
    for (slot, function) in bus.functions() {
        let mut f = function.lock().expect("PCI function lock");
        act(slot, &mut *f).map_err(|reason| SaveError::Function {
            slot,
            name: f.name(),
            reason,
        })?;
    }
    Ok(())
}

/// Whether every device can be saved (a virtio-fs device needs a virtiofsd that can
/// hand over its state): ask before stopping the vCPUs, so a refused save disturbs
/// nothing. [`save`] asks again.
pub fn check_savable(bus: &PciBus) -> Result<(), SaveError> {
    each_function(bus, |_, f| f.check_savable())
}

/// Stops every device worker with what the driver queued served (vCPUs stopped
/// first). Devices already paused stay so.
pub fn pause(bus: &PciBus) -> Result<(), SaveError> {
    each_function(bus, |_, f| f.pause())
}

/// Starts every paused device again, its queues where they stood.
pub fn resume(bus: &PciBus) -> Result<(), SaveError> {
    each_function(bus, |_, f| f.resume())
}

/// Pauses the devices (see [`pause`]) and returns their state; they stay paused
/// until [`resume`]. A machine with a device that cannot be saved is refused
/// before anything pauses; on any other error the devices run again.
pub fn save(bus: &PciBus, platform: &Platform) -> Result<DevicesState, SaveError> {
    check_savable(bus)?;
    let mut pci = Vec::new();
    let saved = pause(bus).and_then(|()| {
        each_function(bus, |slot, f| {
            pci.push(SlotState {
                slot,
                function: f.save()?,
            });
            Ok(())
        })
    });
    if let Err(e) = saved {
        // What could be paused runs again; the save's error is the one to report.
        let _ = resume(bus);
        return Err(e);
    }
    Ok(DevicesState {
        pci,
        platform: PlatformState {
            serial: platform.serial.save(),
            rtc: platform.rtc.save(),
            ged_events: platform.acpi_pm.latched_events(),
            pci_config_address: platform.pci.address(),
        },
    })
}

/// Takes `state` into a machine freshly built from the same configuration (no vCPU
/// run yet): every function's state is checked against the function built in its
/// slot, its BARs mapped where the guest had them, and each device the driver had
/// running starts serving from where it stood. On error the machine is unusable
/// and must be dropped.
pub fn restore(
    bus: &mut PciBus,
    platform: &mut Platform,
    state: &DevicesState,
) -> Result<(), RestoreError> {
    let here: Vec<u8> = bus.functions().map(|(slot, _)| slot).collect();
    let saved: Vec<u8> = state.pci.iter().map(|s| s.slot).collect();
    if here != saved {
        return Err(RestoreError::Slots { saved, here });
    }
    for entry in &state.pci {
        let function = bus
            .functions()
            .find(|(slot, _)| *slot == entry.slot)
            .map(|(_, f)| f.clone())
            .expect("slots compared above");
        {
            let mut f = function.lock().expect("PCI function lock");
            f.restore(&entry.function)
                .map_err(|reason| RestoreError::Function {
                    slot: entry.slot,
                    name: f.name(),
                    reason,
                })?;
        }
        bus.refresh_bars(entry.slot);
    }
    let p = &state.platform;
    let platform_error =
        |device: &'static str| move |reason| RestoreError::Platform { device, reason };
    platform
        .serial
        .restore(&p.serial)
        .map_err(platform_error("COM1"))?;
    platform
        .rtc
        .restore(&p.rtc)
        .map_err(platform_error("the CMOS clock"))?;
    platform
        .acpi_pm
        .restore_latched_events(p.ged_events)
        .map_err(platform_error("the ACPI GED"))?;
    platform
        .pci
        .restore_address(p.pci_config_address)
        .map_err(platform_error("PCI configuration mechanism #1"))?;
    Ok(())
}
