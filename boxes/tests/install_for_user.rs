//! A box built under sudo reaches the invoking user's store through a process that
//! runs as them: whole, sparse, theirs, and never through a path they could point
//! at root's files.

use hvbox_boxes::build_user::{install_as, Account};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn root_only() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        hvbox_test_support::skip("copying as another user needs root");
        return false;
    }
    true
}

fn nobody(home: &Path) -> Account {
    Account {
        name: "nobody".into(),
        uid: 65534,
        gid: 65534,
        home: home.to_path_buf(),
    }
}

/// A box in a folder only root can read, as root's store is: a sparse disk with
/// data at both ends, and its sums.
fn built_box(root_dir: &Path) -> std::path::PathBuf {
    let built = root_dir.join("built");
    std::fs::create_dir_all(&built).unwrap();
    std::fs::set_permissions(root_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let disk = std::fs::File::create(built.join("disk.raw")).unwrap();
    disk.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    disk.write_all_at(b"start", 0).unwrap();
    disk.write_all_at(b"end", (64 << 20) - 3).unwrap();
    std::fs::write(built.join("SHA512SUMS"), "abc  disk.raw\n").unwrap();
    built
}

#[test]
fn the_box_lands_whole_sparse_and_owned_by_the_user() {
    if !root_only() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let built = built_box(&tmp.path().join("root-store"));
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dest = home.join(".local/share/hvbox/boxes/mine");
    // An older box there is replaced.
    let user = nobody(&home);
    for _ in 0..2 {
        install_as(&user, &built, &["disk.raw", "SHA512SUMS"], &dest).unwrap();
    }
    let disk = std::fs::metadata(dest.join("disk.raw")).unwrap();
    assert_eq!(disk.len(), 64 << 20);
    assert_eq!((disk.uid(), disk.gid()), (65534, 65534));
    assert!(
        disk.blocks() * 512 < 1 << 20,
        "not sparse: {} blocks",
        disk.blocks()
    );
    let bytes = std::fs::read(dest.join("disk.raw")).unwrap();
    assert_eq!(&bytes[..5], b"start");
    assert_eq!(&bytes[bytes.len() - 3..], b"end");
    assert_eq!(
        std::fs::read_to_string(dest.join("SHA512SUMS")).unwrap(),
        "abc  disk.raw\n"
    );
    for dir in [home.join(".local"), dest.clone()] {
        assert_eq!(
            std::fs::metadata(&dir).unwrap().uid(),
            65534,
            "{}",
            dir.display()
        );
    }
    // Nothing of the copy is left beside it.
    let names: Vec<String> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["mine"]);
}

#[test]
fn a_store_that_points_at_roots_files_gets_nothing_from_root() {
    if !root_only() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let built = built_box(&tmp.path().join("root-store"));
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A folder of root's, and the user's boxes folder made a link to it.
    let roots = tmp.path().join("roots-folder");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::write(roots.join("keep"), "root's\n").unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".local/share/hvbox")).unwrap();
    std::os::unix::fs::symlink(&roots, home.join(".local/share/hvbox/boxes")).unwrap();
    for dir in [
        &home,
        &home.join(".local"),
        &home.join(".local/share"),
        &home.join(".local/share/hvbox"),
    ] {
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    }
    let dest = home.join(".local/share/hvbox/boxes/mine");
    let err = install_as(&nobody(&home), &built, &["disk.raw", "SHA512SUMS"], &dest).unwrap_err();
    assert!(err.to_string().contains("Permission denied"), "{err}");
    let names: Vec<String> = std::fs::read_dir(&roots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["keep"]);
    assert_eq!(std::fs::metadata(&roots).unwrap().uid(), 0);
}
