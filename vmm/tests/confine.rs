//! The confinement at work, each in a child process (this test binary run again with
//! [`ROLE`] set): a thread that makes a syscall outside its list ends the process with
//! a report, and landlock keeps the VMM out of files it was not given.

use hvbox_vmm::confine::landlock::{self, Allowed};
use hvbox_vmm::confine::{install_now, sigsys, ThreadKind};
use std::process::{Command, Output};

/// Set in the child: which role it plays.
const ROLE: &str = "HVBOX_CONFINE_TEST_ROLE";

/// Runs test `name` of this binary again with `role`.
fn child(name: &str, role: &str, envs: &[(&str, &str)]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

#[test]
fn a_vcpu_thread_that_makes_a_socket_ends_the_vmm_with_a_report() {
    if role().as_deref() == Some("vcpu-socket") {
        install_now(ThreadKind::Vcpu).unwrap();
        // SAFETY: a plain syscall; the filter answers it with SIGSYS.
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        unreachable!("the filter let socket(2) through");
    }
    let out = child(
        "a_vcpu_thread_that_makes_a_socket_ends_the_vmm_with_a_report",
        "vcpu-socket",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(sigsys::EXIT_STATUS), "{stderr}");
    assert_eq!(sigsys::EXIT_STATUS, 159);
    assert!(
        stderr.contains(
            "vmm: seccomp: thread vcpu made syscall 41 (socket), which its allow-list forbids; stopping the VMM"
        ),
        "{stderr}"
    );
}

#[test]
fn a_disk_worker_may_not_open_files_or_use_kvm() {
    match role().as_deref() {
        Some("blk-open") => {
            install_now(ThreadKind::VirtioBlk).unwrap();
            let _ = std::fs::File::open("/etc/hostname");
            unreachable!("the filter let openat(2) through");
        }
        Some("blk-ioctl") => {
            install_now(ThreadKind::VirtioBlk).unwrap();
            // KVM_RUN on stdin: refused for the call itself, whatever the fd.
            // SAFETY: a plain syscall; the filter answers it with SIGSYS.
            unsafe { libc::ioctl(0, 0xae80) };
            unreachable!("the filter let ioctl(2) through");
        }
        _ => {}
    }
    for (role, report) in [
        ("blk-open", "thread virtio-blk made syscall 257 (openat)"),
        ("blk-ioctl", "thread virtio-blk made syscall 16 (ioctl)"),
    ] {
        let out = child("a_disk_worker_may_not_open_files_or_use_kvm", role, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(159), "{role}: {stderr}");
        assert!(stderr.contains(report), "{role}: {stderr}");
    }
}

#[test]
fn the_main_thread_may_interrupt_a_vcpu_but_not_run_one() {
    if role().as_deref() == Some("main-ioctl") {
        install_now(ThreadKind::Main).unwrap();
        // Allowed calls go through: the thread lives on to the forbidden one.
        // SAFETY: plain syscalls.
        unsafe {
            assert!(libc::getpid() > 0);
            libc::ioctl(-1, 0xae80);
        }
        unreachable!("the filter let KVM_RUN through");
    }
    let out = child(
        "the_main_thread_may_interrupt_a_vcpu_but_not_run_one",
        "main-ioctl",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(159), "{stderr}");
    assert!(
        stderr.contains("thread main made syscall 16 (ioctl)"),
        "{stderr}"
    );
}

#[test]
fn landlock_keeps_the_vmm_to_the_paths_it_was_given() {
    if role().as_deref() == Some("landlock") {
        let folder = std::env::var("HVBOX_CONFINE_FOLDER").unwrap();
        let disk = std::env::var("HVBOX_CONFINE_DISK").unwrap();
        let outcome = landlock::restrict(&Allowed {
            folders: vec![folder.clone().into()],
            read_write: vec![],
            read: vec![disk.clone().into()],
        })
        .unwrap();
        println!("outcome: {outcome}");
        let hostname = std::fs::read("/etc/hostname").map_err(|e| e.kind());
        println!("hostname: {hostname:?}");
        let sock = std::os::unix::net::UnixListener::bind(format!("{folder}/control.sock"));
        println!("socket in folder: {}", sock.is_ok());
        println!("disk read: {}", std::fs::read(&disk).is_ok());
        let written = std::fs::OpenOptions::new().write(true).open(&disk);
        println!(
            "read-only disk written: {:?}",
            written.map_err(|e| e.kind())
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("machine");
    std::fs::create_dir(&folder).unwrap();
    let disk = dir.path().join("seed.img");
    std::fs::write(&disk, b"seed").unwrap();
    let out = child(
        "landlock_keeps_the_vmm_to_the_paths_it_was_given",
        "landlock",
        &[
            ("HVBOX_CONFINE_FOLDER", folder.to_str().unwrap()),
            ("HVBOX_CONFINE_DISK", disk.to_str().unwrap()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The hosts hvbox runs on have landlock (Linux 5.13 and later, in the LSM list);
    // the log line for one without is unit-tested.
    assert!(
        stdout.contains("outcome: landlock: file system limited to the machine's own paths"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hostname: Err(PermissionDenied)"),
        "{stdout}"
    );
    assert!(stdout.contains("socket in folder: true"), "{stdout}");
    assert!(stdout.contains("disk read: true"), "{stdout}");
    assert!(
        stdout.contains("read-only disk written: Err(PermissionDenied)"),
        "{stdout}"
    );
}

/// The serial log rotates on the vCPU thread that writes the guest's output, which
/// may not open or rename files: rotating in place stays within its list.
#[test]
fn a_vcpu_thread_rotates_the_serial_log_within_its_list() {
    if let Some(path) = role()
        .as_deref()
        .and_then(|r| r.strip_prefix("vcpu-serial:"))
    {
        use hvbox_vmm::log_rotation::RotatingLog;
        use std::io::Write;
        let mut log = RotatingLog::open_in_place(std::path::Path::new(path), 1000).unwrap();
        install_now(ThreadKind::Vcpu).unwrap();
        for i in 0..300 {
            writeln!(log, "guest line {i:04}").unwrap();
        }
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serial.log");
    let role = format!("vcpu-serial:{}", path.display());
    let out = child(
        "a_vcpu_thread_rotates_the_serial_log_within_its_list",
        &role,
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let old = std::fs::read_to_string(dir.path().join("serial.log.1")).unwrap();
    let current = std::fs::read_to_string(&path).unwrap();
    assert_eq!(old.len(), 1000);
    assert!(current.ends_with("guest line 0299\n"), "{current}");
}
