mod common;

use std::fs;
use std::path::Path;

use common::*;
use hvbox_provisioner::{extract_boot_files, installed_kernels, BootFiles, Error, KernelSelection};

const DEFAULT: &KernelSelection = &KernelSelection::Default;

fn assert_extracted(boot: &BootFiles, out: &Path, version: &str) {
    assert_extracted_kernel(boot, out, version, &kernel_image(version));
}

fn assert_extracted_kernel(boot: &BootFiles, out: &Path, version: &str, kernel: &[u8]) {
    assert_eq!(boot.kernel_version, version);
    assert_eq!(boot.kernel, out.join("vmlinuz"));
    assert!(
        fs::read(&boot.kernel).unwrap() == kernel,
        "kernel bytes differ"
    );
    let initrd = boot.initrd.as_ref().expect("initrd found");
    assert_eq!(initrd, &out.join("initrd.img"));
    assert!(
        fs::read(initrd).unwrap() == initrd_image(version),
        "initrd bytes differ"
    );
    assert!(temp_leftovers(out).is_empty(), "{:?}", temp_leftovers(out));
}

#[test]
fn gpt_newest_kernel_by_version_and_fstab_root() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root();
    let part = dir.path().join("part.img");
    tree.mkfs(&part, 64, &[]);
    let disk = dir.path().join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);

    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_extracted(&boot, &out, K10);
    assert_eq!(boot.cmdline, format!("root=PARTUUID={ROOT_UUID} ro"));
    assert_eq!(
        boot.kernel_guest_path,
        format!("/boot/vmlinuz-{K10} on partition 1")
    );
    assert_eq!(
        boot.initrd_guest_path,
        Some(format!("/boot/initrd.img-{K10} on partition 1"))
    );
    assert_eq!(installed_kernels(&disk).unwrap(), [K10, K9]);

    // Extracting again replaces the files in place.
    let again = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(again, boot);
}

#[test]
fn grub_default_entry_picks_kernel_and_args() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root().file(
        "boot/grub/grub.cfg",
        format!(
            "set default=\"0\"\n\
             menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple' {{\n\
             \tinsmod ext2\n\
             \tlinux\t/boot/vmlinuz-{K9} root=UUID=0badc0de-0000-4000-8000-000000000001 ro console=tty0 console=ttyS0,115200 net.ifnames=0 quiet\n\
             \tinitrd\t/boot/initrd.img-{K9}\n\
             }}\n\
             submenu 'Advanced options' {{\n\
             \tmenuentry 'with Linux {K10}' {{\n\
             \t\tlinux\t/boot/vmlinuz-{K10} root=PARTUUID={ROOT_UUID} ro\n\
             \t}}\n\
             }}\n"
        )
        .as_bytes(),
    );
    let part = dir.path().join("part.img");
    tree.mkfs(&part, 64, &[]);
    let disk = dir.path().join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);

    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_extracted(&boot, &out, K9);
    assert_eq!(
        boot.cmdline,
        "root=UUID=0badc0de-0000-4000-8000-000000000001 ro net.ifnames=0 quiet"
    );
}

/// A disk without a bootloader (as `hvbox box build` makes) keeps its kernel's
/// arguments where kernel-install(8) reads them.
#[test]
fn etc_kernel_cmdline_gives_the_arguments_when_no_bootloader_entry_does() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root().file(
        "etc/kernel/cmdline",
        b"# arguments for kernels installed here\nloglevel=6 console=tty0\n  mitigations=off\n",
    );
    let out = dir.path().join("out");
    let boot =
        extract_boot_files(&disk_from(dir.path(), &tree), &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(
        boot.cmdline,
        format!("root=PARTUUID={ROOT_UUID} ro loglevel=6 mitigations=off")
    );

    // A bootloader entry's arguments come first; the file is not added to them.
    tree.file(
        "boot/grub/grub.cfg",
        format!("menuentry 'Debian' {{\n  linux /boot/vmlinuz-{K10} ro quiet\n}}\n").as_bytes(),
    );
    let boot =
        extract_boot_files(&disk_from(dir.path(), &tree), &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.cmdline, format!("root=PARTUUID={ROOT_UUID} ro quiet"));
}

#[test]
fn symlinks_resolve_inside_the_guest_fs() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    // Absolute guest targets that do not exist on the host: resolving them
    // on the host would fail (or worse, read the host's kernel).
    let guest_kernel = "/boot/vmlinuz-5.10.0-99-guestonly-amd64";
    assert!(!Path::new(guest_kernel).exists());
    tree.file(
        &guest_kernel[1..],
        &kernel_image("5.10.0-99-guestonly-amd64"),
    )
    .file(
        "boot/initrd.img-5.10.0-99-guestonly-amd64",
        &initrd_image("5.10.0-99-guestonly-amd64"),
    )
    .symlink("vmlinuz", guest_kernel)
    .symlink("initrd.img", "/boot/initrd.img-5.10.0-99-guestonly-amd64")
    .symlink("etc/fstab", "/etc/fstab.real")
    .file("etc/fstab.real", b"LABEL=rootfs / ext4 defaults 0 1\n")
    .file(
        "boot/grub/grub.cfg",
        b"menuentry 'Linux' {\n  linux /vmlinuz ro quiet\n  initrd /initrd.img\n}\n",
    );
    let part = dir.path().join("part.img");
    tree.mkfs(&part, 32, &[]);
    let disk = dir.path().join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);

    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_extracted(&boot, &out, "5.10.0-99-guestonly-amd64");
    // grub's line had no root=, so it comes from the (symlinked) fstab.
    assert_eq!(boot.cmdline, "root=LABEL=rootfs ro quiet");
}

#[test]
fn debian_vmlinuz_symlink_without_versioned_boot_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.file(
        "opt/k/vmlinuz-6.2.0-1-arm64",
        &contents("kernel 6.2.0-1-arm64"),
    )
    .file(
        "opt/k/initrd.img-6.2.0-1-arm64",
        &contents("initrd 6.2.0-1-arm64"),
    )
    .symlink("vmlinuz", "opt/k/vmlinuz-6.2.0-1-arm64")
    .file("etc/hostname", b"box\n");
    let part = dir.path().join("part.img");
    tree.mkfs(&part, 32, &[]);
    let disk = dir.path().join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);

    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    // No setup header (an arm64 Image.gz): the release comes from the name.
    assert_extracted_kernel(
        &boot,
        &out,
        "6.2.0-1-arm64",
        &contents("kernel 6.2.0-1-arm64"),
    );
    assert_eq!(
        boot.kernel_guest_path,
        "/opt/k/vmlinuz-6.2.0-1-arm64 on partition 1"
    );
    // No fstab: the GPT partition GUID of the partition holding /.
    assert_eq!(boot.cmdline, format!("root=PARTUUID={ROOT_UUID} ro"));
}

#[test]
fn mbr_disk_uses_disk_signature_partuuid() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root();
    fs::remove_file(tree.root.join("etc/fstab")).unwrap();
    let part = dir.path().join("part.img");
    tree.mkfs(&part, 64, &[]);
    let disk = dir.path().join("disk.img");
    make_disk(
        &disk,
        "dos",
        "label-id: 0x0a1b2c3d",
        &[
            (Content::Empty(MIB), "type=82"),
            (Content::Image(&part), "type=83"),
        ],
    );

    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_extracted(&boot, &out, K10);
    assert_eq!(boot.cmdline, "root=PARTUUID=0a1b2c3d-02 ro");
}

#[test]
fn whole_disk_filesystem_without_partition_table() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root();
    fs::remove_file(tree.root.join("etc/fstab")).unwrap();
    let disk = dir.path().join("disk.img");
    let fs_uuid = "1e2d3c4b-5a69-4788-9aab-bccddeeff001";
    tree.mkfs(&disk, 64, &["-U", fs_uuid]);

    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_extracted(&boot, &out, K10);
    assert_eq!(boot.cmdline, format!("root=UUID={fs_uuid} ro"));
}

#[test]
fn separate_boot_partition_next_to_bios_boot_and_esp() {
    let dir = tempfile::tempdir().unwrap();
    let boot_tree = Tree::new(dir.path(), "boot");
    for v in [K9, K10] {
        boot_tree.kernel(".", v);
    }
    let root_tree = Tree::new(dir.path(), "root");
    root_tree.file(
        "etc/fstab",
        b"/dev/vda4 / ext4 defaults 0 1\n/dev/vda3 /boot ext4 defaults 0 2\n",
    );
    let (boot_img, root_img) = (dir.path().join("boot.img"), dir.path().join("root.img"));
    boot_tree.mkfs(&boot_img, 16, &[]);
    root_tree.mkfs(&root_img, 16, &[]);
    let disk = dir.path().join("disk.img");
    make_disk(
        &disk,
        "gpt",
        "",
        &[
            (
                Content::Bytes(vec![0xEB; 4096]),
                "type=21686148-6449-6E6F-744E-656564454649",
            ),
            (
                Content::Empty(MIB),
                "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            ),
            (Content::Image(&boot_img), ""),
            (Content::Image(&root_img), ""),
        ],
    );

    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_extracted(&boot, &out, K10);
    assert_eq!(boot.cmdline, "root=/dev/vda4 ro");
}

#[test]
fn btrfs_root_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake_btrfs = vec![0u8; 2 * MIB as usize];
    fake_btrfs[0x1_0040..0x1_0048].copy_from_slice(b"_BHRfS_M");
    let disk = dir.path().join("disk.img");
    make_disk(
        &disk,
        "gpt",
        "",
        &[
            (
                Content::Empty(MIB),
                "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            ),
            (Content::Bytes(fake_btrfs), ""),
        ],
    );

    let out = dir.path().join("out");
    let err = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedRootFs { fs: "btrfs", partition, .. } if partition == "partition 2"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("btrfs") && msg.contains("partition 2"),
        "{msg}"
    );
    assert!(
        msg.contains("use a box that provides a kernel and initrd"),
        "{msg}"
    );
    assert!(!out.join("vmlinuz").exists());
}

#[test]
fn disk_without_kernel_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.file("boot/grub/grub.cfg", b"# nothing here\n").file(
        "etc/fstab",
        format!("PARTUUID={ROOT_UUID} / ext4 defaults 0 1\n").as_bytes(),
    );
    let part = dir.path().join("part.img");
    tree.mkfs(&part, 16, &[]);
    let disk = dir.path().join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);

    let err =
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::NoKernel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("no kernel found") && msg.contains("partition 1"),
        "{msg}"
    );
}

#[test]
fn disk_without_any_filesystem_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    make_disk(&disk, "gpt", "", &[(Content::Empty(MIB), "")]);
    let err =
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::NoLinuxFilesystem { .. }), "{err:?}");
}
