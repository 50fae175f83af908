//! scripts/bench-mounts inside the nested lab's L1 on the builtin engine: hvbox's
//! own VMM runs the Debian test box on L1's KVM, its virtio-fs device served by
//! virtiofsd in L1, next to sshfs and the guest's disk. A benchmark, not a test:
//! `scripts/bench-mounts --lab` runs it (`cargo bench -p hvbox-tests --bench
//! mounts_lab`, with the release `hvbox` built first).
//!
//! L1 is emulated (TCG, one vCPU), so the data is smaller than on the host
//! (BENCH_FILES, BENCH_BIG_MIB and BENCH_RUNS pass through to override it); the
//! ratios between the three ways are the figures to read.

use hvbox_tests::lab::{copy_box_disk, Lab, L2_BOX_DEVICE, LAB_MOUNT};

const BENCH_SCRIPT: &str = include_str!("../../scripts/bench-mounts");

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let lab = Lab::start().unwrap_or_else(|reason| {
        eprintln!("the nested lab cannot run here: {reason}");
        std::process::exit(1)
    });
    if let Err(reason) = &lab.l2_virtiofs {
        eprintln!("the lab disk has no virtiofsd: {reason}");
        std::process::exit(1);
    }
    let setting = |name: &str, default: &str| {
        let value = std::env::var(name).unwrap_or_else(|_| default.into());
        format!("{name}={value}")
    };
    let settings = [
        setting("BENCH_RUNS", "1"),
        setting("BENCH_FILES", "5000"),
        setting("BENCH_BIG_MIB", "64"),
    ]
    .join(" ");
    let digest = &lab.l2_box_digest;
    // The box's disk is copied off the read-only device so that `box add` sees a file.
    let copy = copy_box_disk(L2_BOX_DEVICE, "/var/tmp/l2box");
    let run = lab.root(&format!(
        "set -e; {copy}
cat > /root/bench-mounts <<'HVBOX_BENCH_EOF'
{BENCH_SCRIPT}
HVBOX_BENCH_EOF
cd /root && {settings} BENCH_ENGINE=builtin HVBOX={LAB_MOUNT}/hvbox HVBOX_VIRTIOFSD={LAB_MOUNT}/virtiofsd BENCH_BOX='/var/tmp/l2box/disk.raw {digest}' python3 /root/bench-mounts 2>&1"
    ));
    println!("{}", run.stdout);
    if run.status != Some(0) || !run.stdout.contains("median of") {
        eprintln!(
            "the benchmark in L1 failed ({:?}):\n{}\nL1 serial log:\n{}",
            run.status,
            run.stderr,
            lab.l1_serial_tail()
        );
        std::process::exit(1);
    }
}
