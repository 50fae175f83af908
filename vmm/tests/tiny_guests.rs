//! Tiny guest programs (assembly in tests/guests/, built here with GNU as and ld
//! into ELF files with a PVH note) run on real KVM through the same loader as a
//! Linux kernel. Skipped, with the reason printed, where /dev/kvm is unusable.

use hvbox_vmm::{run, run_with_stats, ExitReason, MachineConfig, RunOptions, RunStats};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "guests/support.rs"]
mod support;

use support::{build, kvm_usable, Link};

fn src() -> PathBuf {
    support::guests_dir(env!("CARGO_MANIFEST_DIR"), "tests/guests")
}

/// Build `tests/guests/NAME.S` into `dir/NAME.elf`.
fn build_guest(name: &str, dir: &Path) -> PathBuf {
    build(&src(), name, Link::PvhElf, dir)
}

struct Outcome {
    exit: ExitReason,
    serial: String,
    stats: RunStats,
}

fn boot(name: &str, cpus: u32, cmdline: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let kernel = if name == "bzimage" {
        build(&src(), "bzimage", Link::Flat, dir.path())
    } else {
        build_guest(name, dir.path())
    };
    let serial_log = dir.path().join("serial.log");
    let config = MachineConfig {
        cpus,
        memory: 128 << 20,
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
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let (exit, stats) =
        run_with_stats(&config, &options).unwrap_or_else(|e| panic!("{name}: VMM error: {e}"));
    let serial = std::fs::read_to_string(&serial_log).unwrap_or_default();
    Outcome {
        exit,
        serial,
        stats,
    }
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

/// One port write per byte on COM1 and one to the ACPI sleep register: the run's
/// exit counts say exactly that, the bytes KVM queued in its ring (where it can)
/// counted apart; every byte reaches the log before the VM's end is reported.
#[test]
fn exit_counts_name_each_port_write() {
    use hvbox_vmm::exit_counts::ExitKind;
    if !kvm_usable() {
        return;
    }
    let out = boot("hello", 1, "");
    assert_eq!(out.exit, ExitReason::Poweroff);
    let greeting = "hello from a tiny guest\n";
    assert_eq!(out.serial, greeting);
    let exits = out.stats.exits;
    let queued = exits.serial_queued;
    let bytes = greeting.len() as u64;
    assert_eq!(exits.get(ExitKind::IoSerial) + queued, bytes, "{exits}");
    assert_eq!(exits.get(ExitKind::IoAcpi), 1);
    let serial = match bytes - queued {
        0 => String::new(),
        n => format!("io-serial {n}, "),
    };
    let line = exits.to_string();
    assert!(
        line.starts_with(&format!("exits {}: {serial}io-acpi 1", exits.total())),
        "{line}"
    );
    if queued > 0 {
        assert!(
            line.ends_with(&format!("; serial bytes queued without an exit {queued}")),
            "{line}"
        );
    }
    eprintln!("hello: {line}");
}

#[test]
fn bzimage_enters_in_long_mode_with_boot_params() {
    if !kvm_usable() {
        return;
    }
    let out = boot("bzimage", 1, "console=ttyS0 from=bzimage");
    assert_eq!(out.exit, ExitReason::Poweroff, "serial: {}", out.serial);
    let entries = memory_map_of(128 << 20).len();
    assert_eq!(
        out.serial,
        format!("hello from 64-bit mode\ne820 entries {entries:02x}\ncmdline console=ttyS0 from=bzimage\n")
    );
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
    let expected: Vec<(u64, u64, u32)> = memory_map_of(128 << 20)
        .iter()
        .map(|e| (e.addr, e.size, e.kind))
        .collect();
    assert_eq!(e820, expected);
    // RAM from 0 and from 1 MiB to the end of guest memory.
    assert!(e820.contains(&(0, 0x9fc00, 1)));
    assert!(e820.contains(&(0x10_0000, (128 << 20) - 0x10_0000, 1)));
}

/// Building sets everything up and runs nothing; running is the second step.
#[test]
fn a_built_machine_owns_its_memory_and_vcpus_and_runs_when_told() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serial_log = dir.path().join("serial.log");
    let config = MachineConfig {
        cpus: 2,
        memory: (32 << 20) + (12 << 10),
        kernel: build_guest("smp", dir.path()),
        initrd: None,
        cmdline: String::new(),
        disks: vec![],
        nics: vec![],
        filesystems: vec![],
        nested_virtualization: false,
        serial_log: Some(serial_log.clone()),
    };
    let options = RunOptions {
        timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let machine = hvbox_vmm::build(&config, &options).unwrap();
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    assert_eq!(
        machine.memory().iter().map(|r| r.len()).sum::<u64>(),
        config.memory
    );
    assert_eq!(machine.vcpu_count(), 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(&serial_log).unwrap(),
        "",
        "ran before run()"
    );
    let (exit, _) = machine.run().unwrap();
    assert_eq!(exit, ExitReason::Poweroff);
    assert_eq!(
        std::fs::read_to_string(&serial_log).unwrap(),
        "bsp 00\nap 01\n"
    );
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

/// The e820 map the VMM reports for a guest of `ram` bytes.
fn memory_map_of(ram: u64) -> Vec<hvbox_vmm::boot::E820Entry> {
    hvbox_vmm::boot::memory_map(&hvbox_vmm::memory::create_guest_memory(ram).unwrap())
}

fn utc_date() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Start `name` in a thread with control and console sockets; returns the socket
/// paths and the run's handle.
fn boot_in_background(
    name: &str,
    dir: &Path,
) -> (
    PathBuf,
    PathBuf,
    PathBuf,
    std::thread::JoinHandle<Result<ExitReason, hvbox_vmm::VmmError>>,
) {
    let kernel = build_guest(name, dir);
    let control = dir.join("control.sock");
    let console = dir.join("console.sock");
    let serial_log = dir.join("serial.log");
    let config = MachineConfig {
        cpus: 1,
        memory: 64 << 20,
        kernel,
        initrd: None,
        cmdline: String::new(),
        disks: vec![],
        nics: vec![],
        filesystems: vec![],
        nested_virtualization: false,
        serial_log: Some(serial_log.clone()),
    };
    let options = RunOptions {
        timeout: Some(Duration::from_secs(60)),
        control_socket: Some(control.clone()),
        console_socket: Some(console.clone()),
        ..Default::default()
    };
    let handle = std::thread::spawn(move || run(&config, &options));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(control.exists() && console.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "sockets never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (control, console, serial_log, handle)
}

fn request(control: &Path, line: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(control).unwrap();
    writeln!(stream, "{line}").unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    reply.trim().to_string()
}

#[test]
fn control_socket_status_then_stop_hard_stops_a_guest_that_ignores_acpi() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (control, _, _, handle) = boot_in_background("idle", dir.path());
    assert_eq!(request(&control, "status"), "running");
    // The idle guest exits to the VMM for nothing (its HLT stays in KVM).
    assert_eq!(request(&control, "stats"), "exits 0");
    assert!(request(&control, "reboot").starts_with("error: unknown request"));
    let asked = std::time::Instant::now();
    assert_eq!(request(&control, "stop 1"), "ok");
    let exit = handle.join().unwrap().unwrap();
    assert_eq!(exit, ExitReason::HardStop);
    assert_eq!(exit.exit_code(), 6);
    // The guest had its grace period before the hard stop.
    assert!(asked.elapsed() >= Duration::from_secs(1));
    assert!(!control.exists(), "control socket left behind");
}

/// `stop` with a grace past the clock's range used to overflow `Instant` and panic
/// the VMM; now it is refused and the VMM answers the next request.
#[test]
fn control_socket_refuses_a_huge_stop_and_keeps_running() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (control, _, _, handle) = boot_in_background("idle", dir.path());
    assert_eq!(
        request(&control, "stop 18446744073709551615"),
        "error: stop takes at most 86400 seconds (a day), not 18446744073709551615"
    );
    assert_eq!(request(&control, "status"), "running");
    assert!(!handle.is_finished(), "the VMM ended");
    assert_eq!(request(&control, "kill"), "ok");
    assert_eq!(handle.join().unwrap().unwrap(), ExitReason::HardStop);
}

#[test]
fn control_socket_kill_stops_at_once() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (control, _, _, handle) = boot_in_background("idle", dir.path());
    assert_eq!(request(&control, "kill"), "ok");
    assert_eq!(handle.join().unwrap().unwrap(), ExitReason::HardStop);
}

#[test]
fn console_socket_carries_output_and_input() {
    use std::io::{Read, Write};
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, console, serial_log, handle) = boot_in_background("echo", dir.path());
    let mut stream = std::os::unix::net::UnixStream::connect(&console).unwrap();
    // Type only once the console is attached and waiting for input.
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(b"hi there q").unwrap();
    let exit = handle.join().unwrap().unwrap();
    assert_eq!(exit, ExitReason::Poweroff);
    let mut seen = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.read_to_string(&mut seen);
    // The client attached after the banner may have been printed; the echo is its own.
    assert!(seen.ends_with("hi there q\n"), "console saw {seen:?}");
    let log = std::fs::read_to_string(serial_log).unwrap();
    assert_eq!(log, "echo ready\nhi there q\n");
}
