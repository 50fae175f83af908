//! scripts/bench-boot inside the nested lab's L1 on the builtin engine: hvbox's own
//! VMM boots the hvbox box and the stock-configured box on L1's KVM, first boot and
//! restart, one boot at a time. A benchmark, not a test: `scripts/bench-boot --lab`
//! builds the boxes on the host and runs it (`cargo bench -p hvbox-tests --bench
//! boot_lab`, with the release `hvbox` built first).
//!
//! BENCH_BOX_FAST and BENCH_BOX_STOCK name the boxes' folders on the host (disk.raw
//! and SHA512SUMS); BENCH_RUNS (default 1) is passed on. L1 is emulated (TCG, one
//! vCPU), so each boot takes minutes: the ratios are the figures to read.

use hvbox_tests::lab::{copy_box_disk, extra_disk_device, Lab, LAB_MOUNT};
use std::path::PathBuf;

const BENCH_SCRIPT: &str = include_str!("../../scripts/bench-boot");
const PROFILES: [&str; 2] = ["fast", "stock"];
/// Where the boxes and bench-boot's cache live in L1 (its disk, not a tmpfs).
const L1_BENCH_DIR: &str = "/var/tmp/bench";

fn fail(message: String) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

fn main() {
    let boxes: Vec<PathBuf> = PROFILES
        .iter()
        .map(|profile| {
            let name = format!("BENCH_BOX_{}", profile.to_uppercase());
            std::env::var_os(&name)
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    fail(format!(
                        "{name} is not set: run scripts/bench-boot --lab, which builds the boxes"
                    ))
                })
        })
        .collect();
    let mut disks = Vec::new();
    let mut copies = String::new();
    // bench-boot's BENCH_BOX_<PROFILE> in L1: the copies there.
    let mut box_env = String::new();
    for (i, (profile, dir)) in PROFILES.iter().zip(&boxes).enumerate() {
        let sums = std::fs::read_to_string(dir.join("SHA512SUMS"))
            .unwrap_or_else(|e| fail(format!("{}/SHA512SUMS: {e}", dir.display())));
        let digest = sums.split_whitespace().next().unwrap_or_default();
        let box_dir = format!("{L1_BENCH_DIR}/box-boot-{profile}");
        // `box add` puts it in bench-boot's cache beforehand, so the first `up`
        // times the boot, not the import (which L1's emulated CPU makes slow).
        copies.push_str(&format!(
            "{} && echo '{sums}' > {box_dir}/SHA512SUMS
HVBOX_CACHE_DIR={L1_BENCH_DIR}/cache-boot {LAB_MOUNT}/hvbox box add file://{box_dir}/disk.raw --digest sha512:{digest} --name hvbox-bench-{profile} --quiet
",
            copy_box_disk(&extra_disk_device(i), &box_dir),
            sums = sums.trim(),
        ));
        box_env.push_str(&format!("BENCH_BOX_{}={box_dir} ", profile.to_uppercase()));
        disks.push(dir.join("disk.raw"));
    }
    let lab = Lab::start_with_disks(&disks)
        .unwrap_or_else(|reason| fail(format!("the nested lab cannot run here: {reason}")));
    if let Err(reason) = &lab.l2_virtiofs {
        fail(format!("the lab disk has no virtiofsd: {reason}"));
    }
    let runs = std::env::var("BENCH_RUNS").unwrap_or_else(|_| "1".into());
    let run = lab.root(&format!(
        "set -e
{copies}cat > /root/bench-boot <<'HVBOX_BENCH_EOF'
{BENCH_SCRIPT}
HVBOX_BENCH_EOF
cd /root && BENCH_ENGINE=builtin BENCH_DIR={L1_BENCH_DIR} HVBOX_BIN={LAB_MOUNT}/hvbox HVBOX_VIRTIOFSD={LAB_MOUNT}/virtiofsd {box_env}python3 /root/bench-boot {runs} 2>&1"
    ));
    println!("{}", run.stdout);
    if run.status != Some(0) || !run.stdout.contains("median of") {
        fail(format!(
            "the benchmark in L1 failed ({:?}):\n{}\nL1 serial log:\n{}",
            run.status,
            run.stderr,
            lab.l1_serial_tail()
        ));
    }
}
