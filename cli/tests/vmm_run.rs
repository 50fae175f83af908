//! `hvbox vmm run` as people and scripts use it: serial output and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../vmm/tests/guests/support.rs"]
mod support;

use support::{build, kvm_usable, Link};

/// Build one of the VMM's tiny test guests (vmm/tests/guests) into `dir`.
fn guest(name: &str, dir: &Path) -> PathBuf {
    let src = support::guests_dir(env!("CARGO_MANIFEST_DIR"), "../vmm/tests/guests");
    build(&src, name, Link::PvhElf, dir)
}

fn vmm_run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .args(["vmm", "run"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn poweroff_exits_0_with_the_serial_output_on_stdout() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = guest("hello", dir.path());
    let out = vmm_run(&["--kernel", kernel.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from a tiny guest\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("VM exited: poweroff"));
}

#[test]
fn reboot_crash_and_timeout_have_their_own_exit_codes() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let kernel = guest(name, dir.path());
        let mut args = vec!["--kernel", kernel.to_str().unwrap()];
        args.extend_from_slice(extra);
        vmm_run(&args).status.code()
    };
    assert_eq!(run("reboot", &[]), Some(3));
    assert_eq!(run("triple_fault", &[]), Some(4));
    assert_eq!(run("idle", &["--timeout", "1"]), Some(5));
}

#[test]
fn bad_input_is_explained() {
    let out = vmm_run(&["--kernel", "/nonexistent/vmlinuz"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vmlinuz"), "{err}");
    let out = vmm_run(&["--kernel", "/bin/sh", "--memory", "lots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--memory"));
}
