//! `hvbox vmm run` as people and scripts use it: serial output and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn kvm_usable() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm is not usable here ({e})");
            false
        }
    }
}

/// Build one of the VMM's tiny test guests (vmm/tests/guests) into `dir`.
fn guest(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vmm/tests/guests");
    let obj = dir.join(format!("{name}.o"));
    let elf = dir.join(format!("{name}.elf"));
    let ok = Command::new("as")
        .arg("--64")
        .arg("-I")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .arg(src.join(format!("{name}.S")))
        .status()
        .unwrap()
        .success()
        && Command::new("ld")
            .args([
                "-m",
                "elf_x86_64",
                "-static",
                "-nostdlib",
                "--build-id=none",
            ])
            .args(["-z", "noexecstack", "--no-warn-rwx-segments", "-T"])
            .arg(src.join("guest.ld"))
            .arg("-o")
            .arg(&elf)
            .arg(&obj)
            .status()
            .unwrap()
            .success();
    assert!(ok, "building guest {name}");
    elf
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
