mod common;

use std::path::Path;

use common::{digest_of, payload, quick_store, Route, TestServer};
use hvbox_boxes::catalog::{self, digest_from_sums, BoxRequest, Catalog};
use hvbox_boxes::{Algorithm, Digest, Error, Progress};

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
    let store = quick_store(cache.path());
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

/// A loopback copy of Debian's layout for bookworm: a listing of build folders, and
/// in each a SHA512SUMS.
fn debian_mirror(server: &TestServer, builds: &[(&str, Option<&[u8]>)]) {
    let mut listing = String::from("<html><body><a href=\"../\">../</a>\n");
    for (version, image) in builds {
        listing.push_str(&format!("<a href=\"{version}/\">{version}/</a>\n"));
        let file = format!("debian-12-genericcloud-amd64-{version}.tar.xz");
        let sums = match image {
            Some(bytes) => format!(
                "{}  debian-12-genericcloud-amd64-{version}.json\n{}  {file}\n",
                "0".repeat(128),
                digest_of(Algorithm::Sha512, bytes).hex
            ),
            None => format!("{}  other-file.raw\n", "1".repeat(128)),
        };
        server.set(
            &format!("/debian/bookworm/{version}/SHA512SUMS"),
            Route::Body(sums.into_bytes()),
        );
    }
    listing
        .push_str("<a href=\"daily/\">daily/</a> <a href=\"latest/\">latest/</a></body></html>\n");
    server.set("/debian/bookworm/", Route::Body(listing.into_bytes()));
}

fn mirrored_catalog(server: &TestServer) -> Catalog {
    let empty = tempfile::tempdir().unwrap();
    Catalog::new()
        .with_local_dir(&empty.path().join("none"))
        .with_options(common::quick_options())
        .with_mirror(
            "https://cloud.debian.org/images/cloud/",
            &server.url("/debian/"),
        )
        .with_mirror(
            "https://cloud-images.ubuntu.com/releases/",
            &server.url("/ubuntu/"),
        )
}

#[test]
fn builtin_boxes_resolve_to_the_newest_build_folder() {
    let server = TestServer::start();
    let newest = b"bookworm newest".to_vec();
    let older = b"bookworm older".to_vec();
    // The newest folder does not list the image yet (still uploading): the next one answers.
    debian_mirror(
        &server,
        &[
            ("20240102-1614", Some(&older)),
            ("20240211-1654", Some(&newest)),
            ("20240301-1700", None),
        ],
    );
    let catalog = mirrored_catalog(&server);
    let b = catalog.resolve(&BoxRequest::named("debian-12")).unwrap();
    assert_eq!(b.version.as_deref(), Some("20240211-1654"));
    assert_eq!(
        b.disk.url,
        server.url(
            "/debian/bookworm/20240211-1654/debian-12-genericcloud-amd64-20240211-1654.tar.xz"
        )
    );
    assert_eq!(b.disk.digest, digest_of(Algorithm::Sha512, &newest));
    assert_eq!(b.disk.format, Some("tar.xz".parse().unwrap()));

    // A pinned version reads that folder's sums; with a digest too, nothing at all.
    let mut req = BoxRequest::named("debian-12");
    req.version = Some("20240102-1614".into());
    let b = catalog.resolve(&req).unwrap();
    assert_eq!(b.disk.digest, digest_of(Algorithm::Sha512, &older));
    let hits = server.total_hits();
    req.digest = Some(digest_of(Algorithm::Sha512, &older));
    catalog.resolve(&req).unwrap();
    assert_eq!(server.total_hits(), hits);

    // A pinned digest that the distribution does not list is an error naming both.
    let mut req = BoxRequest::named("debian-12");
    req.digest = Some(digest_of(Algorithm::Sha512, b"something else"));
    let err = catalog.resolve(&req).unwrap_err();
    assert!(matches!(err, Error::PinnedDigestDiffers { .. }), "{err:?}");

    // A version that does not exist.
    let mut req = BoxRequest::named("debian-12");
    req.version = Some("20990101-1".into());
    let err = catalog.resolve(&req).unwrap_err();
    assert!(matches!(err, Error::UnknownVersion { .. }), "{err:?}");
    req.version = Some("latest".into());
    assert!(matches!(
        catalog.resolve(&req).unwrap_err(),
        Error::UnknownVersion { .. }
    ));
}

#[test]
fn checksum_file_without_the_artifact_is_a_clear_error() {
    let server = TestServer::start();
    debian_mirror(&server, &[("20240211-1654", None)]);
    let err = mirrored_catalog(&server)
        .resolve(&BoxRequest::named("debian-12"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DigestNotInSums { .. }), "{err:?}");
    assert!(
        msg.contains("/debian/bookworm/20240211-1654/SHA512SUMS"),
        "{msg}"
    );
    assert!(
        msg.contains("debian-12-genericcloud-amd64-20240211-1654.tar.xz"),
        "{msg}"
    );
}

#[test]
fn ubuntu_boxes_use_sha256sums_and_qcow2() {
    let server = TestServer::start();
    let image = b"noble image".to_vec();
    server.set(
        "/ubuntu/noble/",
        Route::Body(b"<a href=\"release/\">release/</a><a href=\"release-20240423/\">x</a><a href=\"release-20240821.1/\">y</a>".to_vec()),
    );
    server.set(
        "/ubuntu/noble/release-20240821.1/SHA256SUMS",
        Route::Body(
            format!(
                "{} *ubuntu-24.04-server-cloudimg-amd64.img\n",
                digest_of(Algorithm::Sha256, &image).hex
            )
            .into_bytes(),
        ),
    );
    let b = mirrored_catalog(&server)
        .resolve(&BoxRequest::named("ubuntu-24.04"))
        .unwrap();
    assert_eq!(b.version.as_deref(), Some("20240821.1"));
    assert_eq!(
        b.disk.url,
        server.url("/ubuntu/noble/release-20240821.1/ubuntu-24.04-server-cloudimg-amd64.img")
    );
    assert_eq!(b.disk.digest, digest_of(Algorithm::Sha256, &image));
    assert_eq!(b.disk.format, Some("qcow2".parse().unwrap()));
}

#[test]
fn checksum_files_of_pinned_versions_are_cached() {
    let server = TestServer::start();
    let image = b"img".to_vec();
    debian_mirror(&server, &[("20240211-1654", Some(&image))]);
    let texts = tempfile::tempdir().unwrap();
    let catalog = mirrored_catalog(&server).with_text_cache(texts.path());
    let mut req = BoxRequest::named("debian-12");
    req.version = Some("20240211-1654".into());
    let first = catalog.resolve(&req).unwrap();
    let hits = server.total_hits();
    assert_eq!(catalog.resolve(&req).unwrap(), first);
    assert_eq!(
        server.total_hits(),
        hits,
        "the second resolve used the cached SHA512SUMS"
    );
}

#[test]
fn catalog_files_come_first_and_pick_the_newest_version() {
    let server = TestServer::start();
    let v2 = payload(1000, 1);
    server.set(
        "/SHA256SUMS",
        Route::Body(
            format!("{}  team-2.0.raw\n", digest_of(Algorithm::Sha256, &v2).hex).into_bytes(),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("hvbox-catalog.yaml");
    std::fs::write(
        &project,
        format!(
            "boxes:\n  - name: debian-12\n    url: {0}\n    digest: sha256:{1}\n  - name: team\n    version: \"1.9\"\n    url: {2}\n    checksums: {3}\n  - name: team\n    version: \"2.0\"\n    url: {4}\n    checksums: {3}\n",
            server.url("/own-debian.raw"),
            "ab".repeat(32),
            server.url("/team-1.9.raw"),
            server.url("/SHA256SUMS"),
            server.url("/team-2.0.raw"),
        ),
    )
    .unwrap();
    let catalog = Catalog::new()
        .with_options(common::quick_options())
        .with_file(&project)
        .unwrap();
    // The project's own debian-12 wins over the built-in (no network).
    let b = catalog.resolve(&BoxRequest::named("debian-12")).unwrap();
    assert_eq!(b.disk.url, server.url("/own-debian.raw"));
    // Newest version by number, digest from its checksums file.
    let b = catalog.resolve(&BoxRequest::named("team")).unwrap();
    assert_eq!(b.version.as_deref(), Some("2.0"));
    assert_eq!(b.disk.digest, digest_of(Algorithm::Sha256, &v2));
    // A version the file does not list: its versions are named.
    let mut req = BoxRequest::named("team");
    req.version = Some("3.0".into());
    let msg = catalog.resolve(&req).unwrap_err().to_string();
    assert!(
        msg.contains("no version \"3.0\"") && msg.contains("1.9, 2.0"),
        "{msg}"
    );
    // 1.9 is listed in the catalog but not in the checksum file.
    req.version = Some("1.9".into());
    let msg = catalog.resolve(&req).unwrap_err().to_string();
    assert!(
        msg.contains("has no valid") && msg.contains("team-1.9.raw"),
        "{msg}"
    );
}
