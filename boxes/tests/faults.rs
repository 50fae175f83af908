//! Bad networks and bad servers, injected by the loopback test server: dropped
//! connections resumed with Range, 5xx then success, slow servers and stalls,
//! short and long bodies, HTML pages, and resuming a download another process left.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    digest_of, files_in, payload, quick_options, quick_store, Reply, Route, TestServer, HTML_PAGE,
};
use hvbox_boxes::{Algorithm, Artifact, Error, Progress, Store};

fn scripted(server: &TestServer, body: &[u8], replies: Vec<Reply>) -> Artifact {
    server.set(
        "/disk.raw",
        Route::Script {
            body: body.to_vec(),
            replies,
        },
    );
    Artifact::new(server.url("/disk.raw"), digest_of(Algorithm::Sha256, body))
}

fn assert_nothing_cached(root: &Path) {
    for sub in ["blobs/sha256", "meta/sha256"] {
        let files = files_in(&root.join(sub));
        assert!(files.is_empty(), "{sub} not empty: {files:?}");
    }
}

/// Names in `tmp/`, sorted.
fn tmp_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = files_in(&root.join("tmp"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_dropped_connection_is_resumed_with_range() {
    let server = TestServer::start();
    let body = payload(3_000_000, 1);
    let artifact = scripted(
        &server,
        &body,
        vec![Reply::DropAfter(1_000_000), Reply::Full],
    );
    let cache = tempfile::tempdir().unwrap();
    let path = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
    assert_eq!(
        server.ranges("/disk.raw"),
        [None, Some("bytes=1000000-".to_string())]
    );
    assert!(tmp_names(cache.path()).is_empty());
}

#[test]
fn a_server_error_is_retried() {
    let server = TestServer::start();
    let body = payload(200_000, 2);
    let artifact = scripted(
        &server,
        &body,
        vec![Reply::Status(500), Reply::Status(503), Reply::Full],
    );
    let cache = tempfile::tempdir().unwrap();
    let path = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
    assert_eq!(server.hits("/disk.raw"), 3);
}

#[test]
fn a_server_that_ignores_range_is_still_resumed_correctly() {
    let server = TestServer::start();
    let body = payload(1_500_000, 3);
    let artifact = scripted(
        &server,
        &body,
        vec![Reply::DropAfter(600_000), Reply::IgnoreRange],
    );
    let cache = tempfile::tempdir().unwrap();
    let path = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
}

#[test]
fn a_slow_server_is_waited_for_and_a_stalled_one_times_out() {
    let server = TestServer::start();
    let body = payload(256 * 1024, 4);
    let artifact = scripted(
        &server,
        &body,
        vec![Reply::Slow {
            chunk: 16 * 1024,
            delay: Duration::from_millis(40),
        }],
    );
    let cache = tempfile::tempdir().unwrap();
    // Slow but never silent for a read timeout: it gets there.
    let options = hvbox_boxes::FetchOptions {
        read_timeout: Duration::from_millis(500),
        ..quick_options()
    };
    let store = Store::open(cache.path().to_path_buf()).with_options(options.clone());
    let path = store.fetch(&artifact, "box disk", Progress::Quiet).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);

    let stalled = TestServer::start();
    let artifact = scripted(&stalled, &body, vec![Reply::Stall(Duration::from_secs(3))]);
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path().to_path_buf()).with_options(hvbox_boxes::FetchOptions {
        attempts: 2,
        ..options
    });
    let started = std::time::Instant::now();
    let err = store
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&artifact.url) && msg.contains("no data for"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stalled.hits("/disk.raw"), 2);
    assert_nothing_cached(cache.path());
    assert!(tmp_names(cache.path()).is_empty());
}

#[test]
fn a_truncated_body_fails_then_resumes_in_a_later_run() {
    let server = TestServer::start();
    let body = payload(2_000_000, 5);
    let artifact = scripted(&server, &body, vec![Reply::Truncate(700_000)]);
    let cache = tempfile::tempdir().unwrap();
    let err = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    assert!(msg.contains(&artifact.url), "{msg}");
    assert!(msg.contains("ended after 700000 of 2000000 bytes"), "{msg}");
    assert_nothing_cached(cache.path());
    // What arrived is kept (never as an entry) for the next run to resume.
    let hex = &artifact.digest.hex;
    assert_eq!(
        tmp_names(cache.path()),
        [format!("{hex}.download"), format!("{hex}.download.json")]
    );

    // A later run (another process: a new Store) asks only for the rest, and
    // verifies the whole.
    server.set(
        "/disk.raw",
        Route::Script {
            body: body.clone(),
            replies: vec![Reply::Full],
        },
    );
    let before = server.hits("/disk.raw");
    let path = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
    let ranges = server.ranges("/disk.raw");
    assert_eq!(ranges[before..], [Some("bytes=700000-".to_string())]);
    assert!(tmp_names(cache.path()).is_empty());
}

#[test]
fn a_stale_partial_download_is_detected_and_downloaded_again() {
    let server = TestServer::start();
    let body = payload(500_000, 6);
    let artifact = scripted(&server, &body, vec![Reply::Full]);
    let cache = tempfile::tempdir().unwrap();
    let tmp = cache.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let hex = &artifact.digest.hex;
    // A previous run's bytes that are not the start of this file.
    std::fs::write(tmp.join(format!("{hex}.download")), payload(100_000, 99)).unwrap();
    std::fs::write(
        tmp.join(format!("{hex}.download.json")),
        format!(
            r#"{{"url":"{}","validator":{{"etag":null,"last_modified":null}},"total":null}}"#,
            artifact.url
        ),
    )
    .unwrap();
    let path = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
    assert_eq!(
        server.ranges("/disk.raw"),
        [Some("bytes=100000-".to_string()), None]
    );
}

#[test]
fn more_bytes_than_content_length_fail_verification() {
    let server = TestServer::start();
    let body = payload(400_000, 7);
    // The server announces (and so the client reads) fewer bytes than the file.
    let artifact = scripted(&server, &body, vec![Reply::Overlong(300_000)]);
    let cache = tempfile::tempdir().unwrap();
    let err = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(msg.contains("300000 bytes received"), "{msg}");
    assert_nothing_cached(cache.path());
    assert!(tmp_names(cache.path()).is_empty());

    // With the size known (from a lock file) it fails before downloading.
    let mut sized = artifact.clone();
    sized.size = Some(body.len() as u64);
    let err = quick_store(cache.path())
        .fetch(&sized, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("hvbox.lock records 400000 bytes"),
        "{err}"
    );

    // Bytes after a correct body are not part of the response.
    let server = TestServer::start();
    let artifact = scripted(&server, &body, vec![Reply::Extra(b"junk".to_vec())]);
    let path = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
}

#[test]
fn fewer_bytes_than_announced_with_a_correct_length_header_fail() {
    let server = TestServer::start();
    let body = payload(400_000, 8);
    let artifact = scripted(&server, &body, vec![Reply::Prefix(250_000)]);
    let cache = tempfile::tempdir().unwrap();
    let err = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("250000 bytes received"), "{err}");
    assert_nothing_cached(cache.path());
}

#[test]
fn not_found_and_html_pages_fail_at_once() {
    let server = TestServer::start();
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let missing = Artifact::new(
        server.url("/missing.raw"),
        digest_of(Algorithm::Sha256, b"x"),
    );
    let err = store
        .fetch(&missing, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("404 Not Found"), "{err}");
    assert_eq!(server.hits("/missing.raw"), 1, "a 404 is not retried");

    let artifact = scripted(&server, HTML_PAGE, vec![Reply::Html]);
    let err = store
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::HtmlPage { .. }), "{err:?}");
    assert!(err.to_string().contains("HTML page"), "{err}");
    assert_eq!(server.hits("/disk.raw"), 1);

    // The same page without the content type is caught by its bytes.
    let server = TestServer::start();
    let artifact = scripted(&server, HTML_PAGE, vec![Reply::HtmlAsBinary]);
    let err = store
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(
        err.to_string().contains("HTML page, not a disk image"),
        "{err}"
    );
    assert_nothing_cached(cache.path());
    assert!(tmp_names(cache.path()).is_empty());
}

#[test]
fn concurrent_fetches_of_a_converted_image_download_once() {
    let server = TestServer::start();
    let raw = payload(2_000_000, 9);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("disk.raw"), &raw).unwrap();
    let out = std::process::Command::new("xz")
        .args(["-1", "-c", "disk.raw"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let xz = out.stdout;
    server.set(
        "/disk.raw.xz",
        Route::Slow {
            body: xz.clone(),
            chunk: 64 * 1024,
            delay: Duration::from_millis(20),
        },
    );
    let artifact = Artifact::new(
        server.url("/disk.raw.xz"),
        digest_of(Algorithm::Sha512, &xz),
    );
    let cache = tempfile::tempdir().unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let store = quick_store(cache.path());
                let artifact = &artifact;
                s.spawn(move || store.fetch(artifact, "box disk", Progress::Quiet))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert_eq!(std::fs::read(r.as_ref().unwrap()).unwrap(), raw);
    }
    assert_eq!(server.hits("/disk.raw.xz"), 1);
    assert!(tmp_names(cache.path()).is_empty());
}

#[test]
fn a_resumed_compressed_download_is_converted_from_its_kept_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Vec<u8> = payload(1_500_000, 10)
        .into_iter()
        .enumerate()
        .map(|(i, b)| if i % 3 == 0 { b } else { 0 })
        .collect();
    std::fs::write(dir.path().join("disk.raw"), &raw).unwrap();
    let out = std::process::Command::new("gzip")
        .args(["-c", "disk.raw"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let gz = out.stdout;
    let server = TestServer::start();
    let cut = gz.len() / 2;
    let artifact = scripted(&server, &gz, vec![Reply::Truncate(cut)]);
    let cache = tempfile::tempdir().unwrap();
    let err = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
    server.set(
        "/disk.raw",
        Route::Script {
            body: gz.clone(),
            replies: vec![Reply::Full],
        },
    );
    let path = quick_store(cache.path())
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), raw);
    assert_eq!(
        server.ranges("/disk.raw").last().unwrap().as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert!(tmp_names(cache.path()).is_empty());
}
