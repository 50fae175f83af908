//! virtio-fs shares the guest mounts at every boot: a `bootcmd` (cloud-init runs it
//! at every boot, not only the first) keeps hvbox's block of `/etc/fstab` equal to
//! the seed's list, with `nofail`, and mounts what is not mounted yet. The fstab
//! entries bring the mounts back on later boots before cloud-init runs; a changed
//! list in a rewritten seed takes effect at the next boot.

use crate::Error;

/// One virtio-fs share and where the guest mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtiofsMount {
    /// The device's tag (`mount -t virtiofs TAG DIR`).
    pub tag: String,
    /// Absolute path in the guest.
    pub path: String,
    pub read_only: bool,
}

/// Ends every fstab line hvbox owns, so the next boot can replace them.
const MARK: &str = "# hvbox mount";

/// `nofail`: a share that cannot be mounted leaves the boot going (hvbox then says
/// which). The ordering: systemd makes a mount's folder before mounting, and at boot
/// systemd-tmpfiles-setup empties `/tmp`; a nofail mount is not ordered before it, so
/// a share under `/tmp` lost its fresh folder between the two and failed with "mount
/// point does not exist" (seen at restarts on a loaded host).
const OPTIONS: &str = "defaults,nofail,x-systemd.after=systemd-tmpfiles-setup.service";

/// The virtio-fs config field holds the tag: 36 bytes.
const MAX_TAG: usize = 36;

/// The shell script (run as root with `sh -c`) that brings fstab and the mounts in
/// line with `mounts`. (`printf`, not `echo`: dash's echo would turn fstab's `\040`
/// back into a space.)
pub fn boot_script(mounts: &[VirtiofsMount]) -> String {
    let mut script = format!(
        "fstab=/etc/fstab; sed -i '/ {MARK}$/d' \"$fstab\"; modprobe virtiofs 2>/dev/null || true"
    );
    for m in mounts {
        let options = if m.read_only {
            format!("{OPTIONS},ro")
        } else {
            OPTIONS.to_string()
        };
        let line = format!(
            "{} {} virtiofs {options} 0 0 {MARK}",
            m.tag,
            fstab_field(&m.path)
        );
        let dir = quote(&m.path);
        script.push_str(&format!(
            "; printf '%s\\n' {} >> \"$fstab\"; mkdir -p {dir}; mountpoint -q {dir} || mount {dir} || echo 'hvbox: cannot mount virtio-fs {} at '{dir} >&2",
            quote(&line),
            m.tag
        ));
    }
    script
}

/// fstab separates fields by blanks: a space or tab in a path is written in octal.
fn fstab_field(path: &str) -> String {
    path.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

/// `s` as one word for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Tags and paths that fit fstab and the device.
pub(crate) fn validate(mounts: &[VirtiofsMount]) -> Result<(), Error> {
    let invalid = |m: String| Err(Error::InvalidConfig(m));
    for (i, m) in mounts.iter().enumerate() {
        let tag_ok = !m.tag.is_empty()
            && m.tag.len() <= MAX_TAG
            && m.tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !tag_ok {
            return invalid(format!(
                "mounts[{i}].tag must be 1 to {MAX_TAG} letters, digits, `-`, `_` or `.`, got {:?}",
                m.tag
            ));
        }
        if !m.path.starts_with('/') || m.path.chars().any(|c| c.is_control()) {
            return invalid(format!(
                "mounts[{i}].path must be an absolute path without control characters, got {:?}",
                m.path
            ));
        }
        if mounts[..i]
            .iter()
            .any(|o| o.tag == m.tag || o.path == m.path)
        {
            return invalid(format!(
                "mounts[{i}] repeats the tag or path of an earlier mount"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn mount(tag: &str, path: &str, read_only: bool) -> VirtiofsMount {
        VirtiofsMount {
            tag: tag.into(),
            path: path.into(),
            read_only,
        }
    }

    /// The script, run against a scratch fstab with `mount`, `mountpoint` and
    /// `modprobe` standing in: the old block goes, the new one comes, each folder is
    /// made and mounted once.
    #[test]
    fn the_boot_script_replaces_hvboxs_fstab_block_and_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let fstab = dir.path().join("fstab");
        std::fs::write(
            &fstab,
            format!("UUID=x / ext4 defaults 0 1\nold /old virtiofs defaults,nofail 0 0 {MARK}\n"),
        )
        .unwrap();
        let log = dir.path().join("calls");
        let stub = |name: &str, status: u8| {
            let path = dir.path().join(name);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit {status}\n",
                    log.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        stub("mount", 0);
        stub("mountpoint", 1);
        stub("modprobe", 0);
        let root = dir.path().join("guest");
        let mounts = [
            mount("hvbox0", &format!("{}/my project", root.display()), false),
            mount("hvbox1", &format!("{}/data", root.display()), true),
        ];
        let script =
            boot_script(&mounts).replace("fstab=/etc/fstab", &format!("fstab={}", fstab.display()));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = std::fs::read_to_string(&fstab).unwrap();
        let r = root.display();
        assert_eq!(
            table,
            format!(
                "UUID=x / ext4 defaults 0 1\n\
                 hvbox0 {r}/my\\040project virtiofs {OPTIONS} 0 0 {MARK}\n\
                 hvbox1 {r}/data virtiofs {OPTIONS},ro 0 0 {MARK}\n"
            )
        );
        assert!(root.join("my project").is_dir() && root.join("data").is_dir());
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains(&format!("mount {r}/my project\n")),
            "{calls}"
        );
        assert!(calls.contains(&format!("mount {r}/data\n")), "{calls}");
        // An empty list empties hvbox's block and mounts nothing.
        let script =
            boot_script(&[]).replace("fstab=/etc/fstab", &format!("fstab={}", fstab.display()));
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .status()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&fstab).unwrap(),
            "UUID=x / ext4 defaults 0 1\n"
        );
    }

    #[test]
    fn tags_and_paths_must_fit_fstab_and_the_device() {
        assert!(validate(&[mount("hvbox0", "/srv/p", false)]).is_ok());
        for bad in [
            vec![mount("", "/srv/p", false)],
            vec![mount(&"t".repeat(37), "/srv/p", false)],
            vec![mount("a b", "/srv/p", false)],
            vec![mount("t", "srv/p", false)],
            vec![mount("t", "/srv/\np", false)],
            vec![mount("t", "/a", false), mount("t", "/b", false)],
            vec![mount("t", "/a", false), mount("u", "/a", false)],
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }
}
