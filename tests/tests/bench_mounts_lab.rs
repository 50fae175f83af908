//! scripts/bench-mounts inside the nested lab's L1 on the builtin engine: hvbox's
//! own VMM runs the Debian test box on L1's KVM, its virtio-fs device served by
//! virtiofsd in L1, next to sshfs and the guest's disk. A benchmark, not a check:
//! ignored by the test run, started by `scripts/bench-mounts --lab`.
//!
//! L1 is emulated (TCG, one vCPU), so the data is smaller than on the host
//! (BENCH_FILES, BENCH_BIG_MIB and BENCH_RUNS pass through to override it); the
//! ratios between the three ways are the figures to read.

use hvbox_tests::lab::{Lab, L2_BOX_DEVICE, LAB_MOUNT};

const BENCH_SCRIPT: &str = include_str!("../../scripts/bench-mounts");

#[test]
#[ignore = "a benchmark of most of an hour: scripts/bench-mounts --lab runs it"]
fn shared_folder_benchmark_on_the_builtin_engine_in_the_nested_lab() {
    let lab = match Lab::start() {
        Ok(lab) => lab,
        Err(reason) => return hvbox_test_support::skip(format!("the nested lab: {reason}")),
    };
    if let Err(reason) = &lab.l2_virtiofs {
        panic!("the lab disk has no virtiofsd: {reason}");
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
    let run = lab.root(&format!(
        "set -e; mkdir -p /var/tmp/l2box && cp --sparse=always {L2_BOX_DEVICE} /var/tmp/l2box/disk.raw
cat > /root/bench-mounts <<'HVBOX_BENCH_EOF'
{BENCH_SCRIPT}
HVBOX_BENCH_EOF
cd /root && {settings} BENCH_ENGINE=builtin HVBOX={LAB_MOUNT}/hvbox HVBOX_VIRTIOFSD={LAB_MOUNT}/virtiofsd BENCH_BOX='/var/tmp/l2box/disk.raw {digest}' python3 /root/bench-mounts 2>&1"
    ));
    println!("{}", run.stdout);
    assert!(
        run.status == Some(0) && run.stdout.contains("median of"),
        "the benchmark in L1 failed ({:?}):\n{}{}\nL1 serial log:\n{}",
        run.status,
        run.stdout,
        run.stderr,
        lab.l1_serial_tail()
    );
}
