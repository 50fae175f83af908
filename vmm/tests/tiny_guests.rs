//! Tiny guest programs (assembly in tests/guests/, built here with GNU as and ld
//! into ELF files with a PVH note) run on real KVM through the same loader as a
//! Linux kernel. Skipped, with the reason printed, where /dev/kvm is unusable.

use hvbox_vmm::{run, ExitReason, MachineConfig, RunOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn kvm_usable() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm is not usable here ({e})");
            false
        }
    }
}

/// Assemble and link `tests/guests/NAME.S` into `dir/NAME.elf`.
fn build_guest(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests");
    let obj = dir.join(format!("{name}.o"));
    let elf = dir.join(format!("{name}.elf"));
    let status = Command::new("as")
        .arg("--64")
        .arg("-I")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .arg(src.join(format!("{name}.S")))
        .status()
        .expect("GNU as (binutils) is needed to build the test guests");
    assert!(status.success(), "assembling {name}.S failed");
    let status = Command::new("ld")
        .args([
            "-m",
            "elf_x86_64",
            "-static",
            "-nostdlib",
            "--build-id=none",
        ])
        .args(["-z", "noexecstack", "--no-warn-rwx-segments", "-T"])
        .arg(src.join("guest.ld"))
        .arg("-o")
        .arg(&elf)
        .arg(&obj)
        .status()
        .expect("GNU ld (binutils) is needed to build the test guests");
    assert!(status.success(), "linking {name} failed");
    elf
}

struct Outcome {
    exit: ExitReason,
    serial: String,
}

fn boot(name: &str, cpus: u32, cmdline: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let kernel = build_guest(name, dir.path());
    let serial_log = dir.path().join("serial.log");
    let config = MachineConfig {
        cpus,
        memory: 128 << 20,
        kernel,
        initrd: None,
        cmdline: cmdline.into(),
        disks: vec![],
        nics: vec![],
        serial_log: Some(serial_log.clone()),
    };
    let options = RunOptions {
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let exit = run(&config, &options).unwrap_or_else(|e| panic!("{name}: VMM error: {e}"));
    let serial = std::fs::read_to_string(&serial_log).unwrap_or_default();
    Outcome { exit, serial }
}

#[test]
fn hello_on_com1_then_poweroff() {
    if !kvm_usable() {
        return;
    }
    let out = boot("hello", 1, "");
    assert_eq!(out.serial, "hello from a tiny guest\n");
    assert_eq!(out.exit, ExitReason::Poweroff);
    assert_eq!(out.exit.exit_code(), 0);
}

#[test]
fn i8042_reset_is_a_reboot() {
    if !kvm_usable() {
        return;
    }
    let out = boot("reboot", 1, "");
    assert_eq!(out.exit, ExitReason::Reboot);
    assert_eq!(out.exit.exit_code(), 3);
}

#[test]
fn triple_fault_is_a_crash_with_registers() {
    if !kvm_usable() {
        return;
    }
    let out = boot("triple_fault", 1, "");
    match &out.exit {
        ExitReason::Crash(detail) => assert!(detail.contains("rip="), "{detail}"),
        other => panic!("expected a crash, got {other}"),
    }
    assert_eq!(out.exit.exit_code(), 4);
}

#[test]
fn rtc_reports_the_host_date() {
    if !kvm_usable() {
        return;
    }
    let before = utc_date();
    let out = boot("rtc", 1, "");
    let after = utc_date();
    assert_eq!(out.exit, ExitReason::Poweroff);
    let line = out.serial.trim();
    let date = line.strip_prefix("rtc ").expect("rtc line");
    assert!(
        date.starts_with(&before) || date.starts_with(&after),
        "guest read {date:?}, host date {before}"
    );
}

#[test]
fn pvh_start_info_holds_our_command_line_and_memory_map() {
    if !kvm_usable() {
        return;
    }
    let out = boot("start_info", 1, "console=ttyS0 hvbox-test=1");
    assert_eq!(out.exit, ExitReason::Poweroff);
    let lines: Vec<&str> = out.serial.lines().collect();
    assert_eq!(lines[0], "magic 336ec578");
    assert_eq!(lines[1], "cmdline console=ttyS0 hvbox-test=1");
    let e820: Vec<(u64, u64, u32)> = lines[2..]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[0], "e820", "{l}");
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
            (
                (hex(f[1]) << 32) | hex(f[2]),
                (hex(f[3]) << 32) | hex(f[4]),
                hex(f[5]) as u32,
            )
        })
        .collect();
    let expected: Vec<(u64, u64, u32)> = hvbox_vmm::boot::memory_map(128 << 20)
        .iter()
        .map(|e| (e.addr, e.size, e.kind))
        .collect();
    assert_eq!(e820, expected);
    // RAM from 0 and from 1 MiB to the end of guest memory.
    assert!(e820.contains(&(0, 0x9fc00, 1)));
    assert!(e820.contains(&(0x10_0000, (128 << 20) - 0x10_0000, 1)));
}

#[test]
fn two_vcpus_report_their_apic_ids() {
    if !kvm_usable() {
        return;
    }
    let out = boot("smp", 2, "");
    assert_eq!(out.exit, ExitReason::Poweroff, "serial: {}", out.serial);
    assert_eq!(out.serial, "bsp 00\nap 01\n");
}

fn utc_date() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
