mod common;

use std::path::Path;
use std::time::Duration;

use common::{digest_of, files_in, payload, quick_store, Route, TestServer};
use hvbox_boxes::{Algorithm, Artifact, Error, Progress};

fn assert_cache_empty(root: &Path) {
    for sub in ["blobs/sha256", "blobs/sha512", "tmp"] {
        let files = files_in(&root.join(sub));
        assert!(files.is_empty(), "{sub} not empty: {files:?}");
    }
}

#[test]
fn fetch_verifies_stores_and_reuses_without_network() {
    let server = TestServer::start();
    let body = payload(3 * 1024 * 1024 + 17, 1);
    server.set("/disk.raw", Route::Body(body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let artifact = Artifact::new(server.url("/disk.raw"), digest_of(Algorithm::Sha256, &body));
    assert!(!store.contains(&artifact.digest));

    let path = store.fetch(&artifact, "box disk", Progress::Quiet).unwrap();
    assert_eq!(path, store.blob_path(&artifact.digest));
    assert_eq!(
        path,
        cache.path().join("blobs/sha256").join(&artifact.digest.hex)
    );
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert!(store.contains(&artifact.digest));
    assert!(files_in(&cache.path().join("tmp")).is_empty());
    assert_eq!(server.hits("/disk.raw"), 1);
    let agents = server.user_agents();
    assert!(agents.iter().all(|a| a.starts_with("hvbox/")), "{agents:?}");

    // Cached: no request, even when the URL now points nowhere.
    let again = store.fetch(&artifact, "box disk", Progress::Quiet).unwrap();
    assert_eq!(again, path);
    assert_eq!(server.hits("/disk.raw"), 1);
    let unreachable = Artifact::new("http://127.0.0.1:1/gone", artifact.digest.clone());
    assert_eq!(
        store
            .fetch(&unreachable, "box disk", Progress::Quiet)
            .unwrap(),
        path
    );
}

#[test]
fn sha512_artifacts_are_supported() {
    let server = TestServer::start();
    let body = payload(100_000, 2);
    server.set("/k", Route::Body(body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let artifact = Artifact::new(server.url("/k"), digest_of(Algorithm::Sha512, &body));
    let path = store.fetch(&artifact, "kernel", Progress::Quiet).unwrap();
    assert!(path.starts_with(cache.path().join("blobs/sha512")));
    assert_eq!(std::fs::read(path).unwrap(), body);
}

#[test]
fn digest_mismatch_reports_both_digests_and_leaves_cache_empty() {
    let server = TestServer::start();
    let served = payload(200_000, 3);
    server.set("/disk.raw", Route::Body(served.clone()));
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let expected = digest_of(Algorithm::Sha256, b"something else");
    let actual = digest_of(Algorithm::Sha256, &served);
    let artifact = Artifact::new(server.url("/disk.raw"), expected.clone());

    let err = store
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(msg.contains(&expected.to_string()), "{msg}");
    assert!(msg.contains(&actual.to_string()), "{msg}");
    assert!(msg.contains(&artifact.url), "{msg}");
    assert!(!store.contains(&expected));
    assert_cache_empty(cache.path());
}

#[test]
fn http_errors_name_status_and_url_and_cache_nothing() {
    let server = TestServer::start();
    server.set("/broken", Route::Status(500));
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let digest = digest_of(Algorithm::Sha256, b"x");

    for (path, status) in [("/missing", 404u16), ("/broken", 500)] {
        let artifact = Artifact::new(server.url(path), digest.clone());
        let err = store
            .fetch(&artifact, "box disk", Progress::Quiet)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, Error::HttpStatus { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(msg.contains(&status.to_string()), "{msg}");
        assert!(msg.contains(&artifact.url), "{msg}");
    }
    assert_cache_empty(cache.path());
}

#[test]
fn connection_errors_name_the_url() {
    // Bind then drop to get a loopback port that refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let artifact = Artifact::new(
        format!("http://127.0.0.1:{port}/disk.raw"),
        digest_of(Algorithm::Sha256, b"x"),
    );
    let err = store
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err:?}");
    assert!(err.to_string().contains(&artifact.url), "{err}");
    assert_cache_empty(cache.path());
}

#[test]
fn file_urls_are_copied_and_verified() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("disk.raw");
    let body = payload(2 * 1024 * 1024 + 5, 4);
    std::fs::write(&src, &body).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let artifact = Artifact::new(
        format!("file://{}", src.display()),
        digest_of(Algorithm::Sha512, &body),
    );
    let path = store.fetch(&artifact, "box disk", Progress::Quiet).unwrap();
    assert_eq!(path, store.blob_path(&artifact.digest));
    assert_eq!(std::fs::read(&path).unwrap(), body);

    // Wrong digest through file:// fails the same way.
    let bad = Artifact::new(artifact.url.clone(), digest_of(Algorithm::Sha256, b"nope"));
    let err = store.fetch(&bad, "box disk", Progress::Quiet).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(files_in(&cache.path().join("tmp")).is_empty());
}

#[test]
fn missing_local_file_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let missing = cache.path().join("no-such-disk.raw");
    let artifact = Artifact::new(
        format!("file://{}", missing.display()),
        digest_of(Algorithm::Sha256, b"x"),
    );
    let err = store
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::LocalFileMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
    assert_cache_empty(cache.path());
}

#[test]
fn unsupported_scheme_is_rejected() {
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let artifact = Artifact::new(
        "ftp://example.invalid/disk.raw",
        digest_of(Algorithm::Sha256, b"x"),
    );
    let err = store
        .fetch(&artifact, "box disk", Progress::Quiet)
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("ftp://example.invalid/disk.raw"));
}

#[test]
fn malformed_hand_built_digest_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let artifact = Artifact::new(
        "http://127.0.0.1:1/x",
        hvbox_boxes::Digest {
            algorithm: Algorithm::Sha256,
            hex: "../../etc/passwd".into(),
        },
    );
    let err = store.fetch(&artifact, "x", Progress::Quiet).unwrap_err();
    assert!(matches!(err, Error::InvalidDigest { .. }), "{err:?}");
}

#[test]
fn concurrent_fetches_download_once_and_both_succeed() {
    let server = TestServer::start();
    let body = payload(512 * 1024, 5);
    server.set(
        "/slow.raw",
        Route::Slow {
            body: body.clone(),
            chunk: 32 * 1024,
            delay: Duration::from_millis(15),
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let artifact = Artifact::new(server.url("/slow.raw"), digest_of(Algorithm::Sha256, &body));
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                // Separate Store values, as two processes would have.
                let store = quick_store(cache.path());
                let artifact = &artifact;
                s.spawn(move || store.fetch(artifact, "box disk", Progress::Quiet))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let store = quick_store(cache.path());
    for r in &results {
        assert_eq!(r.as_ref().unwrap(), &store.blob_path(&artifact.digest));
    }
    assert_eq!(
        std::fs::read(store.blob_path(&artifact.digest)).unwrap(),
        body
    );
    // The lock made the second fetch wait and reuse the first one's blob.
    assert_eq!(server.hits("/slow.raw"), 1);
    assert!(files_in(&cache.path().join("tmp")).is_empty());
    assert_eq!(files_in(&cache.path().join("blobs/sha256")).len(), 1);
}

#[test]
fn fetch_text_reads_small_documents() {
    let server = TestServer::start();
    server.set("/SHA512SUMS", Route::Body(b"abc  file\n".to_vec()));
    let text = hvbox_boxes::fetch_text(&server.url("/SHA512SUMS"), Progress::Quiet).unwrap();
    assert_eq!(text, "abc  file\n");
    let err = hvbox_boxes::fetch_text(&server.url("/nope"), Progress::Quiet).unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status: 404, .. }),
        "{err:?}"
    );
}

#[test]
fn leftovers_of_killed_downloads_are_cleaned_up() {
    let server = TestServer::start();
    let body = payload(4096, 6);
    server.set("/disk.raw", Route::Body(body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let artifact = Artifact::new(server.url("/disk.raw"), digest_of(Algorithm::Sha256, &body));
    let tmp = cache.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let stale = tmp.join(format!("{}.4242.0.0.part", artifact.digest.hex));
    let unrelated = tmp.join("other.part");
    std::fs::write(&stale, b"partial").unwrap();
    std::fs::write(&unrelated, b"x").unwrap();
    store.fetch(&artifact, "box disk", Progress::Quiet).unwrap();
    assert!(!stale.exists());
    assert!(
        unrelated.exists(),
        "only this entry's leftovers are removed"
    );
}
