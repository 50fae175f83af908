//! What a download may cost before it is known to be the box: the digest is compared
//! when the transfer ends (a tiny tarball declaring a huge disk is not expanded
//! first), converted disks are capped, qcow2 images may not reuse one stored
//! cluster for several guest clusters, and the cache's filesystem must have room.
//! Each served over loopback HTTP; each refused with a clear error and nothing left
//! in the cache.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{digest_of, files_in, have, quick_options, Route, TestServer};
use hvbox_boxes::{Algorithm, Artifact, Digest, Error, FetchOptions, Progress, Store};

const MIB: u64 = 1 << 20;

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serve `body` and fetch it into `cache` with `digest`; the error, and that the
/// cache holds nothing (no entry, no temporary file).
fn refused(
    cache: &Path,
    body: Vec<u8>,
    digest: Option<Digest>,
    edit: impl FnOnce(&mut Artifact, &mut FetchOptions),
) -> Error {
    let server = TestServer::start();
    let digest = digest.unwrap_or_else(|| digest_of(Algorithm::Sha256, &body));
    server.set("/image", Route::Body(body));
    let mut artifact = Artifact::new(server.url("/image"), digest);
    let mut options = quick_options();
    edit(&mut artifact, &mut options);
    let store = Store::open(cache.to_path_buf()).with_options(options);
    let err = store
        .fetch(&artifact, "test disk", Progress::Quiet)
        .expect_err("the download must be refused");
    for sub in ["blobs/sha256", "meta/sha256", "tmp"] {
        let left = files_in(&cache.join(sub));
        assert!(left.is_empty(), "{sub} not empty after {err}: {left:?}");
    }
    err
}

#[test]
fn a_sparse_tarball_with_a_wrong_digest_is_not_expanded() {
    let dir = tempfile::tempdir().unwrap();
    // 10 KiB of GNU sparse tarball declaring a 32 GiB disk.raw of holes: expanding
    // it reads 32 GiB of zeros (~2 s of CPU here).
    sh(
        dir.path(),
        "truncate -s 32G disk.raw && tar --create --sparse --format=gnu -f disk.tar disk.raw && rm disk.raw",
    );
    let body = std::fs::read(dir.path().join("disk.tar")).unwrap();
    assert!(body.len() <= 16 << 10, "{} bytes", body.len());
    let cache = tempfile::tempdir().unwrap();
    let wrong: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    let started = Instant::now();
    let err = refused(cache.path(), body, Some(wrong), |_, _| {});
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[test]
fn a_stream_inflating_past_the_cap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB of non-zero bytes (no holes to skip), compressing to a few KiB.
    let text: Vec<u8> = b"hvbox caps what a box inflates to. "
        .iter()
        .copied()
        .cycle()
        .take(8 * MIB as usize)
        .collect();
    std::fs::write(dir.path().join("disk.raw"), text).unwrap();
    sh(dir.path(), "xz -T1 -k -c disk.raw > disk.raw.xz");
    let body = std::fs::read(dir.path().join("disk.raw.xz")).unwrap();

    // The cap hvbox.lock sets: the disk size it recorded.
    let cache = tempfile::tempdir().unwrap();
    let err = refused(cache.path(), body.clone(), None, |a, _| {
        a.disk_size = Some(MIB)
    });
    let msg = err.to_string();
    assert!(
        msg.contains("test disk")
            && msg.contains(
                "the xz data inflates to a disk that is more than the cap of 1 MiB (1048576 bytes)"
            )
            && msg.contains("hvbox.lock"),
        "{msg}"
    );

    // hvbox's own cap, without a lock file.
    let cache = tempfile::tempdir().unwrap();
    let err = refused(cache.path(), body, None, |_, o| o.max_disk_size = 2 * MIB);
    let msg = err.to_string();
    assert!(
        msg.contains("more than the cap of 2 MiB") && msg.contains("HVBOX_MAX_BOX_SIZE"),
        "{msg}"
    );
}

#[test]
fn a_tarball_declaring_more_than_the_cap_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    sh(
        dir.path(),
        "truncate -s 32G disk.raw && tar --create --sparse --format=gnu -f disk.tar disk.raw && rm disk.raw",
    );
    let body = std::fs::read(dir.path().join("disk.tar")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = refused(cache.path(), body, None, |_, o| o.max_disk_size = 1 << 30);
    let msg = err.to_string();
    assert!(
        msg.contains("disk.raw in the tarball declares 34359738368 bytes, which is more than the cap of 1.0 GiB"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn aliased_qcow2_clusters_are_refused() {
    if !have("qemu-img") {
        return hvbox_test_support::skip("qemu-img not installed (qemu-utils)");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("disk.raw"),
        common::payload(2 * MIB as usize, 9),
    )
    .unwrap();
    // Plain and compressed clusters: the second guest cluster is made to point at
    // the first one's stored bytes.
    for (name, extra) in [("plain", ""), ("compressed", "-c")] {
        sh(
            dir.path(),
            &format!(
                "qemu-img convert {extra} -O qcow2 -o cluster_size=4096 disk.raw {name}.qcow2"
            ),
        );
        let mut image = std::fs::read(dir.path().join(format!("{name}.qcow2"))).unwrap();
        let l1 = be64(&image, 40) as usize;
        let l2 = (be64(&image, l1) & 0x00ff_ffff_ffff_fe00) as usize;
        let first = image[l2..l2 + 8].to_vec();
        image[l2 + 8..l2 + 16].copy_from_slice(&first);
        let cache = tempfile::tempdir().unwrap();
        let msg = refused(cache.path(), image, None, |_, _| {}).to_string();
        assert!(
            msg.contains(
                "aliased clusters: guest offsets 0x0 and 0x1000 both point at the stored cluster"
            ),
            "{name}: {msg}"
        );
    }
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn too_little_free_space_is_said_with_the_numbers() {
    if !have("qemu-img") {
        return hvbox_test_support::skip("qemu-img not installed (qemu-utils)");
    }
    let Some(fs) = Tmpfs::mount("16M") else {
        return hvbox_test_support::skip("cannot mount a tmpfs (needs root)");
    };
    let dir = tempfile::tempdir().unwrap();
    // A 64 MiB sparse disk holding 32 MiB of data: the tarball's header says so
    // before any of it is written.
    let text: Vec<u8> = b"free space is checked first. "
        .iter()
        .copied()
        .cycle()
        .take(32 * MIB as usize)
        .collect();
    let raw = dir.path().join("disk.raw");
    std::fs::write(&raw, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&raw)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    sh(
        dir.path(),
        "tar --create --sparse --format=gnu -f - disk.raw | xz -T1 -c > disk.tar.xz",
    );
    let body = std::fs::read(dir.path().join("disk.tar.xz")).unwrap();
    let cache = fs.0.path().join("cache");
    let err = refused(&cache, body, None, |_, _| {});
    let msg = err.to_string();
    let tmp = cache.join("tmp");
    assert!(
        msg.contains("it needs 32 MiB of disk space but only 1")
            && msg.contains(&format!("is free on {}", tmp.display()))
            && msg.contains("(33554432 bytes needed"),
        "{msg}"
    );

    // The same disk as a compressed qcow2 image: its L2 table maps 32 MiB of
    // clusters, checked before they are written.
    sh(
        dir.path(),
        "qemu-img convert -c -O qcow2 disk.raw disk.qcow2",
    );
    let body = std::fs::read(dir.path().join("disk.qcow2")).unwrap();
    assert!(body.len() < 4 << 20, "{} bytes", body.len());
    let msg = refused(&cache, body, None, |_, _| {}).to_string();
    assert!(
        msg.contains("it needs 32 MiB of disk space but only 1"),
        "{msg}"
    );

    // A download bigger than the free space, said when the server gives its size.
    let body = common::payload(24 * MIB as usize, 5);
    let msg = refused(&cache, body, None, |_, _| {}).to_string();
    assert!(
        msg.contains("it needs 24 MiB of disk space but only 1"),
        "{msg}"
    );
}
