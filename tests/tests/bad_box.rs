//! A box whose bytes do not match the pinned digest must not boot and must not
//! reach the cache.

use hvbox_tests::{HttpServer, TestProject};

#[test]
fn wrong_digest_fails_clearly_and_caches_nothing() {
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("disk.raw"), vec![7u8; 300_000]).unwrap();
    let server = HttpServer::serve(served.path().to_path_buf());
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let spec = format!(
        "box:\n  disk:\n    url: {}\n    digest: \"{wrong}\"\nengine: qemu\n",
        server.url("disk.raw")
    );
    let project = TestProject::new(&spec);
    let out = project.hvbox(&["up"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "up must fail: {stderr}");
    assert!(stderr.contains(&wrong), "expected digest missing: {stderr}");
    let actual = sha256_hex(&vec![7u8; 300_000]);
    assert!(stderr.contains(&actual), "actual digest missing: {stderr}");
    assert!(stderr.contains(&server.url("disk.raw")), "{stderr}");
    assert_eq!(project.cached_blobs(), Vec::<std::path::PathBuf>::new());
    assert!(!project.path().join(".hvbox").exists());
}

#[test]
fn unreachable_box_fails_without_state() {
    let spec = format!(
        "box:\n  disk:\n    url: http://127.0.0.1:9/none.raw\n    digest: \"sha256:{}\"\n",
        "00".repeat(32)
    );
    let project = TestProject::new(&spec);
    let out = project.hvbox(&["up"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:9/none.raw"), "{stderr}");
    assert!(!project.path().join(".hvbox").exists());
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
