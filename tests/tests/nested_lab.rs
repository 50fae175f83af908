//! hvbox's own VMM booting Debian's cloud kernel on a real /dev/kvm, inside the
//! nested lab (see tests/src/lab.rs), timed next to QEMU+KVM in the same L1.
//!
//! One L1 for the whole file, so every check lives in this one test.

use hvbox_tests::lab::{
    copy_box_disk, last_lines, Lab, COUNTER_ROOT, CRASH_ROOT, L2_BOX_DEVICE, L2_FS_TAG,
    L2_UPGRADE_PACKAGE, LAB_MOUNT,
};
use std::time::Duration;

const RUN_INIT: &str = "Run /init as init process";
const TWO_CPUS: &str = "smp: Brought up 1 node, 2 CPUs";
const CMDLINE: &str = "console=ttyS0 panic=-1 hvbox.lab=1";

#[test]
fn builtin_vmm_boots_debian_in_the_nested_lab() {
    // L1 kernels with two vCPUs have died under QEMU's emulated SVM (see the
    // README): a fault below the lab. A fresh L1 gets one more try; a failed check
    // with a healthy L1 fails at once.
    let started = std::time::Instant::now();
    for attempt in 1..=2 {
        let lab = match Lab::start() {
            Ok(lab) => lab,
            Err(reason) if attempt == 1 => {
                return hvbox_test_support::skip(format!("the nested lab: {reason}"))
            }
            // The first L1 worked: a second that cannot is a failure, not a skip.
            Err(reason) => panic!("the fresh L1 for the second attempt failed: {reason}"),
        };
        match checks(&lab) {
            Ok(report) => {
                eprintln!(
                    "nested lab figures:\n  {}\n  whole lab, L1 attempt {attempt}: {:.0} s",
                    report.join("\n  "),
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            Err(failure) => match lab.l1_crash() {
                Some(crash) if attempt == 1 => eprintln!(
                    "L1 itself failed (emulated hardware below the lab); retrying with a fresh L1.\nThe check said: {failure}\nWhat shows it:\n{crash}"
                ),
                // A second failed L1 keeps what shows it (QEMU's log for one that
                // stopped answering), as the first did.
                Some(crash) => panic!("{failure}\nL1 itself failed again:\n{crash}"),
                None => panic!("{failure}\nL1 serial log:\n{}", lab.l1_serial_tail()),
            },
        }
    }
    panic!("L1 failed twice");
}

/// Every lab check in order; the figures, or what failed.
fn checks(lab: &Lab) -> Result<Vec<String>, String> {
    let limit = Duration::from_secs(120);
    let mut report = vec![format!(
        "L1 up (hvbox up to ssh, TCG): {:.1} s",
        lab.l1_up_secs
    )];
    if lab.up_only {
        engine_checks(lab, &mut report)?;
        return Ok(report);
    }

    // HVBOX_LAB_BOOTS=N boots each kernel N times (a soak run).
    let boots: usize = std::env::var("HVBOX_LAB_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let qemu = format!(
        "qemu-system-x86_64 -accel kvm -cpu host -M q35 -m 1G -smp 2 -nodefaults -no-user-config -display none -serial file:/tmp/l2-qemu.log -kernel {LAB_MOUNT}/bzImage -initrd {LAB_MOUNT}/initrd.img -append '{CMDLINE}'"
    );
    let hvbox_run = |kernel: &str| {
        format!(
            "{LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/{kernel} --initrd {LAB_MOUNT}/initrd.img --cmdline '{CMDLINE}' --cpus 2 --memory 1G --serial-log /tmp/l2-{kernel}.log --timeout 150"
        )
    };
    let runs = [
        (
            "bzImage on hvbox's VMM",
            hvbox_run("bzImage"),
            "/tmp/l2-bzImage.log",
        ),
        (
            "PVH vmlinux on hvbox's VMM",
            hvbox_run("vmlinux"),
            "/tmp/l2-vmlinux.log",
        ),
        ("bzImage on QEMU+KVM", qemu, "/tmp/l2-qemu.log"),
    ];
    // Every boot of a soak runs, so that one run gives each way's failure rate; any
    // failure fails the lab, with the first failed boot's log.
    let mut first_failure = None;
    for (kind, command, log_path) in &runs {
        let mut times = Vec::new();
        for boot in 1..=boots {
            let (secs, log) = lab.time_until(command, log_path, RUN_INIT, limit);
            let problem = match secs {
                None => Some(format!("no `{RUN_INIT}` within {limit:?}")),
                Some(_) if !log.contains(TWO_CPUS) => Some("second vCPU not up".into()),
                Some(_) if !log.contains(&format!("Command line: {CMDLINE}")) => {
                    Some("our command line is missing".into())
                }
                Some(secs) => {
                    times.push(format!("{secs:.2}"));
                    None
                }
            };
            if let Some(problem) = problem {
                // The VMM's own word on a failed boot (a triple fault names the registers).
                let said = log.lines().find(|l| l.contains("vCPU")).unwrap_or(&problem);
                times.push(format!("FAILED ({said})"));
                let trace = lab.kvm_trace();
                eprintln!("L2 {kind}, boot {boot} failed; L1's KVM trace:\n{trace}");
                first_failure.get_or_insert(format!(
                    "L2 {kind}, boot {boot} of {boots}: {problem}; log:\n{log}\nL1's KVM trace:\n{trace}"
                ));
            }
        }
        report.push(format!(
            "L2 {kind} to /init: {} s ({boots} boot(s))",
            times.join(", ")
        ));
    }
    // A guest-initiated power-off (our one-instruction init) is a clean exit, code 0.
    let poweroff = lab.root(&format!(
        "{LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/vmlinux --initrd {LAB_MOUNT}/poweroff.cpio --cmdline 'console=ttyS0 rdinit=/init' --cpus 2 --memory 512M --serial-log /tmp/l2-poweroff.log --timeout 120; echo exit=$?; cat /tmp/l2-poweroff.log"
    ));
    if !poweroff.stdout.contains("exit=0") || !poweroff.stdout.contains("reboot: Power down") {
        return Err(format!(
            "guest poweroff was not a clean exit 0:\n{}{}",
            poweroff.stdout, poweroff.stderr
        ));
    }

    let virtio = virtio_check(lab, boots, &mut report);
    let crash = crash_check(lab, &mut report);
    let suspend = suspend_check(lab, &mut report, false);
    let suspend_with_share = suspend_check(lab, &mut report, true);
    let virtio_fs = virtio_fs_check(lab, &mut report);

    // hvbox's engines run even after a failed boot above: they boot differently.
    let engines = if lab.full {
        engine_checks(lab, &mut report)
    } else {
        report.push("hvbox's engines in L1 not checked (HVBOX_LAB=1 checks them)".into());
        Ok(())
    };
    let failures: Vec<String> = first_failure
        .into_iter()
        .chain(virtio.err())
        .chain(crash.err())
        .chain(suspend.err())
        .chain(suspend_with_share.err())
        .chain(virtio_fs.err())
        .chain(engines.err())
        .collect();
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(format!("{}\n{}", report.join("\n"), failures.join("\n")))
    }
}

/// Crash consistency on the builtin engine: L2's init (tests/guests/crash_init.c)
/// writes 1 MiB to its root file system on virtio-blk and fsyncs it, and L1 kills the
/// VMM with SIGKILL at once. The disk then holds a file system that e2fsck finds clean
/// once its journal is replayed (on a copy, as a mount would), and a second boot finds
/// every byte of the file as written.
fn crash_check(lab: &Lab, report: &mut Vec<String>) -> Result<(), String> {
    let disk = "/tmp/l2-crash-root.img";
    let boot = |log: &str| {
        format!(
            "{LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/vmlinux --initrd {LAB_MOUNT}/initrd.img --disk {disk} --cmdline 'console=ttyS0 root=/dev/vda rw panic=-1' --cpus 2 --memory 1G --serial-log {log} --timeout 150"
        )
    };
    let run = lab.root(&format!(
        "cp {LAB_MOUNT}/{CRASH_ROOT} {disk} && rm -f /tmp/l2-crash-*.log
{} 2>/tmp/l2-crash-vmm.log &
vmm=$!
for i in $(seq 1500); do grep -q 'written and synced' /tmp/l2-crash-1.log 2>/dev/null && break; kill -0 $vmm 2>/dev/null || break; sleep 0.1; done
kill -KILL $vmm; wait $vmm; echo killed=$?
cp --sparse=always {disk} /tmp/l2-crash-copy.img
e2fsck -E journal_only -p /tmp/l2-crash-copy.img; echo replay=$?
e2fsck -f -n /tmp/l2-crash-copy.img; echo fsck=$?
rm -f /tmp/l2-crash-copy.img
{}; echo second_boot=$?
echo '--- first boot'; cat /tmp/l2-crash-1.log
echo '--- VMM'; cat /tmp/l2-crash-vmm.log
echo '--- second boot'; cat /tmp/l2-crash-2.log",
        boot("/tmp/l2-crash-1.log"),
        boot("/tmp/l2-crash-2.log")
    ));
    let out = &run.stdout.replace("\r\n", "\n");
    let problem = if !out.contains("crash test: written and synced") {
        Some("the first boot never said it had written and synced its file")
    } else if !out.contains("killed=137") {
        Some("the VMM was not running to be killed (SIGKILL gives 137)")
    } else if !matches!(field(out, "replay"), Some("0" | "1")) {
        Some("replaying the journal failed")
    } else if field(out, "fsck") != Some("0") {
        Some("e2fsck -fn found the file system damaged")
    } else if field(out, "second_boot") != Some("0") {
        Some("the second boot did not power off cleanly (exit 0)")
    } else if !out.contains("found /crash-test.bin, 1048576 bytes, 0 differ") {
        Some("the second boot did not find all of the file as written")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(format!(
            "crash consistency in L2: {problem}:\n{out}{}",
            run.stderr
        ));
    }
    report.push(
        "L2 on hvbox's VMM killed with SIGKILL after fsync: e2fsck clean, the synced 1 MiB intact at the next boot".into(),
    );
    Ok(())
}

/// Suspend and resume on the builtin engine with Debian's kernel: L2's init
/// (tests/guests/counter_init.c) counts, reading its virtio-blk disk and sleeping on
/// its timer between ticks, with passt behind its NIC and two vCPUs. L1 has the VMM
/// save the machine (`save stop`, the state file's descriptor sent along) and a new
/// VMM process continue it: the count goes on where it stopped, each tick still
/// reading the disk, with a new passt behind the NIC as hvbox starts for a resumed
/// machine.
///
/// `with_share` adds a virtio-fs device with virtiofsd in L1 behind it (a new one for
/// the continued VMM), as hvbox's default project mount has: guest memory is then a
/// shared memfd the VMM hands to virtiofsd, and the restore copies it into one.
fn suspend_check(lab: &Lab, report: &mut Vec<String>, with_share: bool) -> Result<(), String> {
    let share = "/root/l2-count-share";
    let variant = if with_share {
        " with a virtio-fs share"
    } else {
        ""
    };
    let run = |n: u32, extra: &str| {
        let (virtiofsd, fs) = match with_share {
            true => (
                format!("rm -f /tmp/l2-count-fs.sock; {LAB_MOUNT}/virtiofsd --socket-path /tmp/l2-count-fs.sock --shared-dir {share} --sandbox none </dev/null >/tmp/l2-count-virtiofsd-{n}.log 2>&1 &
for i in $(seq 100); do [ -S /tmp/l2-count-fs.sock ] && break; sleep 0.1; done
"),
                format!("--fs {L2_FS_TAG}=/tmp/l2-count-fs.sock"),
            ),
            false => (String::new(), String::new()),
        };
        format!(
            "{virtiofsd}{LAB_MOUNT}/hvbox vmm run {fs} --kernel {LAB_MOUNT}/vmlinux --initrd {LAB_MOUNT}/initrd.img --disk {LAB_MOUNT}/{COUNTER_ROOT},ro --net passt:/tmp/l2-count-passt.sock --mac 52:54:00:12:34:56 --cmdline 'console=ttyS0 root=/dev/vda ro panic=-1' --cpus 2 --memory 512M --serial-log /tmp/l2-count-{n}.log --control-socket /tmp/l2-count-{n}.sock --timeout 400 {extra} 2>/tmp/l2-count-vmm-{n}.log &
vmm=$!
for i in $(seq 1 3000); do [ -S /tmp/l2-count-{n}.sock ] && break; kill -0 $vmm 2>/dev/null || break; sleep 0.1; done"
        )
    };
    // Waits for tick $want in the console output so far, or for the VMM to end. A
    // save can stop the guest mid-line (even mid-number) and the continued machine
    // finishes that line in its own log, so the logs are read as one stream.
    let wait_tick = |logs: &str| {
        format!(
            "for i in $(seq 1 3000); do cat {logs} 2>/dev/null | grep -q \"l2 tick $want:\" && break; kill -0 $vmm 2>/dev/null || break; sleep 0.1; done"
        )
    };
    let passt = "rm -f /tmp/l2-count-passt.sock; passt --socket /tmp/l2-count-passt.sock --pid /tmp/l2-count-passt.pid >/dev/null 2>&1";
    let script = format!(
        "rm -rf /tmp/l2-count-* {share}; mkdir -p {share}; {passt}
{}
want=3; {}
start=$(date +%s%N)
python3 -c 'import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
socket.send_fds(s, [b\"save stop\\n\"], [fd])
print(\"save:\", s.makefile().readline().strip())' /tmp/l2-count-1.sock /tmp/l2-count.state
wait $vmm; echo first_exit=$?; echo save_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo state_bytes=$(du -B1 /tmp/l2-count.state | cut -f1)
last=$(sed -n 's/.*l2 tick \\([0-9][0-9]*\\):.*/\\1/p' /tmp/l2-count-1.log | tail -1)
# A new passt, as hvbox starts one for a resumed machine.
kill $(cat /tmp/l2-count-passt.pid); sleep 0.5; {passt}
start=$(date +%s%N)
{}
want=$((last + 1)); {}
echo resume_ms=$(( ($(date +%s%N) - start) / 1000000 ))
want=$((last + 5)); {}
kill -KILL $vmm; kill $(cat /tmp/l2-count-passt.pid)
echo '--- first run'; cat /tmp/l2-count-1.log
echo; echo '--- second run'; cat /tmp/l2-count-2.log
echo; echo '--- VMM'; cat /tmp/l2-count-vmm-1.log /tmp/l2-count-vmm-2.log /tmp/l2-count-virtiofsd-*.log 2>/dev/null",
        run(1, ""),
        wait_tick("/tmp/l2-count-1.log"),
        run(2, "--restore /tmp/l2-count.state"),
        wait_tick("/tmp/l2-count-1.log /tmp/l2-count-2.log"),
        wait_tick("/tmp/l2-count-1.log /tmp/l2-count-2.log")
    );
    let out = lab.root(&script);
    let out_text = out.stdout.replace("\r\n", "\n");
    // Each log ends where its VMM stopped, often mid-line (a save cuts a tick's
    // line, which the continued machine finishes); the script starts each marker on
    // a line of its own.
    let section = |name: &str| {
        out_text
            .split_once(&format!("--- {name}\n"))
            .map(|(_, rest)| rest.split("\n--- ").next().unwrap_or(""))
            .unwrap_or("")
            .to_string()
    };
    let problem = if !out_text.contains("save: ok") {
        Some("the VMM did not answer `save stop` with ok")
    } else if field(&out_text, "first_exit") != Some("0") {
        Some("the saved VMM did not exit 0")
    } else if let Err(problem) = count_across_save(&section("first run"), &section("second run")) {
        Some(problem)
    } else if !section("second run").contains("read 4096 bytes from /dev/vda") {
        Some("the continued machine's disk reads did not complete")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(format!(
            "suspend in L2{variant}: {problem}:\n{out_text}{}",
            out.stderr
        ));
    }
    let ms = |name: &str| {
        field(&out_text, name)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or("?".into(), |ms| format!("{:.1} s", ms / 1000.0))
    };
    let state_mib = field(&out_text, "state_bytes")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or("?".into(), |b| format!("{} MiB", b >> 20));
    report.push(format!(
        "L2 Debian kernel on hvbox's VMM{variant} saved mid-count (save {}, state {state_mib} on disk for 512 MiB of RAM) and continued in a new VMM (to its next tick {}): count, disk reads and timer went on, a new passt behind the NIC",
        ms("save_ms"),
        ms("resume_ms")
    ));
    Ok(())
}

/// Whether the counter's console output before the save and after the restore is one
/// count from 1 with at least five ticks from the continued machine. The first log
/// ends where the save stopped the guest, possibly mid-line or mid-number, and the
/// continued machine finishes that line: the two logs joined are the guest's stream.
fn count_across_save(first_log: &str, second_log: &str) -> Result<(), &'static str> {
    // Whole ticks only: a line cut by the save (or by the final kill) is not one.
    let ticks = |log: &str| -> Vec<u64> {
        log.lines()
            .filter_map(|l| l.split("l2 tick ").nth(1)?.split_once(':')?.0.parse().ok())
            .collect()
    };
    let before = ticks(first_log).len();
    let all = ticks(&format!("{first_log}{second_log}"));
    if all.len().saturating_sub(before) < 5 {
        return Err("the continued machine did not count on (5 ticks)");
    }
    if all.first() != Some(&1) || all.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err("the count did not go on where it stopped");
    }
    Ok(())
}

#[test]
fn a_count_cut_by_the_save_goes_on_in_the_continued_log() {
    let ticks = |range: std::ops::RangeInclusive<u64>| -> String {
        range
            .map(|n| format!("l2 tick {n}: read 4096 bytes from /dev/vda\n"))
            .collect()
    };
    let stream = format!("Run /init as init process\n{}", ticks(1..=20));
    // The save may stop the guest at any byte: after the label, inside a two-digit
    // number, between lines.
    let last_cut = stream.find("l2 tick 16:").unwrap();
    for cut in 0..=last_cut {
        let (first, second) = stream.split_at(cut);
        assert_eq!(
            count_across_save(first, second),
            Ok(()),
            "cut at {cut}: {first:?}"
        );
    }
    let first = ticks(1..=3);
    assert!(
        count_across_save(&first, &ticks(5..=12)).is_err(),
        "a lost tick"
    );
    assert!(
        count_across_save(&first, &ticks(1..=12)).is_err(),
        "a count started over"
    );
    assert!(
        count_across_save(&first, &ticks(4..=7)).is_err(),
        "four ticks on"
    );
}

/// The value of a `NAME=VALUE` line of a script's output.
fn field<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .map(str::trim)
}

/// Virtio over PCI with Linux's own drivers: the initramfs finds the root disk on
/// virtio-blk, mounts it and runs its /sbin/init, which powers off; the NIC is
/// backed by a real passt in L1. Boots `boots` times (a soak) and stops at the
/// first failed boot.
fn virtio_check(lab: &Lab, boots: usize, report: &mut Vec<String>) -> Result<(), String> {
    let mut times = Vec::new();
    for boot in 1..=boots {
        let virtio = lab.root(&format!(
            "pgrep -x passt >/dev/null || passt --socket /tmp/l2-passt.sock >/tmp/l2-passt.log 2>&1; start=$(date +%s%N); {LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/vmlinux --initrd {LAB_MOUNT}/initrd.img --disk {LAB_MOUNT}/root.img,ro --net passt:/tmp/l2-passt.sock --cmdline 'console=ttyS0 root=/dev/vda ro panic=-1' --cpus 2 --memory 1G --serial-log /tmp/l2-virtio.log --timeout 300; echo exit=$?; echo virtio_ms=$(( ($(date +%s%N) - start) / 1000000 )); cat /tmp/l2-virtio.log"
        ));
        for expected in ["exit=0", "virtio_blk virtio0: [vda]", "reboot: Power down"] {
            if !virtio.stdout.contains(expected) {
                // The log's end first: that is where a stalled boot shows where it stopped.
                return Err(format!(
                    "virtio boot {boot} of {boots}: no `{expected}`; the L2 log ends:\n{}\nL1's KVM trace:\n{}\nWhole output:\n{}{}",
                    last_lines(&virtio.stdout, 40),
                    lab.kvm_trace(),
                    virtio.stdout,
                    virtio.stderr
                ));
            }
        }
        times.push(
            field(&virtio.stdout, "virtio_ms")
                .unwrap_or("?")
                .to_string(),
        );
        if boot == boots {
            report.push(format!(
                "L2 root on virtio-blk, mounted and powered off cleanly in {} ms ({boots} boot(s)); virtio-net driver bound: {}",
                times.join(", "),
                virtio.stdout.contains("virtio_net")
            ));
        }
    }
    Ok(())
}

/// A folder of L1 shared with L2 over virtio-fs: virtiofsd in L1, hvbox's VMM giving
/// L2 the device, and L2's init (tests/guests/virtiofs_init.c) loading virtio_pci,
/// fuse and virtiofs, mounting the share, reading the file L1 wrote and writing one
/// L1 then reads. virtiofsd must end with the VM (its one frontend gone).
fn virtio_fs_check(lab: &Lab, report: &mut Vec<String>) -> Result<(), String> {
    if let Err(reason) = &lab.l2_virtiofs {
        hvbox_test_support::skip(format!("virtio-fs in the nested lab: {reason}"));
        report.push(format!("virtio-fs in L2 not checked: {reason}"));
        return Ok(());
    }
    let nonce = format!(
        "hello from L1, {}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let share = "/root/l2-share";
    let socket = "/tmp/l2-virtiofsd.sock";
    let run = lab.root(&format!(
        "rm -rf {share} {socket}; mkdir -p {share} && echo '{nonce}' > {share}/from-l1.txt
{LAB_MOUNT}/virtiofsd --socket-path {socket} --shared-dir {share} --sandbox none </dev/null >/tmp/l2-virtiofsd.log 2>&1 &
virtiofsd=$!
for i in $(seq 100); do [ -S {socket} ] && break; sleep 0.1; done
start=$(date +%s%N)
{LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/vmlinux --initrd {LAB_MOUNT}/virtiofs.cpio --cmdline 'console=ttyS0 rdinit=/init panic=-1' --cpus 2 --memory 512M --fs {L2_FS_TAG}={socket} --serial-log /tmp/l2-virtiofs.log --timeout 150 2>/tmp/l2-virtiofs-vmm.log
echo exit=$? ms=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 1; kill -0 $virtiofsd 2>/dev/null && echo virtiofsd-outlived-the-vm && kill $virtiofsd
echo '--- from-l2.txt'; cat {share}/from-l2.txt
echo '--- serial'; cat /tmp/l2-virtiofs.log
echo '--- VMM'; cat /tmp/l2-virtiofs-vmm.log
echo '--- virtiofsd'; cat /tmp/l2-virtiofsd.log"
    ));
    // The guest's console turns each newline into CR LF.
    let out = &run.stdout.replace("\r\n", "\n");
    let written = out
        .split_once("--- from-l2.txt\n")
        .and_then(|(_, rest)| rest.split_once("--- serial"))
        .map(|(file, _)| file.trim_end());
    let problem = if !out.contains("exit=0 ") {
        Some("the VM did not power off cleanly (exit 0)".to_string())
    } else if !out.contains(&format!("l2 read: {nonce}\n")) {
        Some(format!("L2 did not read `{nonce}` from the share"))
    } else if written != Some(&format!("L2 saw: {nonce}")) {
        Some(format!("L1 reads {written:?} in from-l2.txt"))
    } else if out.contains("virtiofsd-outlived-the-vm") {
        Some("virtiofsd still runs after the VM ended".into())
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(format!("virtio-fs in L2: {problem}:\n{out}{}", run.stderr));
    }
    let secs = out
        .lines()
        .find_map(|l| l.split_once(" ms=")?.1.trim().parse::<f64>().ok())
        .map_or("?".into(), |ms| format!("{:.1} s", ms / 1000.0));
    report.push(format!(
        "L2 on hvbox's VMM mounted L1's folder over virtio-fs (virtiofsd in L1), read L1's file and wrote one L1 read; boot to power-off {secs}"
    ));
    Ok(())
}

/// `hvbox suspend` then `hvbox up` of the builtin engine's machine in L1 (run by
/// `hv`, a shell prefix): a ticker process started over ssh survives with its pid,
/// its file grows again, `status` said `suspended` in between. The figure for the
/// report, or what failed.
fn suspend_through_hvbox(lab: &Lab, hv: &str) -> Result<String, String> {
    let started = lab.root(&format!(
        "{hv} ssh -- \"setsid sh -c 'while :; do date +%s >> /tmp/ticks; sleep 1; done' </dev/null >/dev/null 2>&1 & echo ticker=\\$!\""
    ));
    let pid = field(&started.stdout, "ticker")
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "builtin: starting a ticker over ssh:\n{}{}",
                started.stdout, started.stderr
            )
        })?;
    let run = lab.root(&format!(
        "sleep 3; {hv} suspend; echo suspend_rc=$?; {hv} status --json | tr -d ' \\n'; echo
start=$(date +%s%N); {hv} up --quiet --timeout 900; echo up_rc=$?; echo resume_ms=$(( ($(date +%s%N) - start) / 1000000 ))
{hv} ssh -- 'kill -0 {pid} && echo alive=yes; echo before=$(wc -l < /tmp/ticks); sleep 4; echo after=$(wc -l < /tmp/ticks)'"
    ));
    let out = &run.stdout;
    let count = |name: &str| field(out, name).and_then(|v| v.parse::<u64>().ok());
    let problem = if field(out, "suspend_rc") != Some("0") {
        Some("`hvbox suspend` failed")
    } else if !out.contains("\"state\":\"suspended\"") {
        Some("`status --json` did not say suspended")
    } else if field(out, "up_rc") != Some("0") {
        Some("`hvbox up` did not resume the machine")
    } else if field(out, "alive") != Some("yes") {
        Some("the ticker process did not survive")
    } else if !matches!((count("before"), count("after")), (Some(b), Some(a)) if a > b) {
        Some("the ticker's file did not grow after the resume")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(format!(
            "builtin: suspend and resume in L1: {problem}:\n{out}{}",
            run.stderr
        ));
    }
    let secs = field(out, "resume_ms")
        .and_then(|v| v.parse::<f64>().ok())
        .map_or("?".into(), |ms| format!("{:.1} s", ms / 1000.0));
    Ok(format!(
        "hvbox suspend + up on the builtin engine in L1: resumed to ssh in {secs}, the ticker process alive and writing"
    ))
}

/// hvbox itself in L1: `hvbox up` of the Debian test box on the builtin engine (the
/// whole path: boot files from the disk, PVH, virtio disks and seed, passt, cloud-init,
/// ssh with the pinned key), its console, an ACPI halt, and the same machine on the
/// qemu engine with KVM for comparison.
fn engine_checks(lab: &Lab, report: &mut Vec<String>) -> Result<(), String> {
    let hvbox = format!("{LAB_MOUNT}/hvbox");
    // The box goes into L1's cache once, so that each `up` below times the boot.
    let url = "file:///var/tmp/l2box/disk.raw";
    let import = lab.root(&format!(
        "{} && {hvbox} box add {url} --digest {} --name l2-test --quiet",
        copy_box_disk(L2_BOX_DEVICE, "/var/tmp/l2box"),
        lab.l2_box_digest
    ));
    if import.status != Some(0) {
        return Err(format!(
            "importing the test box in L1:\n{}{}",
            import.stdout, import.stderr
        ));
    }
    for engine in ["builtin", "qemu"] {
        let dir = format!("/root/l2-{engine}");
        // Machines mount their project folder by default: hvbox in L1 takes the
        // virtiofsd the lab disk carries.
        let hv = format!("cd {dir} && HVBOX_VIRTIOFSD={LAB_MOUNT}/virtiofsd {hvbox}");
        let spec = format!(
            "box:\n  disk:\n    url: {url}\n    digest: \"{}\"\nengine: {engine}\ncpus: 2\nmemory: 1G\nhostname: l2-{engine}\nssh:\n  user: tester\n",
            lab.l2_box_digest
        );
        let up = lab.root(&format!(
            "mkdir -p {dir} && cat > {dir}/hvbox.yaml <<'EOF'\n{spec}EOF\nstart=$(date +%s%N); {hv} up --quiet --timeout 900; rc=$?; echo up_ms=$(( ($(date +%s%N) - start) / 1000000 )) up_rc=$rc; echo up_start_ns=$start"
        ));
        let up_ms = up
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("up_ms="))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok());
        if !up.stdout.contains("up_rc=0") {
            let serial = lab.root(&format!("tail -40 {dir}/.hvbox/machines/default/serial.log; cat {dir}/.hvbox/machines/default/vm.log"));
            return Err(format!(
                "`hvbox up` on the {engine} engine in L1 failed:\n{}{}\n--- serial and VM log\n{}",
                up.stdout, up.stderr, serial.stdout
            ));
        }
        if !up.stdout.contains(&format!("booting on {engine}"))
            && !up.stdout.contains("booting on hvbox's embedded VMM")
        {
            return Err(format!(
                "{engine}: `up` did not say which engine it picked:\n{}",
                up.stdout
            ));
        }
        let up_start = field(&up.stdout, "up_start_ns").unwrap_or("0");
        report.extend(boot_profile(lab, engine, &dir, &hv, up_start));
        let uname = lab.root(&format!("{hv} ssh -- uname -r"));
        if uname.status != Some(0) || !uname.stdout.trim().ends_with("-amd64") {
            return Err(format!(
                "{engine}: `hvbox ssh -- uname -r` in L1:\n{}{}",
                uname.stdout, uname.stderr
            ));
        }
        let status = lab.root(&format!("{hv} status --json"));
        if !status.stdout.contains(&format!("\"engine\": \"{engine}\""))
            && !status.stdout.contains(&format!("\"engine\":\"{engine}\""))
        {
            return Err(format!(
                "{engine}: status --json does not name the engine:\n{}",
                status.stdout
            ));
        }
        // What the guest writes to its serial port reaches `hvbox console`.
        let console = lab.root(&format!(
            "cd {dir} && (timeout 20 {hvbox} console > /tmp/console-{engine}.out 2>&1 &) ; sleep 3; {hvbox} ssh -- 'echo lab-console-check | sudo tee /dev/ttyS0 >/dev/null'; sleep 5; cat /tmp/console-{engine}.out"
        ));
        if !console.stdout.contains("lab-console-check") {
            return Err(format!(
                "{engine}: `hvbox console` did not show the guest's output:\n{}",
                console.stdout
            ));
        }
        // The running VMM is confined: every thread under its seccomp list with
        // NO_NEW_PRIVS (not KVM's own kernel workers, kvm-*), and its log says so.
        // A thread that ends while listed (console-input, when `hvbox console`
        // above has just let go) is passed over.
        if engine == "builtin" {
            let machine = format!("{dir}/.hvbox/machines/default");
            let threads = lab.root(&format!(
                "pid=$(grep -o '\"vm_pid\": *[0-9]*' {machine}/run.json | grep -o '[0-9]*$')
for t in /proc/$pid/task/*; do c=$(cat $t/comm 2>/dev/null); case $c in kvm-*) continue;; esac
st=$(grep -E '^(Seccomp|NoNewPrivs):' $t/status 2>/dev/null | tr -s '\t\n' '  '); [ -n \"$st\" ] || continue
echo \"thread $c $st\"; done
cat {machine}/vm.log"
            ));
            let out = &threads.stdout;
            let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("thread ")).collect();
            let confined = |l: &&str| l.ends_with("NoNewPrivs: 1 Seccomp: 2 ");
            if lines.len() < 3
                || !lines.iter().all(confined)
                || !out.contains(
                    "hvbox: seccomp: each VMM thread runs under the allow-list of its kind",
                )
                || !out.contains("hvbox: landlock: file system limited to the machine's own paths")
            {
                return Err(format!("builtin: the VMM in L1 is not confined:\n{out}"));
            }
            report.push(format!(
                "the builtin engine's VMM in L1: {} threads, each Seccomp: 2 and NoNewPrivs: 1; landlock on",
                lines.len()
            ));
        }
        // Suspend and resume through hvbox itself: a process started over ssh is the
        // same process after `suspend` + `up`, still writing its file.
        if engine == "builtin" && !lab.up_only {
            report.push(suspend_through_hvbox(lab, &hv)?);
        }
        // A kernel upgrade boots the new kernel from the disk (the builtin engine
        // extracts its vmlinux anew).
        if engine == "builtin" && !lab.up_only {
            match &lab.l2_upgrade {
                Ok(upgrade) => {
                    let (old, new) = (&upgrade.old_version, &upgrade.new_version);
                    if uname.stdout.trim() != old {
                        return Err(format!(
                            "builtin: the box runs {} instead of {old}",
                            uname.stdout.trim()
                        ));
                    }
                    let started = std::time::Instant::now();
                    let upgraded = lab.root(&format!(
                        "{hv} upgrade-kernel --package {L2_UPGRADE_PACKAGE} --timeout 900"
                    ));
                    let after = lab.root(&format!("{hv} ssh -- uname -r"));
                    if !upgraded
                        .stdout
                        .contains(&format!("kernel upgraded: {old} -> {new}"))
                        || after.stdout.trim() != new
                    {
                        // Whether the installed kernel's files are what the package
                        // holds tells a disk fault from a boot fault.
                        let verify = lab.root(&format!(
                            "{hv} ssh -- 'sudo dpkg --verify linux-image-{new} && echo package files intact'"
                        ));
                        return Err(format!(
                            "builtin: upgrade-kernel in L1 did not boot {new}:\n{}{}\nuname -r now: {}\ndpkg --verify linux-image-{new}:\n{}{}",
                            upgraded.stdout, upgraded.stderr, after.stdout, verify.stdout, verify.stderr
                        ));
                    }
                    report.push(format!(
                        "upgrade-kernel on the builtin engine in L1: {old} -> {new} in {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                }
                Err(reason) => report.push(format!("upgrade-kernel in L1 not run: {reason}")),
            }
        }
        // ACPI power button: the guest shuts down and the VM process exits cleanly.
        let halt = lab.root(&format!(
            "{hv} halt --timeout 240 && cat {dir}/.hvbox/machines/default/exit.json"
        ));
        if halt.status != Some(0) || !halt.stdout.contains("\"vm_exit_code\": 0") {
            return Err(format!(
                "{engine}: `hvbox halt` was not a clean power-off:\n{}{}",
                halt.stdout, halt.stderr
            ));
        }
        // The supervisor and VMM name the machine folder, passt its runtime folder.
        // `[/]` keeps pgrep from matching the shell that runs it.
        let destroy = lab.root(&format!(
            "{hv} destroy --force && ! pgrep -af '[/]root/l2-{engine}/|[h]vbox/i-'"
        ));
        if destroy.status != Some(0) {
            return Err(format!(
                "{engine}: destroy left processes or failed:\n{}{}",
                destroy.stdout, destroy.stderr
            ));
        }
        report.push(format!(
            "hvbox up to ssh in L1, engine {engine}{}: {}",
            if engine == "qemu" { " (KVM)" } else { "" },
            up_ms.map_or("?".into(), |ms| format!("{:.1} s", ms / 1000.0))
        ));
    }
    Ok(())
}

/// Where a machine's boot to ssh went, read at once after `up`: L1's KVM counts for
/// the VM (debugfs: every exit, including those KVM handles itself), the builtin
/// VMM's own exit counts by reason (its control socket's `stats`), and the guest's
/// view (systemd-analyze, its slowest units, its clock source).
fn boot_profile(lab: &Lab, engine: &str, dir: &str, hv: &str, up_start_ns: &str) -> Vec<String> {
    let machine = format!("{dir}/.hvbox/machines/default");
    let kvm = lab.root(&format!(
        "echo \"files written, s after up began:$(find {machine} -maxdepth 2 -type f -newermt @$(({up_start_ns} / 1000000000)) -printf ' %f=%T@' | awk -v s={up_start_ns} '{{for (i = 1; i <= NF; i++) {{split($i, kv, \"=\"); printf \" %s %.1f\", kv[1], kv[2] - s / 1e9}}}}')\"
pid=$(grep -o '\"vm_pid\": *[0-9]*' {machine}/run.json | grep -o '[0-9]*$')
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
d=$(ls -d /sys/kernel/debug/kvm/$pid-* 2>/dev/null | head -1)
line=''
for f in exits io_exits mmio_exits irq_exits halt_exits halt_wakeup halt_successful_poll halt_attempted_poll irq_window_exits request_irq_exits signal_exits insn_emulation irq_injections hypercalls pf_taken tlb_flush fpu_reload host_state_reload; do
  [ -f $d/$f ] && line=\"$line $f=$(cat $d/$f)\"
done
echo \"kvm:$line\"
sock=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(\"control_socket\", \"\"))' {machine}/run.json)
[ -S \"$sock\" ] && python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b\"stats\\n\")
print(\"vmm:\", s.makefile().readline().strip())' \"$sock\""
    ));
    let guest = lab.root(&format!(
        "{hv} ssh -- 'systemd-analyze | head -1; systemd-analyze blame | head -8; sudo dmesg | grep -iE \"clocksource|tsc|x2apic|kvm-clock|pci_bus 0000:00: root|ECAM|MMCONFIG\" | head -14; cat /proc/cmdline'"
    ));
    let mut lines = vec![format!("{engine}: boot profile in L2 after up:")];
    for line in kvm.stdout.lines().chain(guest.stdout.lines()) {
        lines.push(format!("  {engine}| {}", line.trim_end()));
    }
    if !kvm.stderr.trim().is_empty() || !guest.stderr.trim().is_empty() {
        lines.push(format!(
            "  {engine}| (stderr: {} {})",
            kvm.stderr.trim(),
            guest.stderr.trim()
        ));
    }
    lines
}
