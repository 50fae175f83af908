//! virtiofsd, the daemon that serves each mounted folder to the guest over
//! vhost-user (virtio-fs): where hvbox finds it and how it runs it. One runs per
//! mount, started by the supervisor next to passt and stopped with the VM.

use crate::spec::mounts::{Mount, GUEST_UID};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Overrides where hvbox looks for virtiofsd.
pub const VIRTIOFSD_ENV: &str = "HVBOX_VIRTIOFSD";
/// Where distributions that package virtiofsd put it, off PATH.
const PACKAGED: &[&str] = &["/usr/libexec/virtiofsd", "/usr/lib/virtiofsd"];

/// One virtiofsd as the supervisor starts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsDaemon {
    /// The host folder it serves, and where the guest mounts it.
    pub host: PathBuf,
    pub guest: PathBuf,
    /// The vhost-user socket it listens on; the engine connects to it.
    pub socket: PathBuf,
    pub argv: Vec<String>,
    pub log: PathBuf,
}

/// The virtiofsd to run: `$HVBOX_VIRTIOFSD`, else `virtiofsd` on PATH, else where
/// distributions install it.
pub fn find() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(VIRTIOFSD_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !is_executable(&path) {
            bail!(
                "{VIRTIOFSD_ENV}={} is not an executable file",
                path.display()
            );
        }
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("virtiofsd"));
    on_path
        .chain(PACKAGED.iter().map(PathBuf::from))
        .find(|p| is_executable(p))
        .with_context(|| {
            format!(
                "virtiofsd is not installed, and this machine's `mounts:` (the project folder, unless `mounts: []`) need it. Install your distribution's `virtiofsd` package (Debian 13, Ubuntu 24.04, Fedora), or build it: `cargo install --locked virtiofsd` (needs libseccomp-dev and libcap-ng-dev); or point {VIRTIOFSD_ENV} at it; or set `mounts: []` in hvbox.yaml"
            )
        })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// The daemon for `mount`, listening on `socket`,
/// logging to `log`. The guest's login user and the owner of the host folder are
/// mapped onto each other, so what the guest user writes belongs on the host to
/// whoever owns the folder, and the folder's files look the guest user's own.
pub fn daemon(binary: &Path, mount: &Mount, socket: &Path, log: &Path) -> Result<FsDaemon> {
    let owner = std::fs::metadata(&mount.host)
        .with_context(|| format!("reading the owner of {}", mount.host.display()))?;
    let mut argv = vec![
        binary.display().to_string(),
        "--socket-path".into(),
        socket.display().to_string(),
        "--shared-dir".into(),
        mount.host.display().to_string(),
        // No `--tag`: it makes virtiofsd offer VHOST_USER_PROTOCOL_F_CONFIG, which
        // QEMU 7.1 to 8.0 crash on; the engine gives the device its tag.
        // A private mount namespace rooted at the folder (see `without_namespace`).
        "--sandbox".into(),
        "namespace".into(),
        "--translate-uid".into(),
        format!("map:{GUEST_UID}:{}:1", owner.uid()),
        "--translate-gid".into(),
        format!("map:{GUEST_UID}:{}:1", owner.gid()),
        "--log-level".into(),
        "warn".into(),
    ];
    if mount.read_only {
        // Enforced here, on the host, not only by the guest's mount options.
        argv.push("--readonly".into());
    }
    Ok(FsDaemon {
        host: mount.host.clone(),
        guest: mount.guest.clone(),
        socket: socket.to_path_buf(),
        argv,
        log: log.to_path_buf(),
    })
}

impl FsDaemon {
    /// The mount it serves, for messages: `/home/me/proj -> /home/me/proj`.
    pub fn describe(&self) -> String {
        format!("{} -> {}", self.host.display(), self.guest.display())
    }

    /// The same daemon without its namespace sandbox, for hosts where it cannot make
    /// one (user namespaces turned off); `None` when it runs without one already.
    pub fn without_namespace(&self) -> Option<FsDaemon> {
        let at = self.argv.iter().position(|a| a == "--sandbox")?;
        if self.argv.get(at + 1).map(String::as_str) != Some("namespace") {
            return None;
        }
        let mut plain = self.clone();
        plain.argv[at + 1] = "none".into();
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_maps_the_guest_user_to_the_folders_owner_and_keeps_read_only_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        let mount = Mount {
            host: dir.path().to_path_buf(),
            guest: "/data".into(),
            read_only: true,
        };
        let d = daemon(
            Path::new("/usr/bin/virtiofsd"),
            &mount,
            Path::new("/run/m/fs1.sock"),
            Path::new("/m/virtiofsd-1.log"),
        )
        .unwrap();
        let argv = d.argv.join(" ");
        assert_eq!(
            argv,
            format!(
                "/usr/bin/virtiofsd --socket-path /run/m/fs1.sock --shared-dir {} --sandbox namespace --translate-uid map:1000:{}:1 --translate-gid map:1000:{}:1 --log-level warn --readonly",
                dir.path().display(),
                meta.uid(),
                meta.gid()
            )
        );
        assert_eq!(d.describe(), format!("{} -> /data", dir.path().display()));
        let plain = d.without_namespace().unwrap();
        assert!(plain.argv.join(" ").contains("--sandbox none"));
        assert!(plain.without_namespace().is_none());
    }

    #[test]
    fn an_override_that_is_not_a_program_is_refused() {
        // Run in a child: the variable must not leak into other tests.
        if std::env::var_os("HVBOX_FIND_CHILD").is_some() {
            let err = find().unwrap_err().to_string();
            assert!(err.contains("is not an executable file"), "{err}");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "virtiofs::tests::an_override_that_is_not_a_program_is_refused",
            ])
            .env("HVBOX_FIND_CHILD", "1")
            .env(VIRTIOFSD_ENV, "/nonexistent/virtiofsd")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
