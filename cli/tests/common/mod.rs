//! A fake machine folder for cli tests that drive the real binary without a VM.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

pub const INSTANCE: &str = "i-0123456789abcdef";

/// A created, stopped machine: its folder and a state.json.
pub fn create_stopped_machine(machine: &Path) {
    std::fs::create_dir_all(machine).unwrap();
    let state = serde_json::json!({
        "instance_id": INSTANCE,
        "mac": "52:54:00:12:34:56",
        "hostname": "guest",
        "user": "tester",
        "box_name": "debian-12",
        "box_disk_digest": "sha256:00",
        "created_unix": 0,
    });
    std::fs::write(machine.join("state.json"), state.to_string()).unwrap();
}

/// Pretend the machine runs, with ssh on `ssh_port`: a run.json and a supervisor
/// lock held for as long as the returned file lives.
pub fn fake_running(machine: &Path, ssh_port: u16) -> File {
    let run = serde_json::json!({
        "supervisor_pid": std::process::id(),
        "vm_pid": std::process::id(),
        "passt_pid": std::process::id(),
        "engine": "qemu",
        "ssh_port": ssh_port,
        "control_socket": "/nonexistent/control.sock",
        "console_socket": "/nonexistent/console.sock",
        // Inside the test's folder: ssh makes its shared connection's socket there.
        "runtime_dir": machine.join("runtime"),
    });
    std::fs::write(machine.join("run.json"), run.to_string()).unwrap();
    hold(&machine.join("supervisor.lock"), "")
}

/// Take an flock on `path` as another hvbox command would, writing `record` in it.
pub fn hold(path: &Path, record: &str) -> File {
    let mut file = File::create(path).unwrap();
    file.write_all(record.as_bytes()).unwrap();
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(rc, 0, "could not lock {}", path.display());
    file
}

/// Let go of a lock [`hold`] took, and return once nothing holds it: a process that
/// another test thread was starting at that moment shares the lock until it has
/// exec'd (the descriptor is close-on-exec, not close-on-fork).
pub fn release(lock: File, path: &Path) {
    drop(lock);
    let file = File::open(path).unwrap();
    for _ in 0..500 {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} is still locked 5 s after release", path.display());
}

pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// `hvbox ARGS` run in `dir` with its cache, data and config folders (and the XDG
/// ones) under `home`, so that the user's own catalogs and boxes do not leak in,
/// nor the proxies of the shell the tests run in.
pub fn hvbox_isolated(dir: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    hvbox_isolated_with(dir, home, args, &[])
}

/// hvbox's folders (cache, data, config, their XDG forms, HOME), each in `home`.
pub fn isolated_env(home: &Path) -> Vec<(String, String)> {
    [
        ("HVBOX_CACHE_DIR", "cache"),
        ("HVBOX_DATA_DIR", "data"),
        ("HVBOX_CONFIG_DIR", "config"),
        ("XDG_CACHE_HOME", "xdg-cache"),
        ("XDG_DATA_HOME", "xdg-data"),
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("HOME", "home"),
    ]
    .iter()
    .map(|(var, sub)| (var.to_string(), home.join(sub).display().to_string()))
    .collect()
}

/// `hvbox ARGS` isolated in `home`, run in `dir`: its stdout, or a failed test
/// with its stderr.
pub fn hvbox_ok(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = hvbox_isolated(dir, home, args);
    assert!(
        out.status.success(),
        "hvbox {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// [`hvbox_isolated`] with these environment variables set.
pub fn hvbox_isolated_with(
    dir: &Path,
    home: &Path,
    args: &[&str],
    vars: &[(&str, &str)],
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hvbox"));
    for var in ["http_proxy", "https_proxy", "no_proxy", "all_proxy"] {
        command.env_remove(var).env_remove(var.to_ascii_uppercase());
    }
    command.envs(vars.iter().copied());
    command.envs(isolated_env(home));
    command
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run hvbox")
}

/// A box as `hvbox box build NAME` leaves it in the data folder of [`hvbox_isolated`]
/// (a disk and the checksum file listing it), so that specs naming it check out.
pub fn built_box(home: &Path, name: &str) {
    let dir = home.join("data/boxes").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("disk.raw"), b"").unwrap();
    std::fs::write(
        dir.join("SHA512SUMS"),
        format!("{}  disk.raw\n", "0".repeat(128)),
    )
    .unwrap();
}
