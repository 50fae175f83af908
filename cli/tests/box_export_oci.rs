//! `hvbox box export --oci/--kernel-oci` through the real binary, on a small box
//! built here (an ext4 root with Debian-style kernels, in a GPT disk): the archives
//! are read back by Debian's skopeo and unpacked; the disk inside is the cached
//! box's, the kernel and initrd those `up` boots, and a second export gives the
//! same bytes.

mod common;
#[path = "../../provisioner/tests/common/mod.rs"]
mod disks;

use common::{hvbox_isolated, text};
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// Each entry of a tar: path → (uid, gid, mode, bytes).
type Entries = BTreeMap<String, (u64, u64, u32, Vec<u8>)>;

fn entries(bytes: &[u8]) -> (Entries, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut order = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        assert_eq!(h.mtime().unwrap(), 0, "a fixed time");
        let path = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        order.push(path.clone());
        out.insert(
            path,
            (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap(), data),
        );
    }
    (out, order)
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The one layer of the image in an OCI archive, checked against its index,
/// manifest and config on the way; and the manifest's digest.
fn layer_of(archive: &Path) -> (Entries, String) {
    let (outer, order) = entries(&std::fs::read(archive).unwrap());
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "entries in sorted order");
    let blob = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let data = outer[&format!("blobs/sha256/{hex}")].3.clone();
        let got: String = sha2::Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, hex, "blob {digest} has its digest");
        data
    };
    assert_eq!(json(&outer["oci-layout"].3)["imageLayoutVersion"], "1.0.0");
    let index = json(&outer["index.json"].3);
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = json(&blob(&manifest_digest));
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let config = json(&blob(manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["rootfs"]["diff_ids"][0], layer_digest);
    let (layer, _) = entries(&blob(layer_digest));
    (layer, manifest_digest)
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn a_box_exports_as_images_skopeo_reads() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        return hvbox_test_support::skip("no skopeo (Debian package skopeo)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let disk = disks::debian_disk(&tmp.path().join("build"));
    let original = std::fs::read(&disk).unwrap();
    let hex: String = Sha512::digest(&original)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!("file://{}", disk.display());
    let digest = format!("sha512:{hex}");
    let hvbox = |args: &[&str]| {
        let out = hvbox_isolated(tmp.path(), &home, args);
        assert!(
            out.status.success(),
            "hvbox {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    hvbox(&[
        "box", "add", &url, "--digest", &digest, "--name", "tiny", "--quiet",
    ]);

    let disk_tar = tmp.path().join("disk.tar");
    let kernel_tar = tmp.path().join("kernel.tar");
    let said = hvbox(&[
        "box",
        "export",
        "tiny",
        "--oci",
        disk_tar.to_str().unwrap(),
        "--kernel-oci",
        kernel_tar.to_str().unwrap(),
    ]);
    assert!(said.contains("(containerDisk, image sha256:"), "{said}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&disk_tar).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);

    // skopeo reads both, and sees the image the archive's index names.
    for (archive, want_files) in [
        (&disk_tar, vec!["disk/", "disk/disk.img"]),
        (
            &kernel_tar,
            vec!["boot/", "boot/initrd.img", "boot/vmlinuz"],
        ),
    ] {
        let inspect: Value = serde_json::from_str(&skopeo(&[
            "inspect",
            &format!("oci-archive:{}", archive.display()),
        ]))
        .unwrap();
        let (layer, manifest_digest) = layer_of(archive);
        assert_eq!(inspect["Digest"], manifest_digest.as_str());
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
        assert_eq!(layer.keys().collect::<Vec<_>>(), want_files);
        // skopeo copies it, checking every blob against its digest.
        let copy = tmp.path().join(format!(
            "copy-{}",
            archive.file_stem().unwrap().to_str().unwrap()
        ));
        skopeo(&[
            "copy",
            "--quiet",
            &format!("oci-archive:{}", archive.display()),
            &format!("dir:{}", copy.display()),
        ]);
    }

    // The containerDisk: the cached box's bytes, for uid 107 (KubeVirt's qemu).
    let (layer, _) = layer_of(&disk_tar);
    let (uid, gid, mode, data) = &layer["disk/disk.img"];
    assert_eq!((*uid, *gid, *mode), (107, 107, 0o440));
    assert!(*data == original, "the disk in the image is not the box's");

    // The kernel image: the newest kernel, which `up` boots (no bootloader names
    // another), and its initrd.
    let (layer, _) = layer_of(&kernel_tar);
    assert!(layer["boot/vmlinuz"].3 == disks::kernel_image(disks::K10));
    assert!(layer["boot/initrd.img"].3 == disks::initrd_image(disks::K10));

    // Again: the same bytes, so the same digest.
    let again = tmp.path().join("again.tar");
    hvbox(&[
        "box",
        "export",
        &digest[..20],
        "--oci",
        again.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&again).unwrap() == std::fs::read(&disk_tar).unwrap(),
        "a second export differs"
    );
}

#[test]
fn a_box_export_names_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = hvbox_isolated(
        tmp.path(),
        &home,
        &["box", "export", "nothing", "--oci", "x.tar"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no cached box disk matches \"nothing\""),
        "{}",
        text(&out.stderr)
    );
    let out = hvbox_isolated(tmp.path(), &home, &["box", "export", "nothing"]);
    assert_eq!(out.status.code(), Some(2), "neither --oci nor --kernel-oci");
    assert!(!tmp.path().join("x.tar").exists());
}
