//! Builds the tables into real guest memory and checks them the way a guest would walk
//! them, then (when `iasl` is installed) has ACPICA's disassembler validate them.

use super::*;
use crate::layout::{
    ACPI_GED_IRQ, ACPI_SLEEP_CONTROL_PORT, ACPI_SLEEP_STATUS_PORT, IOAPIC_START, LAPIC_START,
    PCI_ECAM_START,
};
use std::path::Path;
use std::process::Command;

const MEM_SIZE: usize = 512 << 20;

fn guest_memory() -> GuestMemoryMmap<()> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

fn build(cpus: u8) -> (GuestMemoryMmap<()>, GuestAddress) {
    let mem = guest_memory();
    let rsdp = create_acpi_tables(&mem, &AcpiConfig { cpus }).unwrap();
    (mem, rsdp)
}

fn read(mem: &GuestMemoryMmap<()>, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |acc, x| acc.wrapping_add(*x))
}

/// Reads the table at `addr`, checking it lies in the ACPI area and sums to zero.
fn table(mem: &GuestMemoryMmap<()>, addr: u64, signature: &[u8; 4]) -> Vec<u8> {
    let header = read(mem, addr, 36);
    assert_eq!(&header[0..4], signature);
    let len = u32_at(&header, 4) as usize;
    assert!(len >= 36);
    assert!(addr >= ACPI_START.0 && addr + len as u64 <= ACPI_START.0 + ACPI_MAX_SIZE);
    let bytes = read(mem, addr, len);
    assert_eq!(
        sum(&bytes),
        0,
        "{} checksum",
        String::from_utf8_lossy(signature)
    );
    assert_eq!(&bytes[10..16], b"HVBOX ");
    assert_eq!(&bytes[16..24], b"HVBOXVMM");
    bytes
}

fn rsdp(mem: &GuestMemoryMmap<()>, addr: GuestAddress) -> Vec<u8> {
    let rsdp = read(mem, addr.0, 36);
    assert_eq!(&rsdp[0..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp[0..20]), 0, "RSDP v1 checksum");
    assert_eq!(sum(&rsdp), 0, "RSDP extended checksum");
    assert_eq!(rsdp[15], 2, "revision");
    assert_eq!(u32_at(&rsdp, 20), 36, "length");
    rsdp
}

/// All tables, found by walking from the RSDP: (signature, bytes).
fn walk(mem: &GuestMemoryMmap<()>, rsdp_addr: GuestAddress) -> Vec<([u8; 4], Vec<u8>)> {
    let rsdp = rsdp(mem, rsdp_addr);
    let xsdt = table(mem, u64_at(&rsdp, 24), b"XSDT");
    let mut tables = vec![(*b"XSDT", xsdt.clone())];
    for entry in xsdt[36..].chunks(8) {
        let addr = u64::from_le_bytes(entry.try_into().unwrap());
        let sig: [u8; 4] = read(mem, addr, 4).try_into().unwrap();
        tables.push((sig, table(mem, addr, &sig)));
    }
    let fadt = &tables.iter().find(|(s, _)| s == b"FACP").unwrap().1;
    let dsdt = table(mem, u64_at(fadt, 140), b"DSDT");
    tables.push((*b"DSDT", dsdt));
    tables
}

fn find<'a>(tables: &'a [([u8; 4], Vec<u8>)], sig: &[u8; 4]) -> &'a [u8] {
    &tables.iter().find(|(s, _)| s == sig).unwrap().1
}

#[test]
fn acpi_rsdp_is_at_acpi_start_and_xsdt_lists_fadt_madt_mcfg() {
    let (mem, rsdp_addr) = build(2);
    assert_eq!(rsdp_addr, ACPI_START);
    let tables = walk(&mem, rsdp_addr);
    let sigs: Vec<&[u8; 4]> = tables.iter().map(|(s, _)| s).collect();
    assert_eq!(sigs, [b"XSDT", b"FACP", b"APIC", b"MCFG", b"DSDT"]);
    assert_eq!(find(&tables, b"XSDT").len(), 36 + 3 * 8);
}

#[test]
fn acpi_fadt_is_hardware_reduced_with_sleep_registers() {
    let (mem, rsdp_addr) = build(1);
    let tables = walk(&mem, rsdp_addr);
    let fadt = find(&tables, b"FACP");
    assert_eq!(fadt.len(), 276);
    assert_eq!(fadt[8], 6, "major revision");
    let flags = u32_at(fadt, 112);
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    let boot_arch = u16_at(fadt, 109);
    assert_eq!(boot_arch & (1 << 1), 0, "no 8042 for the guest to probe");
    assert_ne!(boot_arch & (1 << 2), 0, "VGA not present");
    assert_eq!(
        boot_arch & (1 << 5),
        0,
        "CMOS RTC not present must stay clear"
    );
    assert_eq!(u32_at(fadt, 40), 0, "32-bit DSDT pointer unused");
    // SLEEP_CONTROL_REG at 244, SLEEP_STATUS_REG at 256: I/O space, 8 bits, byte access.
    for (off, port) in [
        (244, ACPI_SLEEP_CONTROL_PORT),
        (256, ACPI_SLEEP_STATUS_PORT),
    ] {
        assert_eq!(&fadt[off..off + 4], &[1, 8, 0, 1]);
        assert_eq!(u64_at(fadt, off + 4), u64::from(port));
    }
    assert_eq!(&fadt[268..276], b"HVBOXVMM");
    let dsdt_addr = u64_at(fadt, 140);
    assert_eq!(&read(&mem, dsdt_addr, 4), b"DSDT");
}

#[test]
fn acpi_madt_describes_every_cpu_the_ioapic_and_overrides() {
    for cpus in [1u8, 2, 8, MAX_CPUS] {
        let (mem, rsdp_addr) = build(cpus);
        let tables = walk(&mem, rsdp_addr);
        let madt = find(&tables, b"APIC");
        assert_eq!(u32_at(madt, 36), LAPIC_START.0 as u32);

        let mut lapic_ids = Vec::new();
        let mut ioapics = Vec::new();
        let mut overrides = Vec::new();
        let mut nmis = Vec::new();
        let mut off = 44;
        while off < madt.len() {
            let (kind, len) = (madt[off], madt[off + 1] as usize);
            let e = &madt[off..off + len];
            match kind {
                0 => {
                    assert_eq!(len, 8);
                    assert_eq!(e[2], e[3], "processor UID = APIC id");
                    assert_eq!(u32_at(e, 4), 1, "enabled");
                    lapic_ids.push(e[3]);
                }
                1 => {
                    assert_eq!(len, 12);
                    ioapics.push((e[2], u32_at(e, 4), u32_at(e, 8)));
                }
                2 => {
                    assert_eq!(len, 10);
                    overrides.push((e[3], u32_at(e, 4), u16_at(e, 8)));
                }
                4 => {
                    assert_eq!(len, 6);
                    nmis.push((e[2], e[5]));
                }
                other => panic!("unexpected MADT entry type {other}"),
            }
            off += len;
        }
        assert_eq!(off, madt.len());
        assert_eq!(lapic_ids, (0..cpus).collect::<Vec<_>>());
        assert_eq!(ioapics.len(), 1);
        let (ioapic_id, ioapic_addr, gsi_base) = ioapics[0];
        assert!(!lapic_ids.contains(&ioapic_id));
        assert_ne!(ioapic_id, 0xff);
        assert_eq!((ioapic_addr, gsi_base), (IOAPIC_START.0 as u32, 0));
        assert!(
            overrides.contains(&(0, 2, 0b0101)),
            "IRQ0 -> GSI2 edge/high"
        );
        assert!(overrides.contains(&(ACPI_GED_IRQ as u8, ACPI_GED_IRQ, 0b1101)));
        assert_eq!(nmis, [(0xff, 1)]);
    }
}

#[test]
fn acpi_mcfg_describes_the_ecam_window() {
    let (mem, rsdp_addr) = build(1);
    let tables = walk(&mem, rsdp_addr);
    let mcfg = find(&tables, b"MCFG");
    assert_eq!(mcfg.len(), 36 + 8 + 16);
    let entry = &mcfg[44..60];
    assert_eq!(u64_at(entry, 0), PCI_ECAM_START.0);
    assert_eq!(u16_at(entry, 8), 0, "segment");
    assert_eq!(
        (entry[10], entry[11]),
        (0, 0),
        "bus 0 only for a 1 MiB ECAM"
    );
}

#[test]
fn acpi_dsdt_contains_the_expected_objects() {
    let (mem, rsdp_addr) = build(1);
    let tables = walk(&mem, rsdp_addr);
    let dsdt = find(&tables, b"DSDT");
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    for name in [
        &b"_S5_"[..],
        b"_SB_",
        b"COM1",
        b"PCI0",
        b"GED_",
        b"GDAT",
        b"_EVT",
        b"PWRB",
        b"ACPI0013",
    ] {
        assert!(has(name), "DSDT lacks {}", String::from_utf8_lossy(name));
    }
    // Name(_S5_, Package(4){5, 5, 0, 0}) encodes as below.
    assert!(has(&[
        b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00
    ]));
}

#[test]
fn acpi_rejects_bad_cpu_counts() {
    let mem = guest_memory();
    for cpus in [0, MAX_CPUS + 1] {
        assert!(matches!(
            create_acpi_tables(&mem, &AcpiConfig { cpus }),
            Err(AcpiError::InvalidCpuCount(c)) if c == cpus
        ));
    }
}

#[test]
fn acpi_fails_cleanly_without_guest_memory_at_acpi_start() {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0x10_0000), 1 << 20)]).unwrap();
    assert!(matches!(
        create_acpi_tables(&mem, &AcpiConfig { cpus: 1 }),
        Err(AcpiError::GuestMemory(_))
    ));
}

/// Runs `iasl` with `args` in `dir`; returns combined output, asserting success.
fn iasl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("iasl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run iasl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl {args:?} failed:\n{text}");
    text
}

/// The external check: ACPICA, the same code Linux uses, disassembles every table; the
/// DSDT's source is then recompiled, which catches malformed AML and bad object types.
#[test]
fn acpi_tables_pass_iasl() {
    if Command::new("iasl").arg("-v").output().is_err() {
        return hvbox_test_support::skip("iasl not installed (Debian package acpica-tools)");
    }
    let (mem, rsdp_addr) = build(4);
    let dir = tempfile::tempdir().unwrap();
    for (sig, bytes) in walk(&mem, rsdp_addr) {
        let name = String::from_utf8_lossy(&sig).to_lowercase();
        std::fs::write(dir.path().join(format!("{name}.dat")), bytes).unwrap();
    }

    // (iasl cannot disassemble a bare RSDP; the checks above cover it.)
    for name in ["xsdt", "facp", "apic", "mcfg", "dsdt"] {
        let log = iasl(dir.path(), &["-d", &format!("{name}.dat")]);
        let dsl = std::fs::read_to_string(dir.path().join(format!("{name}.dsl"))).unwrap();
        for bad in ["Incorrect", "Error", "**** Unknown", "Invalid"] {
            assert!(!dsl.contains(bad), "{name}.dsl contains {bad:?}:\n{dsl}");
            assert!(!log.contains(bad), "iasl -d {name} says {bad:?}:\n{log}");
        }
    }

    let dsl = std::fs::read_to_string(dir.path().join("dsdt.dsl")).unwrap();
    for needle in [
        "_S5_", "PNP0A08", "PNP0A03", "ACPI0013", "PNP0C0C", "PNP0501", "_EVT",
    ] {
        assert!(dsl.contains(needle), "dsdt.dsl lacks {needle}:\n{dsl}");
    }
    assert!(dsl.contains("Notify (\\_SB.PWRB, 0x80)"), "{dsl}");

    // The host bridge's _CRS: bus 0, the 0xCF8 config ports as its own, an I/O window
    // that leaves them out, and the MMIO window the VMM places BARs in (so the guest
    // keeps them where they are).
    let pci0 = &dsl[dsl.find("Device (PCI0)").unwrap()..dsl.find("Device (MBRD)").unwrap()];
    let mmio_start = format!("0x{:08X}", crate::layout::PCI_MMIO32_START.0);
    let mmio_end = format!(
        "0x{:08X}",
        crate::layout::PCI_MMIO32_START.0 + crate::layout::PCI_MMIO32_SIZE - 1
    );
    for needle in [
        "WordBusNumber (ResourceProducer",
        "0x0CF8,             // Range Minimum",
        "WordIO (ResourceProducer",
        "0x0D00,             // Range Minimum",
        "DWordMemory (ResourceProducer",
        &format!("{mmio_start},         // Range Minimum"),
        &format!("{mmio_end},         // Range Maximum"),
    ] {
        assert!(pci0.contains(needle), "PCI0 lacks {needle:?}:\n{pci0}");
    }

    let facp = std::fs::read_to_string(dir.path().join("facp.dsl")).unwrap();
    let decoded = |field: &str| {
        facp.lines()
            .find(|l| l.contains(field))
            .unwrap_or_else(|| panic!("facp.dsl lacks {field}:\n{facp}"))
            .rsplit(':')
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(decoded("Hardware Reduced"), "1");
    assert_eq!(decoded("8042 Present"), "0");
    assert_eq!(decoded("CMOS RTC Not Present"), "0");
    assert!(
        facp.contains("0000000000000600"),
        "sleep control port:\n{facp}"
    );
    assert!(
        facp.contains("0000000000000601"),
        "sleep status port:\n{facp}"
    );

    // Recompile the disassembled DSDT: the compiler's semantic checks must find no errors.
    let log = iasl(dir.path(), &["-p", "recompiled", "dsdt.dsl"]);
    assert!(log.contains("0 Errors, 0 Warnings"), "{log}");
    println!("{dsl}\n{log}");
}
