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
    if sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some(
            "AppArmor lets no program without a profile of its own make user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)"
                .into(),
        );
    }
    let uids = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let gids = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
    for (file, text, kind) in [
        ("/etc/subuid", &uids, "uids"),
        ("/etc/subgid", &gids, "gids"),
    ] {
        let have = largest_range(text, user);
        if have < NEEDED_IDS {
            // A range no other user has: overlapping ones would let each user's
            // namespaces reach the other's files.
            let start = free_start(&uids).max(free_start(&gids));
            let range = format!("{start}-{}", start + NEEDED_IDS - 1);
            return Some(format!(
                "{file} gives {} {have} subordinate {kind} in one range, and a Debian system needs {NEEDED_IDS} (`sudo usermod --add-subuids {range} --add-subgids {range} {}` gives them a range no one else has)",
                user.name, user.name
            ));
        }
    }
    None
}

/// The first id past every range in /etc/subuid or /etc/subgid (`text`), and never
/// below 100000, where Debian starts them.
fn free_start(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':').skip(1);
            let start: u64 = fields.next()?.parse().ok()?;
            let count: u64 = fields.next()?.parse().ok()?;
            Some(start + count)
        })
        .fold(100_000, u64::max)
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

/// Copy the box root built in `built` (files `files`) into `dest` in `user`'s
/// store, from a process running as that user: the kernel's own checks decide what
/// it may write, so no path of theirs (a symlink, say) can make root write or chown
/// anything. The files go over as open descriptors, as root's store is not theirs
/// to read. A box already at `dest` is replaced only once the copy is whole.
pub fn install_as(
    user: &Account,
    built: &Path,
    files: &[&str],
    dest: &Path,
) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    // Above the numbers the child gets them at (3, 4, …), so no dup2 clobbers one.
    let mut sources = Vec::new();
    for name in files {
        let file = std::fs::File::open(built.join(name))?;
        // SAFETY: fcntl duplicates an open descriptor; the new one is owned below.
        let high = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
        if high < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `high` is a fresh descriptor that nothing else owns.
        sources.push(unsafe { OwnedFd::from_raw_fd(high) });
    }
    let targets: Vec<(i32, i32)> = sources
        .iter()
        .enumerate()
        .map(|(i, fd)| (fd.as_raw_fd(), 3 + i as i32))
        .collect();
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", INSTALL_SCRIPT, "sh"])
        .arg(dest)
        .args(files)
        .current_dir("/")
        .env("HOME", &user.home)
        .uid(user.uid)
        .gid(user.gid);
    // SAFETY: only dup2 between fork and exec, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &targets {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output()?;
    drop(sources);
    if out.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "copying the box into {} as {} failed ({}): {}",
        dest.display(),
        user.name,
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Run as the user: $1 the box folder, then the file names, whose contents are on
/// descriptors 3, 4, …; the new folder replaces the old in two renames.
const INSTALL_SCRIPT: &str = r#"set -eu
dest=$1
shift
parent=$(dirname -- "$dest")
name=$(basename -- "$dest")
mkdir -p -- "$parent"
new=$parent/.$name.new-$$
old=$parent/.$name.old-$$
trap 'rm -rf -- "$new"' EXIT
mkdir -- "$new"
fd=3
for file in "$@"; do
  cp --sparse=always -- "/dev/fd/$fd" "$new/$file"
  fd=$((fd + 1))
done
if [ -e "$dest" ]; then mv -T -- "$dest" "$old"; fi
mv -T -- "$new" "$dest"
rm -rf -- "$old"
"#;

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
    fn a_free_range_starts_past_every_other() {
        assert_eq!(free_start(""), 100_000);
        assert_eq!(
            free_start("bob:100000:65536\nalice:165536:65536\n"),
            231_072
        );
        assert_eq!(free_start("x:5:10\nbad line\n"), 100_000);
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
