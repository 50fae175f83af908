//! What `hvbox up` refuses before it fetches, creates or boots anything: no VM is
//! needed to see these errors.

use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

fn up(spec: &str) -> (tempfile::TempDir, std::process::Output, Duration) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hvbox.yaml"), spec).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .arg("up")
        .current_dir(dir.path())
        .env("HVBOX_CACHE_DIR", dir.path().join("cache"))
        .env("HVBOX_DATA_DIR", dir.path().join("data"))
        .output()
        .expect("run hvbox");
    (dir, out, started.elapsed())
}

#[test]
fn a_forwarded_host_port_in_use_is_reported_before_boot() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (dir, out, took) = up(&format!(
        "box: debian-12\nengine: qemu\nports:\n  - {{host: {port}, guest: 8000}}\n"
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "host port {port} (tcp on 127.0.0.1) is already in use by another program; change ports[0].host in hvbox.yaml or stop that program"
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!dir.path().join(".hvbox").exists(), ".hvbox/ was created");
    assert!(!dir.path().join("cache").exists(), "a box was fetched");
}

#[test]
fn a_udp_port_in_use_is_reported_too() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_dir, out, _) = up(&format!(
        "box: debian-12\nengine: qemu\nports:\n  - {{host: {port}, guest: 53, protocol: udp}}\n"
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "host port {port} (udp on 127.0.0.1) is already in use by another program; change ports[0].host"
        )),
        "{stderr}"
    );
}

/// A user who may not open /dev/kvm (here `nobody`, as /dev/kvm belongs to root and
/// group kvm) is told why and how to fix it, before anything is created.
#[test]
fn a_kvm_device_this_user_cannot_open_says_how_to_get_access() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return hvbox_test_support::skip("running the check as another user needs root");
    }
    if !std::path::Path::new("/dev/kvm").exists() {
        return hvbox_test_support::skip("this host has no /dev/kvm");
    }
    // The build may live where `nobody` cannot reach it: run a copy from a folder
    // of nobody's own, which also holds the project.
    let dir = tempfile::tempdir().unwrap();
    let hvbox = dir.path().join("hvbox");
    std::fs::copy(env!("CARGO_BIN_EXE_hvbox"), &hvbox).unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("hvbox.yaml"),
        "box: debian-12\nengine: builtin\n",
    )
    .unwrap();
    for path in [dir.path(), &project] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(&hvbox, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&hvbox)
        .arg("up")
        .current_dir(&project)
        .env("HOME", dir.path())
        .env("USER", "nobody")
        .env("HVBOX_CACHE_DIR", dir.path().join("cache"))
        .env("HVBOX_DATA_DIR", dir.path().join("data"))
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run hvbox as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/dev/kvm cannot be opened (Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run `sudo usermod -aG kvm nobody`, then log out and in again"),
        "{stderr}"
    );
    assert!(!project.join(".hvbox").exists(), ".hvbox/ was created");
}
