//! How often each vCPU left the guest for the VMM, by reason: port I/O by device,
//! MMIO by region (PCI configuration, each part of a virtio-pci BAR), and the
//! exits that carry no work. Exits KVM handles itself (in-kernel LAPIC, IOAPIC,
//! PIT, ioeventfd doorbells) never reach these counters.
//!
//! Each vCPU counts into its own [`ExitCounts`] with relaxed atomics (one cache
//! line per vCPU, no sharing); a reader sums them.

use crate::layout::{
    ACPI_GED_PORT, ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT, CMOS_PORT, COM1_PORT,
    I8042_COMMAND_PORT, I8042_DATA_PORT, PCI_CONFIG_ADDRESS_PORT, PCI_ECAM_SIZE, PCI_ECAM_START,
    PCI_MMIO32_SIZE, PCI_MMIO32_START, RAM_64BIT_START,
};
use crate::virtio::virtio_pci::BAR_SIZE;
use crate::vstate::coalesced::SharedRing;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a vCPU came out to the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// COM1, 0x3f8..0x3ff: the guest's serial console, a byte per exit.
    IoSerial,
    /// PCI configuration mechanism #1, 0xcf8..0xcff.
    IoPciConfig,
    /// The CMOS RTC, 0x70/0x71.
    IoRtc,
    /// ACPI sleep and GED registers.
    IoAcpi,
    /// The i8042 keyboard controller (reset line).
    IoI8042,
    /// Any other port: nothing answers it.
    IoOther,
    /// PCI Express ECAM (MMCONFIG).
    MmioEcam,
    /// virtio-pci BAR 0: common configuration.
    MmioVirtioCommon,
    /// virtio-pci BAR 0: the ISR status register.
    MmioVirtioIsr,
    /// virtio-pci BAR 0: device-specific configuration.
    MmioVirtioDevice,
    /// virtio-pci BAR 0: a doorbell write KVM did not catch with an ioeventfd.
    MmioVirtioNotify,
    /// virtio-pci BAR 0: MSI-X table and pending bits.
    MmioVirtioMsix,
    /// Any other address.
    MmioOther,
    /// HLT handled outside the kernel (only without an in-kernel LAPIC).
    Hlt,
    /// KVM_RUN interrupted by a signal (a kick from the VMM).
    Intr,
    /// Anything else.
    Other,
}

const KINDS: [ExitKind; 16] = [
    ExitKind::IoSerial,
    ExitKind::IoPciConfig,
    ExitKind::IoRtc,
    ExitKind::IoAcpi,
    ExitKind::IoI8042,
    ExitKind::IoOther,
    ExitKind::MmioEcam,
    ExitKind::MmioVirtioCommon,
    ExitKind::MmioVirtioIsr,
    ExitKind::MmioVirtioDevice,
    ExitKind::MmioVirtioNotify,
    ExitKind::MmioVirtioMsix,
    ExitKind::MmioOther,
    ExitKind::Hlt,
    ExitKind::Intr,
    ExitKind::Other,
];

impl ExitKind {
    /// The name in a summary line.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoSerial => "io-serial",
            ExitKind::IoPciConfig => "io-pci-config",
            ExitKind::IoRtc => "io-rtc",
            ExitKind::IoAcpi => "io-acpi",
            ExitKind::IoI8042 => "io-i8042",
            ExitKind::IoOther => "io-other",
            ExitKind::MmioEcam => "mmio-ecam",
            ExitKind::MmioVirtioCommon => "mmio-virtio-common",
            ExitKind::MmioVirtioIsr => "mmio-virtio-isr",
            ExitKind::MmioVirtioDevice => "mmio-virtio-device",
            ExitKind::MmioVirtioNotify => "mmio-virtio-notify",
            ExitKind::MmioVirtioMsix => "mmio-virtio-msix",
            ExitKind::MmioOther => "mmio-other",
            ExitKind::Hlt => "hlt",
            ExitKind::Intr => "signal",
            ExitKind::Other => "other",
        }
    }

    /// The kind of a port I/O exit at `port`.
    pub fn of_port(port: u16) -> ExitKind {
        match port {
            p if (COM1_PORT..COM1_PORT + 8).contains(&p) => ExitKind::IoSerial,
            p if (PCI_CONFIG_ADDRESS_PORT..PCI_CONFIG_ADDRESS_PORT + 8).contains(&p) => {
                ExitKind::IoPciConfig
            }
            p if p == CMOS_PORT || p == CMOS_PORT + 1 => ExitKind::IoRtc,
            p if p == ACPI_SLEEP_CONTROL_PORT
                || p == ACPI_SLEEP_STATUS_PORT
                || (ACPI_GED_PORT..ACPI_GED_PORT + 4).contains(&p) =>
            {
                ExitKind::IoAcpi
            }
            I8042_DATA_PORT | I8042_COMMAND_PORT => ExitKind::IoI8042,
            _ => ExitKind::IoOther,
        }
    }

    /// The kind of an MMIO exit at `addr`. A virtio-pci BAR 0 is naturally aligned
    /// (its size is a power of two), so the offset in it names the structure
    /// wherever the guest placed it: in the 32-bit window or above RAM.
    pub fn of_mmio(addr: u64) -> ExitKind {
        let ecam = PCI_ECAM_START.0..PCI_ECAM_START.0 + PCI_ECAM_SIZE;
        let window32 = PCI_MMIO32_START.0..PCI_MMIO32_START.0 + PCI_MMIO32_SIZE;
        if ecam.contains(&addr) {
            return ExitKind::MmioEcam;
        }
        if !window32.contains(&addr) && addr < RAM_64BIT_START.0 {
            return ExitKind::MmioOther;
        }
        match (addr % BAR_SIZE) >> 12 {
            0 => ExitKind::MmioVirtioCommon,
            1 => ExitKind::MmioVirtioIsr,
            2 => ExitKind::MmioVirtioDevice,
            3 => ExitKind::MmioVirtioNotify,
            4 | 5 => ExitKind::MmioVirtioMsix,
            _ => ExitKind::MmioOther,
        }
    }
}

/// One vCPU's counts.
#[derive(Default)]
#[repr(align(64))]
pub struct ExitCounts {
    counts: [AtomicU64; KINDS.len()],
    /// The last port counted as [`ExitKind::IoOther`], plus one (0: none yet): a
    /// hint at what the guest probes.
    other_port: AtomicU64,
}

impl ExitCounts {
    pub fn count(&self, kind: ExitKind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_port(&self, port: u16) {
        let kind = ExitKind::of_port(port);
        if kind == ExitKind::IoOther {
            self.other_port
                .store(u64::from(port) + 1, Ordering::Relaxed);
        }
        self.count(kind);
    }
}

/// Every vCPU's counts, read together.
#[derive(Clone, Default)]
pub struct MachineExits {
    vcpus: Vec<Arc<ExitCounts>>,
    /// COM1's writes KVM queued instead of exiting, when it does.
    pub serial_ring: SharedRing,
}

impl MachineExits {
    /// Counts for one more vCPU.
    pub fn add_vcpu(&mut self) -> Arc<ExitCounts> {
        let counts = Arc::new(ExitCounts::default());
        self.vcpus.push(Arc::clone(&counts));
        counts
    }

    /// The sums over every vCPU so far.
    pub fn summary(&self) -> ExitSummary {
        let mut counts = [0u64; KINDS.len()];
        let mut other_port = None;
        for vcpu in &self.vcpus {
            for (sum, count) in counts.iter_mut().zip(&vcpu.counts) {
                *sum += count.load(Ordering::Relaxed);
            }
            match vcpu.other_port.load(Ordering::Relaxed) {
                0 => {}
                p => other_port = Some((p - 1) as u16),
            }
        }
        ExitSummary {
            counts,
            other_port,
            serial_queued: self.serial_ring.as_ref().map_or(0, |r| r.drained()),
        }
    }
}

/// Summed counts, printable as one line: `exits N: io-serial N, ...` (kinds with
/// none are left out), then the serial bytes KVM queued without an exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitSummary {
    counts: [u64; KINDS.len()],
    other_port: Option<u16>,
    /// Serial bytes that went through KVM's ring: no exit each.
    pub serial_queued: u64,
}

impl ExitSummary {
    pub fn get(&self, kind: ExitKind) -> u64 {
        self.counts[kind as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl fmt::Display for ExitSummary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "exits {}", self.total())?;
        let mut sep = ": ";
        for kind in KINDS {
            let n = self.get(kind);
            if n == 0 {
                continue;
            }
            write!(f, "{sep}{} {n}", kind.name())?;
            if kind == ExitKind::IoOther {
                if let Some(port) = self.other_port {
                    write!(f, " (last port {port:#x})")?;
                }
            }
            sep = ", ";
        }
        if self.serial_queued > 0 {
            write!(
                f,
                "; serial bytes queued without an exit {}",
                self.serial_queued
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_told_apart() {
        assert_eq!(ExitKind::of_port(0x3f8), ExitKind::IoSerial);
        assert_eq!(ExitKind::of_port(0x3fd), ExitKind::IoSerial);
        assert_eq!(ExitKind::of_port(0xcf8), ExitKind::IoPciConfig);
        assert_eq!(ExitKind::of_port(0xcfe), ExitKind::IoPciConfig);
        assert_eq!(ExitKind::of_port(0x71), ExitKind::IoRtc);
        assert_eq!(ExitKind::of_port(0x604), ExitKind::IoAcpi);
        assert_eq!(ExitKind::of_port(0x64), ExitKind::IoI8042);
        assert_eq!(ExitKind::of_port(0x80), ExitKind::IoOther);
    }

    #[test]
    fn mmio_is_split_by_bar_structure() {
        let bar = PCI_MMIO32_START.0 + BAR_SIZE;
        assert_eq!(ExitKind::of_mmio(bar + 0x14), ExitKind::MmioVirtioCommon);
        assert_eq!(ExitKind::of_mmio(bar + 0x1000), ExitKind::MmioVirtioIsr);
        assert_eq!(ExitKind::of_mmio(bar + 0x2004), ExitKind::MmioVirtioDevice);
        assert_eq!(ExitKind::of_mmio(bar + 0x3008), ExitKind::MmioVirtioNotify);
        assert_eq!(ExitKind::of_mmio(bar + 0x4010), ExitKind::MmioVirtioMsix);
        // A BAR the guest moved above RAM.
        let high = 0x80_0000_0000 + 2 * BAR_SIZE;
        assert_eq!(ExitKind::of_mmio(high + 0x3000), ExitKind::MmioVirtioNotify);
        assert_eq!(
            ExitKind::of_mmio(PCI_ECAM_START.0 + 0x800),
            ExitKind::MmioEcam
        );
        assert_eq!(ExitKind::of_mmio(0xfed0_0000), ExitKind::MmioOther);
    }

    #[test]
    fn summary_sums_vcpus_and_names_what_happened() {
        let mut exits = MachineExits::default();
        let (a, b) = (exits.add_vcpu(), exits.add_vcpu());
        a.count_port(0x3f8);
        a.count_port(0x3f8);
        b.count_port(0x3f8);
        b.count_port(0x87);
        b.count(ExitKind::Intr);
        let summary = exits.summary();
        assert_eq!(summary.get(ExitKind::IoSerial), 3);
        assert_eq!(summary.total(), 5);
        assert_eq!(
            summary.to_string(),
            "exits 5: io-serial 3, io-other 1 (last port 0x87), signal 1"
        );
    }
}
