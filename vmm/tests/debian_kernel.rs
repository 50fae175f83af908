//! The real Debian cloud kernel on this host's KVM, as far as it gets.
//!
//! Where KVM runs guests on hardware virtualization this boots on; where it executes
//! them by instruction emulation (see the README) the kernel stops after early boot.
//! Either way, everything the VMM hands the kernel must show in its log by then:
//! our command line, our e820 map, our ACPI tables and the MADT for SMP.

use hvbox_vmm::{run, ExitReason, MachineConfig, RunOptions};
use std::time::Duration;

#[path = "guests/support.rs"]
mod support;

use support::newest_cloud_kernel;

#[test]
fn debian_kernel_boots_through_early_boot_with_our_tables() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return hvbox_test_support::skip(format!("/dev/kvm is not usable here ({e})"));
    }
    let Some(bzimage) = newest_cloud_kernel() else {
        return hvbox_test_support::skip(
            "no /boot/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let image = std::fs::read(&bzimage).unwrap();
    let vmlinux = hvbox_vmm::boot::extract_vmlinux(&image).expect("vmlinux from the bzImage");
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, vmlinux).unwrap();
    let serial_log = dir.path().join("serial.log");
    let cmdline = "console=ttyS0 earlyprintk=serial,ttyS0 hvbox.test=early-boot";
    let config = MachineConfig {
        cpus: 2,
        memory: 512 << 20,
        kernel,
        initrd: None,
        cmdline: cmdline.into(),
        disks: vec![],
        nics: vec![],
        filesystems: vec![],
        nested_virtualization: false,
        serial_log: Some(serial_log.clone()),
    };
    let options = RunOptions {
        timeout: Some(Duration::from_secs(240)),
        cpuid_mask: hvbox_vmm::arch::cpuid::CpuidMask {
            emulator_safe: true,
            ..Default::default()
        },
        ..Default::default()
    };
    // On an emulating KVM the run ends in an emulation failure; on hardware it ends
    // by timeout (no root filesystem to go on with) or a panic-triggered reboot.
    let result = run(&config, &options);
    let log = std::fs::read_to_string(&serial_log).unwrap_or_default();
    let show = || format!("run: {result:?}\nserial log:\n{log}");
    for needle in [
        "Linux version ",
        &format!("Command line: {cmdline}"),
        "BIOS-provided physical RAM map:",
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
        "ACPI: RSDP 0x00000000000E0000",
        "ACPI: XSDT",
        "ACPI: FACP",
        "ACPI: DSDT",
        "ACPI: APIC",
        "Using ACPI (MADT) for SMP configuration information",
    ] {
        assert!(log.contains(needle), "missing {needle:?}\n{}", show());
    }
    if let Ok(exit) = &result {
        assert_ne!(*exit, ExitReason::Poweroff, "{}", show());
    }
}
