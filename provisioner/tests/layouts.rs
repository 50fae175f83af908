//! Distro disk layouts: Ubuntu cloud images with a /boot partition, and
//! Fedora-style Boot Loader Specification entries.
mod common;

use std::fs;

use common::*;
use hvbox_provisioner::{extract_boot_files, installed_kernels, Error, KernelSelection};

const DEFAULT: &KernelSelection = &KernelSelection::Default;
const BIOS_BOOT: &str = "type=21686148-6449-6E6F-744E-656564454649";
const ESP: &str = "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

const U49: &str = "6.8.0-49-generic";
const U48: &str = "6.8.0-48-generic";

/// Ubuntu 23.10+ cloud image: p1 root `cloudimg-rootfs`, p14 BIOS boot,
/// p15 ESP, p16 ext4 /boot labelled `BOOT` with `vmlinuz`/`initrd.img`
/// symlinks at its top level and grub.cfg in /grub.
#[test]
fn ubuntu_cloud_image_with_boot_partition() {
    let dir = tempfile::tempdir().unwrap();
    let boot = Tree::new(dir.path(), "boot");
    for v in [U48, U49] {
        boot.kernel(".", v);
    }
    boot.symlink("vmlinuz", &format!("vmlinuz-{U49}"))
        .symlink("initrd.img", &format!("initrd.img-{U49}"))
        .symlink("vmlinuz.old", &format!("vmlinuz-{U48}"))
        .symlink("initrd.img.old", &format!("initrd.img-{U48}"))
        .file(
            "grub/grub.cfg",
            format!(
                "set default=\"0\"\n\
                 menuentry 'Ubuntu' --class ubuntu --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-1234' {{\n\
                 \trecordfail\n\tload_video\n\tgfxmode $linux_gfx_mode\n\tinsmod gzio\n\
                 \tif [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi\n\
                 \tinsmod part_gpt\n\tinsmod ext2\n\
                 \tsearch --no-floppy --fs-uuid --set=root 1234\n\
                 \tlinux\t/vmlinuz-{U49} root=LABEL=cloudimg-rootfs ro  console=tty1 console=ttyS0\n\
                 \tinitrd\t/initrd.img-{U49}\n}}\n\
                 submenu 'Advanced options for Ubuntu' $menuentry_id_option 'gnulinux-advanced-1234' {{\n\
                 \tmenuentry 'Ubuntu, with Linux {U48}' --class ubuntu $menuentry_id_option 'gnulinux-{U48}-advanced-1234' {{\n\
                 \t\tlinux\t/vmlinuz-{U48} root=LABEL=cloudimg-rootfs ro  console=tty1 console=ttyS0\n\
                 \t\tinitrd\t/initrd.img-{U48}\n\t}}\n}}\n"
            )
            .as_bytes(),
        );
    let root = Tree::new(dir.path(), "root");
    root.file(
        "etc/fstab",
        b"LABEL=cloudimg-rootfs\t/\t ext4\tdiscard,commit=30,errors=remount-ro\t0 1\n\
          LABEL=BOOT\t/boot\text4\tdefaults\t0 2\n\
          LABEL=UEFI\t/boot/efi\tvfat\tumask=0077\t0 1\n",
    )
    .file("boot/efi/.keep", b"");
    let (boot_img, root_img) = (dir.path().join("boot.img"), dir.path().join("root.img"));
    boot.mkfs(&boot_img, 16, &["-L", "BOOT"]);
    root.mkfs(&root_img, 16, &["-L", "cloudimg-rootfs"]);
    let disk = dir.path().join("disk.img");
    make_disk_numbered(
        &disk,
        "gpt",
        "",
        &[
            (1, Content::Image(&root_img), ""),
            (14, Content::Bytes(vec![0xEB; 4096]), BIOS_BOOT),
            (15, Content::Empty(MIB), ESP),
            (16, Content::Image(&boot_img), ""),
        ],
    );

    assert_eq!(installed_kernels(&disk).unwrap(), [U49, U48]);
    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, U49);
    assert!(fs::read(&boot.kernel).unwrap() == kernel_image(U49));
    assert!(fs::read(boot.initrd.as_ref().unwrap()).unwrap() == initrd_image(U49));
    assert_eq!(boot.cmdline, "root=LABEL=cloudimg-rootfs ro");
    assert_eq!(
        boot.kernel_guest_path,
        format!("/vmlinuz-{U49} on partition 16 (BOOT)")
    );
    assert_eq!(
        boot.initrd_guest_path.as_deref(),
        Some(format!("/initrd.img-{U49} on partition 16 (BOOT)").as_str())
    );

    let old = extract_boot_files(
        &disk,
        &out,
        &KernelSelection::Version(U48.into()),
        GUEST_MEMORY,
    )
    .unwrap();
    assert!(fs::read(&old.kernel).unwrap() == kernel_image(U48));
    assert!(fs::read(old.initrd.unwrap()).unwrap() == initrd_image(U48));
    assert_eq!(old.cmdline, "root=LABEL=cloudimg-rootfs ro");
}

const F9: &str = "6.5.9-300.fc39.x86_64";
const F10: &str = "6.5.10-200.fc39.x86_64";
const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

/// A BLS entry as Fedora's kernel-install writes it. `prefix` is where the
/// boot files are relative to the entry's filesystem ("" or "/boot").
fn bls_entry(tree: &Tree, dir: &str, prefix: &str, version: &str, options: &str) {
    tree.file(
        &format!("{dir}/loader/entries/{MACHINE_ID}-{version}.conf"),
        format!(
            "title Fedora Linux ({version}) 39 (Cloud Edition)\n\
             version {version}\n\
             linux {prefix}/vmlinuz-{version}\n\
             initrd {prefix}/initramfs-{version}.img\n\
             options {options}\n\
             grub_users $grub_users\n\
             grub_arg --unrestricted\n\
             grub_class fedora\n"
        )
        .as_bytes(),
    )
    .file(&format!("{dir}/vmlinuz-{version}"), &kernel_image(version))
    .file(
        &format!("{dir}/initramfs-{version}.img"),
        &initrd_image(version),
    );
}

/// Fedora Cloud: ext4 /boot partition with BLS entries, btrfs root. grubenv
/// `saved_entry` picks the older kernel; the command line is the entry's
/// `options` without `console=`.
#[test]
fn fedora_bls_on_boot_partition_with_saved_entry() {
    let dir = tempfile::tempdir().unwrap();
    let boot = Tree::new(dir.path(), "boot");
    let opts = "root=UUID=5e1f0c3a-0000-4000-8000-00000000000f ro rootflags=subvol=root no_timer_check console=tty1 console=ttyS0,115200n8";
    for v in [F9, F10] {
        bls_entry(&boot, ".", "", v, opts);
    }
    // The rescue kernel is a copy of a real one: same header release.
    boot.file(
        &format!("vmlinuz-0-rescue-{MACHINE_ID}"),
        &kernel_image_with(F9, "rescue"),
    )
    .file(
        &format!("initramfs-0-rescue-{MACHINE_ID}.img"),
        b"rescue initramfs",
    )
    .file(
        &format!("loader/entries/{MACHINE_ID}-0-rescue.conf"),
        format!(
            "title Fedora Linux (0-rescue-{MACHINE_ID}) 39\nversion 0-rescue-{MACHINE_ID}\n\
             linux /vmlinuz-0-rescue-{MACHINE_ID}\ninitrd /initramfs-0-rescue-{MACHINE_ID}.img\n\
             options {opts}\n"
        )
        .as_bytes(),
    )
    .file(
        "grub2/grubenv",
        format!(
            "# GRUB Environment Block\nsaved_entry={MACHINE_ID}-{F9}\nboot_success=0\n{}",
            "#".repeat(900)
        )
        .as_bytes(),
    )
    .file(
        "grub2/grub.cfg",
        b"set default=\"${saved_entry}\"\ninsmod blscfg\nblscfg\n\
          menuentry 'UEFI Firmware Settings' $menuentry_id_option 'uefi-firmware' {\n\
          \tfwsetup\n}\n",
    );
    let boot_img = dir.path().join("boot.img");
    boot.mkfs(&boot_img, 16, &["-L", "boot"]);
    let mut btrfs = vec![0u8; 2 * MIB as usize];
    btrfs[0x1_0040..0x1_0048].copy_from_slice(b"_BHRfS_M");
    let disk = dir.path().join("disk.img");
    make_disk(
        &disk,
        "gpt",
        "",
        &[
            (Content::Bytes(vec![0xEB; 4096]), BIOS_BOOT),
            (Content::Empty(MIB), ESP),
            (Content::Image(&boot_img), ""),
            (Content::Bytes(btrfs), ""),
        ],
    );

    assert_eq!(installed_kernels(&disk).unwrap(), [F10, F9]);
    let out = dir.path().join("out");
    let b = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(b.kernel_version, F9);
    assert!(
        fs::read(&b.kernel).unwrap() == kernel_image(F9),
        "not the real -9"
    );
    assert!(fs::read(b.initrd.as_ref().unwrap()).unwrap() == initrd_image(F9));
    assert_eq!(
        b.cmdline,
        "root=UUID=5e1f0c3a-0000-4000-8000-00000000000f ro rootflags=subvol=root no_timer_check"
    );
    assert_eq!(
        b.kernel_guest_path,
        format!("/vmlinuz-{F9} on partition 3 (boot)")
    );

    let newest = extract_boot_files(
        &disk,
        &out,
        &KernelSelection::Version(F10.into()),
        GUEST_MEMORY,
    )
    .unwrap();
    assert!(fs::read(&newest.kernel).unwrap() == kernel_image(F10));
    assert!(fs::read(newest.initrd.unwrap()).unwrap() == initrd_image(F10));
}

/// BLS entries in /boot of an ext4 root, paths prefixed with /boot, no
/// saved_entry: the highest version (6.5.10 over 6.5.9) is the default.
/// `$kernelopts` comes from grubenv; several initrd lines are concatenated.
#[test]
fn fedora_bls_in_root_fs_defaults_to_highest_version() {
    let dir = tempfile::tempdir().unwrap();
    let root = Tree::new(dir.path(), "root");
    for v in [F9, F10] {
        bls_entry(&root, "boot", "/boot", v, "$kernelopts rhgb");
    }
    // Microcode before the initramfs, as on RHEL with early microcode.
    let entry = format!("boot/loader/entries/{MACHINE_ID}-{F10}.conf");
    let text = fs::read_to_string(root.root.join(&entry)).unwrap();
    root.file(
        &entry,
        text.replace(
            "initrd /boot/initramfs",
            "initrd /boot/ucode.img\ninitrd /boot/initramfs",
        )
        .as_bytes(),
    )
    .file("boot/ucode.img", b"MICROCODE")
    .file(
        "boot/grub2/grubenv",
        format!(
            "# GRUB Environment Block\nkernelopts=root=LABEL=fedora ro console=ttyS0 quiet\n{}",
            "#".repeat(900)
        )
        .as_bytes(),
    )
    .file("etc/fstab", b"LABEL=fedora / ext4 defaults 0 1\n");
    let part = dir.path().join("part.img");
    root.mkfs(&part, 32, &[]);
    let disk = dir.path().join("disk.img");
    gpt_disk(&disk, &part, ROOT_UUID);

    let b = extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(b.kernel_version, F10);
    let mut initrd = b"MICROCODE".to_vec();
    initrd.extend(initrd_image(F10));
    assert!(
        fs::read(b.initrd.unwrap()).unwrap() == initrd,
        "initrd is not ucode + initramfs"
    );
    assert_eq!(
        b.initrd_guest_path.as_deref(),
        Some(format!("/boot/ucode.img + /boot/initramfs-{F10}.img on partition 1").as_str())
    );
    assert_eq!(b.cmdline, "root=LABEL=fedora ro quiet rhgb");
}

/// Root and /boot that hvbox cannot read keep the clear message.
#[test]
fn xfs_root_without_readable_boot_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut xfs = vec![0u8; MIB as usize];
    xfs[..4].copy_from_slice(b"XFSB");
    let disk = dir.path().join("disk.img");
    make_disk(
        &disk,
        "gpt",
        "",
        &[(Content::Empty(MIB), ESP), (Content::Bytes(xfs), "")],
    );
    for err in [
        extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap_err(),
        installed_kernels(&disk).unwrap_err(),
    ] {
        assert!(
            matches!(err, Error::UnsupportedRootFs { fs: "xfs", .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("xfs") && msg.contains("partition 2"), "{msg}");
        assert!(msg.contains(&disk.display().to_string()), "{msg}");
        assert!(
            msg.contains("use a box that provides a kernel and initrd"),
            "{msg}"
        );
    }
}
