//! Crash consistency: kill a machine's engine with SIGKILL and check what a power
//! cut would leave: a synced file survives, the root file system is clean, and no
//! helper process (passt, virtiofsd) outlives the machine.

use crate::{processes_mentioning, TestProject};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What the machine's run file said while it ran.
pub struct RunFacts {
    pub vm_pid: u64,
    pub runtime_dir: PathBuf,
}

pub fn run_facts(machine_dir: &Path) -> RunFacts {
    let text = std::fs::read_to_string(machine_dir.join("run.json")).expect("run.json");
    let run: serde_json::Value = serde_json::from_str(&text).expect("run.json is JSON");
    RunFacts {
        vm_pid: run["vm_pid"].as_u64().expect("vm_pid"),
        runtime_dir: run["runtime_dir"].as_str().expect("runtime_dir").into(),
    }
}

/// SIGKILL to `pid`, then wait until `machine` of `project` is `stopped` (its
/// supervisor saw the engine die and cleaned up).
pub fn kill_engine(project: &TestProject, machine: &str, pid: u64) {
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -KILL {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = project.ok(&["status", machine, "--json"]);
        let list: serde_json::Value = serde_json::from_str(&status).expect("status --json");
        if list[0]["state"] == "stopped" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{machine} still not stopped 30 s after its engine was killed: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Processes whose command line names `dir` (the machine folder, or its runtime
/// folder where passt's and virtiofsd's sockets are).
pub fn processes_of(dir: &Path) -> Vec<String> {
    processes_mentioning(&dir.to_string_lossy())
}

/// `e2fsck -fn` of the root file system (GPT partition 1) of a raw disk, run on the
/// host while the machine is down. The journal is replayed first, on a copy of the
/// partition, as the kernel does when it mounts the file system: what a crash
/// leaves in the journal is not damage. Returns e2fsck's report; panics unless it is clean.
pub fn check_root_fs(disk: &Path) -> String {
    let table = Command::new("sfdisk")
        .args(["--json"])
        .arg(disk)
        .output()
        .expect("running sfdisk");
    assert!(table.status.success(), "sfdisk --json {}", disk.display());
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).expect("sfdisk JSON");
    let sector_size = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    let root = table["partitiontable"]["partitions"]
        .as_array()
        .and_then(|p| p.first())
        .expect("a root partition");
    let offset = root["start"].as_u64().expect("partition start") * sector_size;
    let len = root["size"].as_u64().expect("partition size") * sector_size;

    // A copy of the partition alone: e2fsck reopens its device after replaying the
    // journal, and forgets an `?offset=` when it does.
    let scratch = tempfile::tempdir().expect("scratch folder");
    let copy = scratch.path().join("root.ext4");
    let copied = Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", copy.display()))
        .args([
            "bs=1M",
            "iflag=skip_bytes,count_bytes",
            &format!("skip={offset}"),
            &format!("count={len}"),
            "conv=sparse",
            "status=none",
        ])
        .status()
        .expect("running dd");
    assert!(
        copied.success(),
        "copying the root partition of {}",
        disk.display()
    );
    let device = copy.display().to_string();
    let replay = Command::new("e2fsck")
        .args(["-E", "journal_only", "-p", &device])
        .output()
        .expect("running e2fsck");
    // 0: nothing to do, 1: the journal was replayed.
    assert!(
        matches!(replay.status.code(), Some(0) | Some(1)),
        "replaying the journal failed ({}): {}{}",
        replay.status,
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
    let check = Command::new("e2fsck")
        .args(["-f", "-n", &device])
        .output()
        .expect("running e2fsck");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        check.status.code(),
        Some(0),
        "e2fsck -fn of the root file system after the crash:\n{report}"
    );
    report
}
