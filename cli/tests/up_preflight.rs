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
