//! hvbox's own VMM booting Debian's cloud kernel on a real /dev/kvm, inside the
//! nested lab (see tests/src/lab.rs), timed next to QEMU+KVM in the same L1.
//!
//! One L1 for the whole file, so every check lives in this one test.

use hvbox_tests::lab::{Lab, LAB_MOUNT};
use std::time::Duration;

const RUN_INIT: &str = "Run /init as init process";
const TWO_CPUS: &str = "smp: Brought up 1 node, 2 CPUs";
const CMDLINE: &str = "console=ttyS0 panic=-1 hvbox.lab=1";

#[test]
fn builtin_vmm_boots_debian_in_the_nested_lab() {
    // An L1 kernel has crashed (once in several runs) inside KVM's SVM code under
    // QEMU's emulated SVM: a fault below the lab. A fresh L1 gets one more try; a
    // failed check with a healthy L1 fails at once.
    for attempt in 1..=2 {
        let lab = match Lab::start() {
            Ok(lab) => lab,
            Err(reason) => {
                eprintln!("skipping the nested lab: {reason}");
                return;
            }
        };
        match checks(&lab) {
            Ok(report) => {
                eprintln!("nested lab figures:\n  {}", report.join("\n  "));
                return;
            }
            Err(failure) => match lab.l1_crash() {
                Some(crash) if attempt == 1 => eprintln!(
                    "L1's own kernel crashed (emulated hardware below the lab); retrying with a fresh L1.\nThe check said: {failure}\nL1's console:\n{crash}"
                ),
                _ => panic!("{failure}\nL1 serial log:\n{}", lab.l1_serial_tail()),
            },
        }
    }
    panic!("L1 crashed twice");
}

/// Every lab check in order; the figures, or what failed.
fn checks(lab: &Lab) -> Result<Vec<String>, String> {
    let limit = Duration::from_secs(120);
    let mut report = vec![format!(
        "L1 up (hvbox up to ssh, TCG): {:.1} s",
        lab.l1_up_secs
    )];

    for (kind, kernel) in [("bzImage", "bzImage"), ("PVH vmlinux", "vmlinux")] {
        let command = format!(
            "{LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/{kernel} --initrd {LAB_MOUNT}/initrd.img --cmdline '{CMDLINE}' --cpus 2 --memory 1G --serial-log /tmp/l2-{kernel}.log --timeout 150"
        );
        let log_path = format!("/tmp/l2-{kernel}.log");
        let (mut secs, mut log) = lab.time_until(&command, &log_path, RUN_INIT, limit);
        if secs.is_none() {
            // Seen once in CI: an L2 bzImage boot stalled after "i8042: Probing ports
            // directly" (a timer that stops firing under nested SVM on TCG?) while
            // three runs before passed. Until that is understood, one more boot, with
            // the stalled log shown.
            eprintln!(
                "{kind}: no `{RUN_INIT}` within {limit:?}; booting once more. Stalled log:\n{log}"
            );
            (secs, log) = lab.time_until(&command, &log_path, RUN_INIT, limit);
        }
        let secs = secs.ok_or_else(|| {
            format!("{kind}: no `{RUN_INIT}` within {limit:?} twice; log:\n{log}")
        })?;
        if !log.contains(TWO_CPUS) {
            return Err(format!("{kind}: second vCPU not up; log:\n{log}"));
        }
        if !log.contains(&format!("Command line: {CMDLINE}")) {
            return Err(format!("{kind}: our command line is missing; log:\n{log}"));
        }
        report.push(format!("L2 {kind} to /init on hvbox's VMM: {secs:.2} s"));
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

    // Virtio over PCI with Linux's own drivers: the initramfs finds the root disk on
    // virtio-blk, mounts it and runs its /sbin/init, which powers off; the NIC is
    // backed by a real passt in L1.
    let virtio = lab.root(&format!(
        "passt --socket /tmp/l2-passt.sock >/tmp/l2-passt.log 2>&1; {LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/vmlinux --initrd {LAB_MOUNT}/initrd.img --disk {LAB_MOUNT}/root.img,ro --net passt:/tmp/l2-passt.sock --cmdline 'console=ttyS0 root=/dev/vda ro panic=-1' --cpus 2 --memory 1G --serial-log /tmp/l2-virtio.log --timeout 150; echo exit=$?; cat /tmp/l2-virtio.log"
    ));
    for expected in ["exit=0", "virtio_blk virtio0: [vda]", "reboot: Power down"] {
        if !virtio.stdout.contains(expected) {
            return Err(format!(
                "virtio boot: no `{expected}`:\n{}{}",
                virtio.stdout, virtio.stderr
            ));
        }
    }
    report.push(format!(
        "L2 root on virtio-blk, mounted and powered off cleanly; virtio-net driver bound: {}",
        virtio.stdout.contains("virtio_net")
    ));

    // The same kernel under QEMU+KVM in the same L1.
    let qemu = format!(
        "qemu-system-x86_64 -accel kvm -cpu host -M q35 -m 1G -smp 2 -nodefaults -no-user-config -display none -serial file:/tmp/l2-qemu.log -kernel {LAB_MOUNT}/bzImage -initrd {LAB_MOUNT}/initrd.img -append '{CMDLINE}'"
    );
    let (secs, log) = lab.time_until(&qemu, "/tmp/l2-qemu.log", RUN_INIT, limit);
    match secs {
        Some(secs) => report.push(format!("L2 bzImage to /init on QEMU+KVM: {secs:.2} s")),
        None => report.push(format!("QEMU+KVM did not reach /init in L1; log:\n{log}")),
    }
    Ok(report)
}
