//! Which kernel boots, how it is identified, and which initrd goes with it.
mod common;

use std::fs;

use common::*;
use hvbox_provisioner::{boot_menu, extract_boot_files, installed_kernels, Error, KernelSelection};

const DEFAULT: &KernelSelection = &KernelSelection::Default;

fn version(v: &str) -> KernelSelection {
    KernelSelection::Version(v.to_string())
}

#[test]
fn newest_by_version_order_not_string_order() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    // As strings "6.1.0-9" > "6.1.0-2" > "6.1.0-10"; by version -10 wins.
    for v in ["6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-2-amd64"] {
        tree.kernel("boot", v);
    }
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);

    assert_eq!(
        installed_kernels(&disk).unwrap(),
        ["6.1.0-10-amd64", "6.1.0-9-amd64", "6.1.0-2-amd64"]
    );
    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, "6.1.0-10-amd64");
    assert!(fs::read(&boot.kernel).unwrap() == kernel_image("6.1.0-10-amd64"));
}

#[test]
fn version_selection_picks_that_kernel_its_initrd_and_the_default_args() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root().file(
        "boot/grub/grub.cfg",
        format!(
            "menuentry 'Debian' {{\n\
             \tlinux /boot/vmlinuz-{K10} root=PARTUUID={ROOT_UUID} ro console=ttyS0 quiet\n\
             \tinitrd /boot/initrd.img-{K10}\n}}\n"
        )
        .as_bytes(),
    );
    let disk = disk_from(dir.path(), &tree);
    let out = dir.path().join("out");

    let boot = extract_boot_files(&disk, &out, &version(K9), GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, K9);
    assert!(fs::read(&boot.kernel).unwrap() == kernel_image(K9));
    assert!(fs::read(boot.initrd.unwrap()).unwrap() == initrd_image(K9));
    // No grub entry for K9: the default entry's arguments apply.
    assert_eq!(boot.cmdline, format!("root=PARTUUID={ROOT_UUID} ro quiet"));

    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, K10);
}

#[test]
fn unknown_version_is_an_error_listing_installed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let disk = debian_disk(dir.path());
    let out = dir.path().join("out");
    let err =
        extract_boot_files(&disk, &out, &version("5.10.0-30-amd64"), GUEST_MEMORY).unwrap_err();
    assert!(
        matches!(err, Error::KernelVersionNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("5.10.0-30-amd64"), "{msg}");
    assert!(msg.contains(&disk.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("installed kernels: {K10}, {K9}")),
        "{msg}"
    );
    assert!(!out.join("vmlinuz").exists());
}

#[test]
fn header_release_wins_over_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    // A file named for -10 that really is -9 (say, copied over by hand).
    tree.file(
        &format!("boot/vmlinuz-{K10}"),
        &kernel_image_with(K9, "renamed"),
    )
    .file(&format!("boot/initrd.img-{K10}"), &initrd_image(K10))
    .file(&format!("boot/initrd.img-{K9}"), &initrd_image(K9));
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);

    assert_eq!(installed_kernels(&disk).unwrap(), [K9]);
    let out = dir.path().join("out");
    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, K9);
    assert!(fs::read(&boot.kernel).unwrap() == kernel_image_with(K9, "renamed"));
    // The initrd for what the kernel is, not for what it is called.
    assert!(fs::read(boot.initrd.unwrap()).unwrap() == initrd_image(K9));
    assert_eq!(
        boot.kernel_guest_path,
        format!("/boot/vmlinuz-{K10} on partition 1")
    );
    let err = extract_boot_files(&disk, &out, &version(K10), GUEST_MEMORY).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("installed kernels: {K9}")),
        "{err}"
    );
}

#[test]
fn kernel_without_its_initrd_is_an_error_when_others_have_one() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root();
    fs::remove_file(tree.root.join(format!("boot/initrd.img-{K10}"))).unwrap();
    let disk = disk_from(dir.path(), &tree);
    let out = dir.path().join("out");

    let err = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap_err();
    assert!(matches!(err, Error::NoMatchingInitrd { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("kernel /boot/vmlinuz-{K10} on partition 1")),
        "{msg}"
    );
    assert!(msg.contains(&format!("initrd.img-{K10}")), "{msg}");
    assert!(msg.contains(&format!("/boot/initrd.img-{K9}")), "{msg}");
    assert!(msg.contains(&disk.display().to_string()), "{msg}");
    assert!(!out.join("vmlinuz").exists());

    // The other kernel still boots, with its own initrd.
    let boot = extract_boot_files(&disk, &out, &version(K9), GUEST_MEMORY).unwrap();
    assert!(fs::read(boot.initrd.unwrap()).unwrap() == initrd_image(K9));
}

#[test]
fn no_initrd_at_all_boots_without_one_and_removes_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.file(&format!("boot/vmlinuz-{K9}"), &kernel_image(K9));
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("initrd.img"), b"stale").unwrap();

    let boot = extract_boot_files(&disk, &out, DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, K9);
    assert_eq!(boot.initrd, None);
    assert_eq!(boot.initrd_guest_path, None);
    assert!(!out.join("initrd.img").exists());
    assert_eq!(boot.cmdline, format!("root=PARTUUID={ROOT_UUID} ro"));
}

#[test]
fn arch_style_names_pair_by_file_name_tag() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    let release = "6.6.1-arch1-1";
    tree.file("boot/vmlinuz-linux", &kernel_image(release))
        .file("boot/initramfs-linux.img", &initrd_image(release))
        .file("boot/initramfs-linux-fallback.img", b"fallback");
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);

    let boot = extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, release);
    assert!(fs::read(boot.initrd.unwrap()).unwrap() == initrd_image(release));
}

#[test]
fn grubenv_saved_entry_selects_a_submenu_entry() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root()
        .file(
            "boot/grub/grubenv",
            format!("# GRUB Environment Block\nsaved_entry=gnulinux-advanced>gnulinux-{K9}\n{}", "#".repeat(900))
                .as_bytes(),
        )
        .file(
            "boot/grub/grub.cfg",
            format!(
                "if [ \"${{next_entry}}\" ] ; then\n set default=\"${{next_entry}}\"\nelse\n set default=\"${{saved_entry}}\"\nfi\n\
                 menuentry 'Debian' $menuentry_id_option 'gnulinux-simple' {{\n\
                 \tlinux /boot/vmlinuz-{K10} root=PARTUUID={ROOT_UUID} ro\n\
                 \tinitrd /boot/initrd.img-{K10}\n}}\n\
                 submenu 'Advanced options' $menuentry_id_option 'gnulinux-advanced' {{\n\
                 \tmenuentry 'Debian, with Linux {K9}' $menuentry_id_option 'gnulinux-{K9}' {{\n\
                 \t\tlinux /boot/vmlinuz-{K9} root=PARTUUID={ROOT_UUID} ro nomodeset\n\
                 \t\tinitrd /boot/initrd.img-{K9}\n\t}}\n}}\n"
            )
            .as_bytes(),
        );
    let disk = disk_from(dir.path(), &tree);
    let boot = extract_boot_files(&disk, &dir.path().join("out"), DEFAULT, GUEST_MEMORY).unwrap();
    assert_eq!(boot.kernel_version, K9);
    assert_eq!(
        boot.cmdline,
        format!("root=PARTUUID={ROOT_UUID} ro nomodeset")
    );
}

/// A static grub.cfg (nothing in the guest regenerates it) keeps naming the old
/// kernel after a newer one is installed: the menu says so, and which file decided.
#[test]
fn boot_menu_names_the_file_that_decides_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    tree.debian_root().file(
        "boot/grub/grub.cfg",
        format!(
            "menuentry 'Debian' {{\n\
             \tlinux /boot/vmlinuz-{K9} root=PARTUUID={ROOT_UUID} ro\n\
             \tinitrd /boot/initrd.img-{K9}\n}}\n"
        )
        .as_bytes(),
    );
    let disk = disk_from(dir.path(), &tree);
    let menu = boot_menu(&disk).unwrap();
    assert_eq!(menu.default_version, K9);
    assert_eq!(
        menu.decided_by.as_deref(),
        Some("/boot/grub/grub.cfg on partition 1")
    );
    let names: Vec<(&str, &str)> = menu
        .kernels
        .iter()
        .map(|k| (k.version.as_str(), k.file_name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (K10, format!("vmlinuz-{K10}").as_str()),
            (K9, format!("vmlinuz-{K9}").as_str())
        ]
    );
}

/// Without a bootloader configuration the newest kernel is the default, and
/// nothing decided it but its version.
#[test]
fn boot_menu_without_a_bootloader_defaults_to_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let tree = Tree::new(dir.path(), "root");
    for v in [K9, K10] {
        tree.kernel("boot", v);
    }
    fstab(&tree);
    let disk = disk_from(dir.path(), &tree);
    let menu = boot_menu(&disk).unwrap();
    assert_eq!(menu.default_version, K10);
    assert_eq!(menu.decided_by, None);
}
