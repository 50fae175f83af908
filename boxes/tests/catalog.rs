mod common;

use std::path::Path;

use common::{digest_of, payload, Route, TestServer};
use hvbox_boxes::catalog::{self, digest_from_sums};
use hvbox_boxes::{Algorithm, Digest, Error, Progress, Store};

fn write_box(boxes_dir: &Path, name: &str, files: &[(&str, &[u8])], list: &[&str]) {
    let dir = boxes_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut sums = String::new();
    for (file, data) in files {
        std::fs::write(dir.join(file), data).unwrap();
        if list.contains(file) {
            let d = Digest::of_file(Algorithm::Sha512, &dir.join(file)).unwrap();
            sums.push_str(&format!("{}  {file}\n", d.hex));
        }
    }
    std::fs::write(dir.join("SHA512SUMS"), sums).unwrap();
}

#[test]
fn local_box_resolves_with_its_digest_and_fetches() {
    let data = tempfile::tempdir().unwrap();
    let boxes = data.path().join("boxes");
    let disk = payload(300_000, 7);
    write_box(&boxes, "mybox", &[("disk.raw", &disk)], &["disk.raw"]);

    let resolved = catalog::resolve_in(&boxes, "mybox").unwrap();
    assert_eq!(resolved.name, "mybox");
    let disk_path = boxes.join("mybox/disk.raw");
    assert_eq!(resolved.disk.url, format!("file://{}", disk_path.display()));
    assert_eq!(resolved.disk.digest, digest_of(Algorithm::Sha512, &disk));
    assert!(resolved.kernel.is_none() && resolved.initrd.is_none());

    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path().to_path_buf());
    let blob = store
        .fetch(&resolved.disk, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(blob).unwrap(), disk);
}

#[test]
fn local_box_kernel_and_initrd_are_optional_extras() {
    let data = tempfile::tempdir().unwrap();
    let boxes = data.path().join("boxes");
    write_box(
        &boxes,
        "kbox",
        &[
            ("disk.raw", b"disk"),
            ("vmlinuz", b"kernel"),
            ("initrd.img", b"initrd"),
        ],
        &["disk.raw", "vmlinuz", "initrd.img"],
    );
    let resolved = catalog::resolve_in(&boxes, "kbox").unwrap();
    let kernel = resolved.kernel.expect("kernel");
    assert_eq!(kernel.digest, digest_of(Algorithm::Sha512, b"kernel"));
    assert!(kernel.url.ends_with("/kbox/vmlinuz"));
    let initrd = resolved.initrd.expect("initrd");
    assert_eq!(initrd.digest, digest_of(Algorithm::Sha512, b"initrd"));
}

#[test]
fn incomplete_local_box_is_an_error_not_a_fallback() {
    let data = tempfile::tempdir().unwrap();
    let boxes = data.path().join("boxes");
    // disk.raw present but not listed in SHA512SUMS.
    write_box(&boxes, "debian-12", &[("disk.raw", b"disk")], &[]);
    let err = catalog::resolve_in(&boxes, "debian-12").unwrap_err();
    assert!(matches!(err, Error::LocalBox { .. }), "{err:?}");
    assert!(err.to_string().contains("disk.raw"), "{err}");

    // No SHA512SUMS at all.
    std::fs::create_dir_all(boxes.join("nosums")).unwrap();
    let err = catalog::resolve_in(&boxes, "nosums").unwrap_err();
    assert!(err.to_string().contains("SHA512SUMS"), "{err}");
}

#[test]
fn unknown_box_lists_builtin_and_local_names() {
    let data = tempfile::tempdir().unwrap();
    let boxes = data.path().join("boxes");
    write_box(&boxes, "alpha", &[("disk.raw", b"a")], &["disk.raw"]);
    let err = catalog::resolve_in(&boxes, "no-such-box").unwrap_err();
    assert!(matches!(err, Error::UnknownBox { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in ["no-such-box", "debian-12", "debian-13", "alpha"] {
        assert!(msg.contains(needle), "{needle} missing in: {msg}");
    }
}

#[test]
fn box_names_cannot_escape_the_boxes_dir() {
    let data = tempfile::tempdir().unwrap();
    let err = catalog::resolve_in(data.path(), "../etc").unwrap_err();
    assert!(matches!(err, Error::InvalidBoxName { .. }), "{err:?}");
}

#[test]
fn builtins_are_listed() {
    let names = catalog::builtin_names();
    assert!(names.contains(&"debian-12"));
    assert!(names.contains(&"debian-13"));
}

#[test]
fn digest_from_sums_handles_both_line_formats() {
    let a = "a".repeat(128);
    let b = "B".repeat(128);
    let text = format!(
        "# comment\n\n{a}  debian-12-genericcloud-amd64.raw\n{b} *debian-12-genericcloud-amd64.qcow2\r\n{}  short.raw\n",
        "c".repeat(64)
    );
    let d = digest_from_sums(&text, "debian-12-genericcloud-amd64.raw", Algorithm::Sha512).unwrap();
    assert_eq!(d.to_string(), format!("sha512:{a}"));
    let d = digest_from_sums(
        &text,
        "debian-12-genericcloud-amd64.qcow2",
        Algorithm::Sha512,
    )
    .unwrap();
    assert_eq!(d.hex, "b".repeat(128), "hex is normalised to lowercase");
    // Names must match exactly, and lengths must fit the algorithm.
    assert!(digest_from_sums(&text, "debian-12-genericcloud-amd64", Algorithm::Sha512).is_none());
    assert!(digest_from_sums(&text, "short.raw", Algorithm::Sha512).is_none());
    assert_eq!(
        digest_from_sums(&text, "short.raw", Algorithm::Sha256)
            .unwrap()
            .to_string(),
        format!("sha256:{}", "c".repeat(64))
    );
    assert!(digest_from_sums(&text, "absent", Algorithm::Sha512).is_none());
}

#[test]
fn sums_served_over_http_yield_the_disk_digest() {
    // The built-in path: fetch a sums file, pick the disk's entry.
    let server = TestServer::start();
    let disk = payload(10_000, 9);
    let digest = digest_of(Algorithm::Sha512, &disk);
    server.set(
        "/SHA512SUMS",
        Route::Body(format!("{}  disk.raw\n", digest.hex).into_bytes()),
    );
    let text = hvbox_boxes::fetch_text(&server.url("/SHA512SUMS"), Progress::Quiet).unwrap();
    assert_eq!(
        digest_from_sums(&text, "disk.raw", Algorithm::Sha512),
        Some(digest)
    );
}
