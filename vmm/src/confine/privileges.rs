//! Started as root (say with sudo), the VMM needs root only to open /dev/kvm, disks
//! and TAP devices. Once they are open it becomes the machine's owner: the owner of
//! the machine folder when that is not root, else the user sudo ran it for.

use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// Who to become: nobody when not running as root; else the machine folder's owner if
/// that is not root; else, with no folder to make sockets in, the user sudo names.
/// A folder root owns keeps the VMM root: a dropped VMM could not make its sockets
/// there.
pub fn target(euid: u32, folder_owner: Option<Ids>, sudo: Option<Ids>) -> Option<Ids> {
    if euid != 0 {
        return None;
    }
    match folder_owner {
        Some(owner) if owner.uid != 0 => Some(owner),
        Some(_) => None,
        None => sudo.filter(|ids| ids.uid != 0),
    }
}

/// SUDO_UID and SUDO_GID, when both are numbers.
pub fn sudo_ids() -> Option<Ids> {
    let var = |name| std::env::var(name).ok()?.parse::<u32>().ok();
    Some(Ids {
        uid: var("SUDO_UID")?,
        gid: var("SUDO_GID")?,
    })
}

/// Becomes `ids` for good: no supplementary groups, then the group, then the user
/// (in that order: a process that is no longer root cannot change its groups), and
/// checks that root cannot be had back.
pub fn drop_to(ids: Ids) -> io::Result<()> {
    let check = |rc: libc::c_int, what: &str| match rc {
        0 => Ok(()),
        _ => Err(io::Error::other(format!(
            "{what}: {}",
            io::Error::last_os_error()
        ))),
    };
    // SAFETY: plain id-setting calls; glibc applies them to every thread.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()), "setgroups([])")?;
        check(
            libc::setresgid(ids.gid, ids.gid, ids.gid),
            &format!("setresgid({})", ids.gid),
        )?;
        check(
            libc::setresuid(ids.uid, ids.uid, ids.uid),
            &format!("setresuid({})", ids.uid),
        )?;
        let now = Ids {
            uid: libc::getuid(),
            gid: libc::getgid(),
        };
        if now != ids || libc::geteuid() != ids.uid || libc::getegid() != ids.gid {
            return Err(io::Error::other(format!(
                "still uid {} gid {} after dropping to uid {} gid {}",
                now.uid, now.gid, ids.uid, ids.gid
            )));
        }
        if ids.uid != 0 && libc::setuid(0) == 0 {
            return Err(io::Error::other("root could be had back after the drop"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Ids = Ids {
        uid: 1000,
        gid: 1000,
    };
    const ROOT: Ids = Ids { uid: 0, gid: 0 };
    const BOB: Ids = Ids {
        uid: 1001,
        gid: 100,
    };

    #[test]
    fn only_root_drops_and_the_folder_owner_comes_first() {
        assert_eq!(target(1000, Some(ALICE), Some(BOB)), None);
        assert_eq!(target(0, Some(ALICE), Some(BOB)), Some(ALICE));
        assert_eq!(target(0, Some(ALICE), None), Some(ALICE));
        // sudo's user only when there is no folder to make sockets in.
        assert_eq!(target(0, None, Some(BOB)), Some(BOB));
        assert_eq!(target(0, Some(ROOT), Some(BOB)), None);
        assert_eq!(target(0, None, Some(ROOT)), None);
        assert_eq!(target(0, None, None), None);
    }
}
