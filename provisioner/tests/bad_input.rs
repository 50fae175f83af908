//! Damaged or hostile disk images: every case is an error that names the
//! image and the problem (or a safe fallback), never a panic, never a read
//! of a host file.
mod common;

use std::fs;
use std::path::Path;

use common::*;
use hvbox_provisioner::{extract_boot_files, installed_kernels, Error, KernelSelection};

const DEFAULT: &KernelSelection = &KernelSelection::Default;

fn assert_names_disk(msg: &str, disk: &Path) {
    assert!(msg.contains(&disk.display().to_string()), "{msg}");
}

#[test]
fn dangling_kernel_symlink_falls_back_to_the_next_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    // grub and /vmlinuz both name a kernel that was removed.
    tree.kernel("boot", K9)
        .symlink("vmlinuz", "boot/vmlinuz-6.1.0-99-cloud-amd64")
        .file(
            "boot/grub/grub.cfg",
            b"menuentry 'Debian' {\n linux /vmlinuz root=LABEL=stale ro\n}\n",
        );
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);
    let boot = extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, K9);
    assert!(fs::read(&boot.kernel).unwrap() == kernel_image(K9));
    // The broken entry's arguments are not trusted either.
    assert_eq!(boot.cmdline, format!("root=PARTUUID={ROOT_UUID} ro"));
}

#[test]
fn only_a_dangling_symlink_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.symlink("boot/vmlinuz", "vmlinuz-6.1.0-99-cloud-amd64");
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);
    let err =
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::NoKernel { .. }), "{err:?}");
    let msg = err.to_string();
    assert_names_disk(&msg, &disk);
    assert!(
        msg.contains(
            "/boot/vmlinuz on partition 1: dangling symlink to vmlinuz-6.1.0-99-cloud-amd64"
        ),
        "{msg}"
    );
}

/// Symlinks whose targets escape the tree on the host: on the host they
/// reach a real kernel-looking file; inside the guest `..` stops at the
/// root, so they point at guest paths that do not exist.
#[test]
fn symlinks_cannot_reach_host_files() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("vmlinuz-6.6.6-host"), kernel_image("6.6.6-host")).unwrap();
    let host_abs = host.join("vmlinuz-6.6.6-host");

    let tree = Tree::new(dir.path(), "root");
    // Relative: root/boot/../../host/… is the host file.
    tree.symlink("boot/vmlinuz", "../../host/vmlinuz-6.6.6-host")
        // Absolute, with extra `..` for good measure.
        .symlink(
            "boot/vmlinuz-6.6.6-abs",
            &format!("/../../..{}", host_abs.display()),
        );
    fstab(&tree);
    // The test only means something if the host would follow these.
    assert!(fs::read(tree.root.join("boot/vmlinuz")).unwrap() == kernel_image("6.6.6-host"));
    assert!(
        fs::read(tree.root.join("boot/vmlinuz-6.6.6-abs")).unwrap() == kernel_image("6.6.6-host")
    );

    let disk = disk_from(dir.path(), &tree);
    let out = dir.path().join("out");
    let err = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::NoKernel { .. }), "{err:?}");
    let msg = err.to_string();
    assert_names_disk(&msg, &disk);
    assert!(
        msg.contains("/boot/vmlinuz on partition 1: dangling symlink"),
        "{msg}"
    );
    assert!(
        msg.contains("/boot/vmlinuz-6.6.6-abs on partition 1: dangling symlink"),
        "{msg}"
    );
    assert!(!out.join("vmlinuz").exists());
    assert!(!msg.contains("6.6.6-host on"), "{msg}");
}

/// The same escaping targets resolve inside the guest, clamped at its root,
/// when the guest has a file there.
#[test]
fn escaping_symlinks_resolve_clamped_inside_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.file("opt/k/vmlinuz-6.6.6-guest", &kernel_image("6.6.6-guest"))
        .file("opt/k/initrd.img-6.6.6-guest", &initrd_image("6.6.6-guest"))
        .symlink("boot/vmlinuz", "../../../../../opt/k/vmlinuz-6.6.6-guest")
        // Guest /etc/passwd is no kernel: skipped, not booted.
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        .symlink("vmlinuz", "/../../../etc/passwd")
        .file(
            "boot/grub/grub.cfg",
            b"menuentry 'x' {\n linux /vmlinuz ro\n}\n",
        );
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);
    let boot = extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, "6.6.6-guest");
    assert!(fs::read(&boot.kernel).unwrap() == kernel_image("6.6.6-guest"));
    assert!(fs::read(boot.initrd.unwrap()).unwrap() == initrd_image("6.6.6-guest"));
    assert_eq!(
        boot.kernel_guest_path,
        "/opt/k/vmlinuz-6.6.6-guest on partition 1"
    );
}

#[test]
fn symlink_loop_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.symlink("boot/vmlinuz", "vmlinuz-a")
        .symlink("boot/vmlinuz-a", "vmlinuz");
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);
    let msg = extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY)
        .unwrap_err()
        .to_string();
    assert_names_disk(&msg, &disk);
    assert!(
        msg.contains("/boot/vmlinuz on partition 1: symlink loop"),
        "{msg}"
    );
}

#[test]
fn empty_boot_is_no_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    fs::create_dir_all(tree.root.join("boot")).unwrap();
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);
    let wanted = KernelSelection::Version(K9.into());
    for err in [
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err(),
        extract_boot_files(&disk, &dir.path().join("out"), &wanted, GUEST_MEMORY).unwrap_err(),
        installed_kernels(&disk).unwrap_err(),
    ] {
        assert!(matches!(err, Error::NoKernel { .. }), "{err:?}");
        let msg = err.to_string();
        assert_names_disk(&msg, &disk);
        assert!(
            msg.contains("no kernel found") && msg.contains("partition 1: ext2/3/4"),
            "{msg}"
        );
        assert!(msg.contains("is a kernel package installed"), "{msg}");
    }
}

#[test]
fn corrupted_ext4_superblock_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let disk = debian_disk(dir.path());
    // The partition starts at 1 MiB, its superblock 1 KiB in. Keep the
    // magic (so the partition is still recognised as ext) and garble the
    // counts, block size and feature fields around it.
    let sb = MIB + 1024;
    overwrite(&disk, sb, &[0xA5; 0x38]);
    overwrite(&disk, sb + 0x3A, &[0x5A; 0x100 - 0x3A]);
    let err =
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::OpenFs { .. }), "{err:?}");
    let msg = err.to_string();
    assert_names_disk(&msg, &disk);
    assert!(
        msg.contains("cannot open the ext filesystem on partition 1"),
        "{msg}"
    );

    // Without even the magic nothing on the disk is recognisable.
    overwrite(&disk, sb, &[0u8; 1024]);
    let err =
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::NoLinuxFilesystem { .. }), "{err:?}");
    let msg = err.to_string();
    assert_names_disk(&msg, &disk);
    assert!(
        msg.contains("partition 1: no recognised filesystem"),
        "{msg}"
    );
}

#[test]
fn gpt_partition_past_the_end_of_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let disk = debian_disk(dir.path());
    // Cut the image inside the partition: a truncated download.
    truncate(&disk, 16 * MIB);
    let err =
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::PartitionTable { .. }), "{err:?}");
    let msg = err.to_string();
    assert_names_disk(&msg, &disk);
    assert!(msg.contains("partition 1"), "{msg}");
    assert!(msg.contains("runs past the end of the disk"), "{msg}");
}

#[test]
fn mbr_partition_past_the_end_of_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root();
    let part = dir.path().join("part.img");
    tree.mkfs(&part, 32, &[]);
    let disk = dir.path().join("disk.img");
    make_disk(&disk, "dos", "", &[(Content::Image(&part), "type=83")]);
    truncate(&disk, 8 * MIB);
    let err =
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::PartitionTable { .. }), "{err:?}");
    let msg = err.to_string();
    assert_names_disk(&msg, &disk);
    assert!(
        msg.contains(
            "partition 1 (bytes 1048576..34603008) runs past the end of the disk (8388608 bytes)"
        ),
        "{msg}"
    );
}

/// Truncations and garbage anywhere in a valid image give errors (or, if
/// the damage misses everything we read, a result), never a panic.
#[test]
fn damaged_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = debian_disk(dir.path());
    let len = fs::metadata(&good).unwrap().len();
    let bytes = fs::read(&good).unwrap();
    let disk = dir.path().join("damaged.img");
    let out = dir.path().join("out");
    for cut in [
        0,
        1,
        511,
        512,
        1024,
        4096,
        34 * 512,
        MIB,
        MIB + 2048,
        len / 2,
        len - 512,
    ] {
        fs::write(&disk, &bytes[..cut as usize]).unwrap();
        let _ = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY);
        let _ = installed_kernels(&disk);
    }
    // Garble one 4 KiB block at a time across the filesystem's metadata
    // (superblock, group descriptors, bitmaps, inode table, directories).
    fs::write(&disk, &bytes).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for block in 0..256u64 {
        let at = MIB + block * 4096;
        let mut junk = vec![0u8; 4096];
        for b in &mut junk {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        overwrite(&disk, at, &junk);
        let _ = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY);
        let _ = installed_kernels(&disk);
        overwrite(&disk, at, &bytes[at as usize..at as usize + 4096]);
    }
    fs::write(&disk, vec![0xFFu8; 4 * MIB as usize]).unwrap();
    let err = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap_err();
    assert_names_disk(&err.to_string(), &disk);
}
