//! Every supported format, downloaded over loopback HTTP and converted in one pass,
//! compared byte for byte with what `qemu-img convert -O raw` (or the plain
//! decompressor) makes of the same file; and broken images refused with a clear
//! error and nothing cached.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{digest_of, files_in, have, payload, quick_store, Route, TestServer};
use hvbox_boxes::{Algorithm, Artifact, Error, Format, Progress};

const MIB: usize = 1 << 20;

/// A raw disk with what images hold: random data (stored as is), text (compresses),
/// zero runs (holes), and data in the last sector.
fn sample_disk(dir: &Path, size: usize) -> PathBuf {
    let mut disk = vec![0u8; size];
    disk[..MIB].copy_from_slice(&payload(MIB, 1));
    let text: Vec<u8> = b"hvbox converts qcow2 while it downloads. "
        .iter()
        .copied()
        .cycle()
        .take(3 * MIB)
        .collect();
    disk[2 * MIB..5 * MIB].copy_from_slice(&text);
    let at = size / 2 + 12_345;
    disk[at..at + 300_000].copy_from_slice(&payload(300_000, 2));
    let tail = size - 512;
    disk[tail..].copy_from_slice(&payload(512, 3));
    let path = dir.join("disk.raw");
    std::fs::write(&path, disk).unwrap();
    path
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running a tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn qemu_img(args: &[&str]) {
    run(Command::new("qemu-img").args(args));
}

fn zstd_clusters_supported(dir: &Path) -> bool {
    Command::new("qemu-img")
        .args(["create", "-f", "qcow2", "-o", "compression_type=zstd"])
        .arg(dir.join("probe.qcow2"))
        .arg("1M")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Serve `file`, fetch it (declaring `declared`), and return the cached disk.
fn fetch_served(file: &Path, declared: Option<&str>) -> (Vec<u8>, tempfile::TempDir) {
    let body = std::fs::read(file).unwrap();
    fetch_route(Route::Body(body.clone()), &body, file, declared)
}

/// The same, trickled in small pieces: the converter keeps waiting for the
/// download and reads clusters back as their bytes arrive.
fn fetch_trickled(file: &Path) -> Vec<u8> {
    let body = std::fs::read(file).unwrap();
    let route = Route::Slow {
        body: body.clone(),
        chunk: 37 * 1024,
        delay: std::time::Duration::from_millis(1),
    };
    fetch_route(route, &body, file, None).0
}

fn fetch_route(
    route: Route,
    body: &[u8],
    file: &Path,
    declared: Option<&str>,
) -> (Vec<u8>, tempfile::TempDir) {
    let server = TestServer::start();
    server.set("/image", route);
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let mut artifact = Artifact::new(server.url("/image"), digest_of(Algorithm::Sha256, body));
    artifact.format = declared.map(|f| f.parse().unwrap());
    let path = store
        .fetch(&artifact, "test disk", Progress::Quiet)
        .unwrap_or_else(|e| panic!("fetching {}: {e}", file.display()));
    assert!(
        files_in(&cache.path().join("tmp")).is_empty(),
        "tmp left over"
    );
    (std::fs::read(path).unwrap(), cache)
}

fn assert_same(actual: &[u8], expected_file: &Path, what: &str) {
    let expected = std::fs::read(expected_file).unwrap();
    assert_eq!(actual.len(), expected.len(), "{what}: sizes differ");
    if let Some(i) = actual.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i:#x}");
    }
}

/// Convert with qemu-img and with hvbox; both must give the same bytes.
fn check_qcow2(dir: &Path, raw: &Path, name: &str, create: &[&str]) {
    let image = dir.join(format!("{name}.qcow2"));
    let mut args = vec!["convert", "-O", "qcow2"];
    args.extend_from_slice(create);
    let (raw_s, image_s) = (raw.to_str().unwrap(), image.to_str().unwrap());
    args.extend_from_slice(&[raw_s, image_s]);
    qemu_img(&args);
    let reference = dir.join(format!("{name}.ref.raw"));
    qemu_img(&["convert", "-O", "raw", image_s, reference.to_str().unwrap()]);
    let (disk, _cache) = fetch_served(&image, Some("qcow2"));
    assert_same(&disk, &reference, name);
    if name == "zlib" || name == "small-clusters" {
        assert_same(
            &fetch_trickled(&image),
            &reference,
            &format!("{name}, trickled"),
        );
    }
}

#[test]
fn qcow2_matches_qemu_img_convert() {
    if !have("qemu-img") {
        return hvbox_test_support::skip(
            "qemu-img not installed (scripts/install-deps installs qemu-utils)",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_disk(dir.path(), 24 * MIB);
    check_qcow2(dir.path(), &raw, "plain-v3", &[]);
    check_qcow2(dir.path(), &raw, "zlib", &["-c"]);
    check_qcow2(dir.path(), &raw, "v2-zlib", &["-c", "-o", "compat=0.10"]);
    check_qcow2(
        dir.path(),
        &raw,
        "small-clusters",
        &["-c", "-o", "cluster_size=4096"],
    );
    check_qcow2(dir.path(), &raw, "big-clusters", &["-o", "cluster_size=2M"]);
    check_qcow2(
        dir.path(),
        &raw,
        "extended-l2",
        &["-o", "extended_l2=on,cluster_size=128k"],
    );
    if zstd_clusters_supported(dir.path()) {
        check_qcow2(
            dir.path(),
            &raw,
            "zstd",
            &["-c", "-o", "compression_type=zstd"],
        );
    } else {
        hvbox_test_support::skip("zstd clusters: this qemu-img lacks compression_type=zstd");
    }
}

#[test]
fn qcow2_zero_clusters_and_written_over_images() {
    if !have("qemu-img") || !have("qemu-io") {
        return hvbox_test_support::skip("qemu-img/qemu-io not installed (qemu-utils)");
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_disk(dir.path(), 8 * MIB);
    let image = dir.path().join("edited.qcow2");
    let image_s = image.to_str().unwrap();
    qemu_img(&[
        "convert",
        "-c",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        image_s,
    ]);
    // Zero some allocated clusters, overwrite compressed ones (allocating new clusters
    // at the end of the file, after their L2 table), and write beyond the data.
    run(Command::new("qemu-io").args([
        "-f",
        "qcow2",
        "-c",
        "write -z 0 128k",
        "-c",
        "write -P 0x5a 2M 192k",
        "-c",
        "write -P 0x11 7M 64k",
        image_s,
    ]));
    let reference = dir.path().join("edited.ref.raw");
    qemu_img(&["convert", "-O", "raw", image_s, reference.to_str().unwrap()]);
    let (disk, _cache) = fetch_served(&image, None);
    assert_same(&disk, &reference, "edited");
    assert_same(&fetch_trickled(&image), &reference, "edited, trickled");
}

#[test]
fn compressed_wrappers_and_tarballs_give_the_raw_disk() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_disk(dir.path(), 16 * MIB);
    let d = dir.path();
    let sh = |script: &str| run(Command::new("sh").arg("-c").arg(script).current_dir(d));
    sh("xz -T1 -3 -k -c disk.raw > disk.raw.xz && gzip -c disk.raw > disk.raw.gz && zstd -q -c disk.raw > disk.raw.zst");
    sh("tar --create --sparse --format=gnu -f disk.tar disk.raw && xz -k -c disk.tar > disk.tar.xz && gzip -c disk.tar > disk.tar.gz");
    for (file, format) in [
        ("disk.raw.xz", "raw.xz"),
        ("disk.raw.gz", "raw.gz"),
        ("disk.raw.zst", "raw.zst"),
        ("disk.tar", "tar"),
        ("disk.tar.xz", "tar.xz"),
        ("disk.tar.gz", "tar.gz"),
    ] {
        let (disk, cache) = fetch_served(&d.join(file), Some(format));
        assert_same(&disk, &raw, file);
        let entries = quick_store(cache.path()).entries().unwrap();
        let meta = entries[0].meta.as_ref().unwrap();
        assert_eq!(meta.format, format.parse::<Format>().unwrap(), "{file}");
        assert_eq!(meta.disk_size, 16 * MIB as u64);
        // Holes stay holes: far less than 16 MiB on disk.
        assert!(
            entries[0].allocated < 8 * MIB as u64,
            "{file}: {} allocated",
            entries[0].allocated
        );
    }
    // A qcow2 image inside xz, detected without a declared format.
    if have("qemu-img") {
        let inner = d.join("inner.qcow2");
        qemu_img(&[
            "convert",
            "-c",
            "-O",
            "qcow2",
            raw.to_str().unwrap(),
            inner.to_str().unwrap(),
        ]);
        sh("xz -T1 -1 -c inner.qcow2 > inner.qcow2.xz");
        let reference = d.join("inner.ref.raw");
        qemu_img(&[
            "convert",
            "-O",
            "raw",
            d.join("inner.qcow2").to_str().unwrap(),
            reference.to_str().unwrap(),
        ]);
        let (disk, _cache) = fetch_served(&d.join("inner.qcow2.xz"), None);
        assert_same(&disk, &reference, "qcow2.xz");
    }
}

/// Serve `body`, fetch it, and return the error; the cache must stay empty.
fn fetch_error(body: Vec<u8>, declared: Option<&str>) -> Error {
    let server = TestServer::start();
    server.set("/image", Route::Body(body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let store = quick_store(cache.path());
    let mut artifact = Artifact::new(server.url("/image"), digest_of(Algorithm::Sha256, &body));
    artifact.format = declared.map(|f| f.parse().unwrap());
    let err = store
        .fetch(&artifact, "test disk", Progress::Quiet)
        .expect_err("a bad image must be refused");
    for sub in ["blobs/sha256", "meta/sha256", "tmp"] {
        let left = files_in(&cache.path().join(sub));
        assert!(left.is_empty(), "{sub} not empty after {err}: {left:?}");
    }
    assert!(err.to_string().contains(&artifact.url), "{err}");
    assert!(err.to_string().contains("test disk"), "{err}");
    err
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// A plain qcow2 image of `raw` with small clusters (so several L2 tables).
fn small_cluster_image(dir: &Path) -> Vec<u8> {
    let raw = sample_disk(dir, 8 * MIB);
    let image = dir.join("small.qcow2");
    qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4096",
        raw.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    std::fs::read(image).unwrap()
}

#[test]
fn broken_qcow2_images_are_refused() {
    if !have("qemu-img") {
        return hvbox_test_support::skip("qemu-img not installed (qemu-utils)");
    }
    let dir = tempfile::tempdir().unwrap();
    let good = small_cluster_image(dir.path());
    let l1 = be64(&good, 40) as usize;

    // Bad magic, in an artifact declared as qcow2.
    let mut bad = good.clone();
    bad[..4].copy_from_slice(b"QFX\0");
    let msg = fetch_error(bad, Some("qcow2")).to_string();
    assert!(msg.contains("not a valid qcow2 image: bad magic"), "{msg}");

    // A cluster beyond the end of the file: cut the last data cluster off.
    let cut = good[..good.len() - 4096].to_vec();
    let msg = fetch_error(cut, None).to_string();
    assert!(msg.contains("beyond the end of the file"), "{msg}");

    // L1 entries 0 and 1 sharing one L2 table.
    let mut looped = good.clone();
    let first = be64(&looped, l1);
    put64(&mut looped, l1 + 8, first);
    let msg = fetch_error(looped, None).to_string();
    assert!(msg.contains("L2 table loop"), "{msg}");

    // An L2 entry pointing at its own L2 table.
    let mut self_ref = good.clone();
    let l2 = (be64(&self_ref, l1) & 0x00ff_ffff_ffff_fe00) as usize;
    put64(&mut self_ref, l2 + 8, l2 as u64 | 1 << 63);
    let msg = fetch_error(self_ref, None).to_string();
    assert!(
        msg.contains("L2 table loop") && msg.contains("points into the L2 table"),
        "{msg}"
    );

    // Encryption (AES, crypt_method 1).
    let mut enc = good.clone();
    enc[32..36].copy_from_slice(&1u32.to_be_bytes());
    let msg = fetch_error(enc, None).to_string();
    assert!(msg.contains("encrypted"), "{msg}");

    // A backing file.
    let base = dir.path().join("base.qcow2");
    std::fs::write(&base, &good).unwrap();
    let overlay = dir.path().join("overlay.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        overlay.to_str().unwrap(),
    ]);
    let msg = fetch_error(std::fs::read(&overlay).unwrap(), None).to_string();
    assert!(msg.contains("backing file (\"base.qcow2\")"), "{msg}");
    assert!(msg.contains("qemu-img convert"), "{msg}");
}

#[test]
fn tarball_without_a_disk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), b"no disk here").unwrap();
    std::fs::write(dir.path().join("root.img"), payload(10_000, 4)).unwrap();
    run(Command::new("sh")
        .arg("-c")
        .arg("tar -cf - README root.img | gzip -c > t.tar.gz")
        .current_dir(dir.path()));
    let msg = fetch_error(std::fs::read(dir.path().join("t.tar.gz")).unwrap(), None).to_string();
    assert!(
        msg.contains("the tarball holds no disk.raw (found: README, root.img)"),
        "{msg}"
    );
}

#[test]
fn html_instead_of_an_image_is_refused() {
    let page = b"<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>\n".to_vec();
    let msg = fetch_error(page, None).to_string();
    assert!(msg.contains("HTML page, not a disk image"), "{msg}");
}

#[test]
fn declared_format_must_match() {
    let msg = fetch_error(payload(100_000, 5), Some("tar.xz")).to_string();
    assert!(
        msg.contains("declared as tar.xz but the file is raw"),
        "{msg}"
    );
}
