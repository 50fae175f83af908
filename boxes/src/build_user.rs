//! Who builds a box, and with what: root builds directly; a normal user builds in a
//! user namespace (mmdebstrap's unshare mode), which maps a Debian system's 65536
//! ids onto the user's subordinate ids, handed out by newuidmap and newgidmap from
//! /etc/subuid and /etc/subgid.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// The ids a Debian base system uses: root, the system users, nobody at 65534.
const NEEDED_IDS: u64 = 65536;

/// A user as the password database has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// The account of `uid`, if the password database has one.
pub fn account(uid: u32) -> Option<Account> {
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes only into
    // it and into `buf`, whose length it is told.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, as above.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success the name and home point into `buf` as NUL-terminated strings.
    let text = |p: *const libc::c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    Some(Account {
        name: text(pw.pw_name),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        home: PathBuf::from(text(pw.pw_dir)),
    })
}

/// Why this user cannot build in a user namespace, or `None` when nothing stands in
/// the way that can be seen before trying.
pub fn why_no_user_namespace(user: &Account) -> Option<String> {
    for tool in ["newuidmap", "newgidmap"] {
        if !crate::build::tool_found(tool) {
            return Some(format!("`{tool}` is missing (Debian package `uidmap`)"));
        }
    }
    let sysctl = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|t| t.trim().to_string())
    };
    if sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some(
            "this kernel forbids user namespaces to normal users (kernel.unprivileged_userns_clone = 0)"
                .into(),
        );
    }
    if sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("this kernel allows no user namespaces (user.max_user_namespaces = 0)".into());
    }
    for (file, kind, flag) in [
        ("/etc/subuid", "uids", "--add-subuids"),
        ("/etc/subgid", "gids", "--add-subgids"),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let have = largest_range(&text, user);
        if have < NEEDED_IDS {
            return Some(format!(
                "{file} gives {} {have} subordinate {kind} in one range, and a Debian system needs {NEEDED_IDS} (`sudo usermod {flag} 100000-165535 {}` gives them)",
                user.name, user.name
            ));
        }
    }
    None
}

/// The largest range that /etc/subuid or /etc/subgid (`text`) gives `user`, by name
/// or by number: the namespace's ids must lie in one.
fn largest_range(text: &str, user: &Account) -> u64 {
    let uid = user.uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let who = fields.next()?;
            let _start: u64 = fields.next()?.parse().ok()?;
            let count: u64 = fields.next()?.parse().ok()?;
            (who == user.name || who == uid).then_some(count)
        })
        .max()
        .unwrap_or(0)
}

/// The user `sudo` ran hvbox for (SUDO_UID), when hvbox runs as root through sudo
/// for someone else.
pub fn invoking_user() -> Option<Account> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let uid: u32 = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    (uid != 0).then(|| account(uid)).flatten()
}

/// Where a user's own hvbox keeps its data: sudo leaves neither the user's
/// HVBOX_DATA_DIR nor XDG_DATA_HOME, so the default under their home.
pub fn data_dir_of(user: &Account) -> PathBuf {
    user.home.join(".local/share/hvbox")
}

/// Hand a box folder root built for `user` to them: the folder and all in it, its
/// lock file, and the folders above it inside their home that root made on the way.
pub fn give_box_to(user: &Account, out_dir: &Path) -> std::io::Result<()> {
    chown_tree(out_dir, user)?;
    let lock = crate::build::lock_file_of(out_dir);
    if lock.exists() {
        std::os::unix::fs::lchown(&lock, Some(user.uid), Some(user.gid))?;
    }
    let mut dir = out_dir.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(&user.home) && *d != user.home) {
        let meta = std::fs::symlink_metadata(d)?;
        if std::os::unix::fs::MetadataExt::uid(&meta) == 0 {
            std::os::unix::fs::lchown(d, Some(user.uid), Some(user.gid))?;
        }
        dir = d.parent();
    }
    Ok(())
}

fn chown_tree(path: &Path, user: &Account) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Account {
        Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/alice".into(),
        }
    }

    #[test]
    fn the_largest_range_of_the_user_counts_by_name_or_number() {
        let text = "bob:100000:65536\nalice:165536:1000\n1000:300000:65536\n# note\nalice:x:1\n";
        assert_eq!(largest_range(text, &alice()), 65536);
        assert_eq!(largest_range("alice:165536:1000\n", &alice()), 1000);
        assert_eq!(largest_range("bob:100000:65536\n", &alice()), 0);
        assert_eq!(largest_range("", &alice()), 0);
    }

    #[test]
    fn a_user_store_is_under_their_home() {
        assert_eq!(
            data_dir_of(&alice()),
            PathBuf::from("/home/alice/.local/share/hvbox")
        );
    }

    #[test]
    fn root_is_in_the_password_database() {
        let root = account(0).expect("root's account");
        assert_eq!((root.name.as_str(), root.uid), ("root", 0));
    }
}
