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
    let lab = match Lab::start() {
        Ok(lab) => lab,
        Err(reason) => {
            eprintln!("skipping the nested lab: {reason}");
            return;
        }
    };
    let limit = Duration::from_secs(120);
    let mut report = vec![format!(
        "L1 up (hvbox up to ssh, TCG): {:.1} s",
        lab.l1_up_secs
    )];

    for (kind, kernel) in [("bzImage", "bzImage"), ("PVH vmlinux", "vmlinux")] {
        let command = format!(
            "{LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/{kernel} --initrd {LAB_MOUNT}/initrd.img --cmdline '{CMDLINE}' --cpus 2 --memory 1G --serial-log /tmp/l2-{kernel}.log --timeout 150"
        );
        let (secs, log) =
            lab.time_until(&command, &format!("/tmp/l2-{kernel}.log"), RUN_INIT, limit);
        let secs = secs.unwrap_or_else(|| {
            panic!(
                "{kind}: no `{RUN_INIT}` within {limit:?}; log:\n{log}\nL1 serial log:\n{}",
                lab.l1_serial_tail()
            )
        });
        assert!(
            log.contains(TWO_CPUS),
            "{kind}: second vCPU not up; log:\n{log}"
        );
        assert!(
            log.contains(&format!("Command line: {CMDLINE}")),
            "{kind}: log:\n{log}"
        );
        report.push(format!("L2 {kind} to /init on hvbox's VMM: {secs:.2} s"));
    }

    // A guest-initiated power-off (our one-instruction init) is a clean exit, code 0.
    let poweroff = lab.root(&format!(
        "{LAB_MOUNT}/hvbox vmm run --kernel {LAB_MOUNT}/vmlinux --initrd {LAB_MOUNT}/poweroff.cpio --cmdline 'console=ttyS0 rdinit=/init' --cpus 2 --memory 512M --serial-log /tmp/l2-poweroff.log --timeout 120; echo exit=$?; cat /tmp/l2-poweroff.log"
    ));
    assert!(
        poweroff.stdout.contains("exit=0"),
        "guest poweroff did not exit 0:\n{}{}\nL1 serial log:\n{}",
        poweroff.stdout,
        poweroff.stderr,
        lab.l1_serial_tail()
    );
    assert!(
        poweroff.stdout.contains("reboot: Power down"),
        "{}",
        poweroff.stdout
    );

    // The same kernel under QEMU+KVM in the same L1.
    let qemu = format!(
        "qemu-system-x86_64 -accel kvm -cpu host -M q35 -m 1G -smp 2 -nodefaults -no-user-config -display none -serial file:/tmp/l2-qemu.log -kernel {LAB_MOUNT}/bzImage -initrd {LAB_MOUNT}/initrd.img -append '{CMDLINE}'"
    );
    let (secs, log) = lab.time_until(&qemu, "/tmp/l2-qemu.log", RUN_INIT, limit);
    match secs {
        Some(secs) => report.push(format!("L2 bzImage to /init on QEMU+KVM: {secs:.2} s")),
        None => report.push(format!("QEMU+KVM did not reach /init in L1; log:\n{log}")),
    }
    eprintln!("nested lab figures:\n  {}", report.join("\n  "));
}
