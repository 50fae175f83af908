//! `mounts:`: host folders the guest sees through virtio-fs. Without the key the
//! project folder is mounted, writable, at the same absolute path in the guest (as
//! Lima does, so paths in build output and editors match); `mounts: []` mounts
//! nothing.

use super::first_boot::Spot;
use super::locate::Step;
use super::SpecError;
use hvbox_cloud_init::VirtiofsMount;
use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// One host folder and where the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// A folder on the host: relative to hvbox.yaml's folder, absolute, or under
    /// your home (`~/datasets`).
    pub host: String,
    /// Where the guest sees it: an absolute path that is not a system folder.
    pub guest: GuestPath,
    /// The guest may read but not change it (enforced by the host's virtiofsd).
    #[serde(default)]
    pub read_only: bool,
}

/// An absolute guest path that may hold a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPath(pub PathBuf);

/// Folders of the guest's own system: a mount over one (or over a folder holding
/// one) would hide what the guest needs to run.
const SYSTEM_FOLDERS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
    "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var",
];
/// Kernel filesystems: nothing can be mounted inside them.
const KERNEL_FOLDERS: &[&str] = &["/dev", "/proc", "/sys"];

impl GuestPath {
    /// Why this path cannot hold a mount, if it cannot (`user`'s home and its
    /// `.ssh` too: ssh logs in with them).
    pub fn refusal(&self, user: &str) -> Option<String> {
        let path = &self.0;
        let system = SYSTEM_FOLDERS.iter().map(Path::new);
        if system.clone().any(|folder| folder == path) {
            return Some(format!(
                "{} is a folder the guest system needs; mount elsewhere, e.g. /srv/NAME",
                path.display()
            ));
        }
        let home = Path::new("/home").join(user);
        if home.starts_with(path) || path.starts_with(home.join(".ssh")) {
            return Some(format!(
                "{} would hide the login user `{user}`'s home, which ssh logs in with; mount elsewhere, e.g. /srv/NAME",
                path.display()
            ));
        }
        if let Some(folder) = system.clone().find(|folder| folder.starts_with(path)) {
            return Some(format!(
                "{} holds {}, which the guest system needs; mount elsewhere, e.g. /srv/NAME",
                path.display(),
                folder.display()
            ));
        }
        KERNEL_FOLDERS
            .iter()
            .find(|k| path.starts_with(k))
            .map(|k| format!("{} is inside {k}, a kernel filesystem", path.display()))
    }
}

impl<'de> Deserialize<'de> for GuestPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PathVisitor;
        impl Visitor<'_> for PathVisitor {
            type Value = GuestPath;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an absolute path in the guest, such as /srv/project")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<GuestPath, E> {
                let path = Path::new(s);
                if !path.is_absolute() {
                    return Err(E::custom(format!(
                        "{s:?} is relative: the guest path must be absolute, such as /srv/project"
                    )));
                }
                if path
                    .components()
                    .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
                {
                    return Err(E::custom(format!(
                        "{s:?} has `.` or `..` in it: write the folder itself"
                    )));
                }
                // Normalised: `/srv//project/` and `/srv/project` are one place.
                Ok(GuestPath(path.components().collect()))
            }
        }
        d.deserialize_str(PathVisitor)
    }
}

/// The login user's uid and gid in the guest: fixed in the seed, so each virtiofsd
/// can map them to the owner of its host folder before the guest has booted.
pub const GUEST_UID: u32 = 1000;

/// The virtio-fs tag of the `index`th mount (the guest's fstab names it).
pub fn tag(index: usize) -> String {
    format!("hvbox{index}")
}

/// What the guest mounts where, for its seed.
pub fn guest_mounts(mounts: &[Mount]) -> Vec<VirtiofsMount> {
    mounts
        .iter()
        .enumerate()
        .map(|(i, m)| VirtiofsMount {
            tag: tag(i),
            path: m.guest.to_string_lossy().into_owned(),
            read_only: m.read_only,
        })
        .collect()
}

/// A mount with its host folder resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute, symlinks resolved: what virtiofsd shares.
    pub host: PathBuf,
    pub guest: PathBuf,
    pub read_only: bool,
}

/// The mounts of a machine whose spec lives in `root`: the listed ones, or the
/// project folder at its own path. `None` for a listed mount whose host folder is
/// missing (the spec check reports it).
pub fn resolve(listed: Option<&[MountSpec]>, root: &Path) -> Option<Vec<Mount>> {
    let Some(listed) = listed else {
        let host = std::fs::canonicalize(root).ok()?;
        return Some(vec![Mount {
            guest: host.clone(),
            host,
            read_only: false,
        }]);
    };
    listed
        .iter()
        .map(|m| {
            Some(Mount {
                host: std::fs::canonicalize(host_path(&m.host, root)).ok()?,
                guest: m.guest.0.clone(),
                read_only: m.read_only,
            })
        })
        .collect()
}

/// `host` as written: under the home for `~`, else relative to `root`.
pub fn host_path(host: &str, root: &Path) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    match host.strip_prefix('~') {
        Some("") => home().unwrap_or_else(|| PathBuf::from("~")),
        Some(rest) if rest.starts_with('/') => match home() {
            Some(home) => home.join(&rest[1..]),
            None => PathBuf::from(host),
        },
        _ => root.join(host),
    }
}

/// Every problem with a machine's mounts: host folders that are not there, guest
/// paths given twice or over the guest's system, for `user` logging in.
pub(super) fn check(
    listed: Option<&[MountSpec]>,
    root: &Path,
    user: &str,
    spot: &Spot,
) -> Vec<SpecError> {
    let Some(listed) = listed else {
        // The default: the project folder at its own path.
        let Ok(project) = std::fs::canonicalize(root) else {
            return Vec::new();
        };
        return match GuestPath(project.clone()).refusal(user) {
            Some(why) => vec![SpecError::whole(
                spot.spec_path,
                format!("without `mounts:` the project folder is mounted at its own path in the guest, but {why}; add `mounts:` with another guest path (`- {{ host: ., guest: /srv/project }}`), or `mounts: []`"),
            )],
            None => Vec::new(),
        };
    };
    let mut problems = Vec::new();
    for (i, mount) in listed.iter().enumerate() {
        let at = |key: &str| spot.path("mounts", &[Step::Index(i), Step::Key(key.into())]);
        let host = host_path(&mount.host, root);
        let problem = match std::fs::metadata(&host) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
            Err(_) => Some("cannot be read"),
            Ok(m) if !m.is_dir() => Some("is not a folder"),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            let message = format!("{} {problem} (looked for {})", mount.host, host.display());
            problems.push(spot.at(&at("host"), &message));
        }
        if let Some(why) = mount.guest.refusal(user) {
            problems.push(spot.at(&at("guest"), &why));
        }
        if let Some(first) = listed[..i].iter().position(|m| m.guest == mount.guest) {
            let message = format!(
                "{} is already the guest path of mounts[{first}]; each mount needs its own",
                mount.guest.0.display()
            );
            problems.push(spot.at(&at("guest"), &message));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(p: &str) -> GuestPath {
        serde_yaml::from_str(&format!("{p:?}")).unwrap()
    }

    #[test]
    fn guest_paths_must_be_absolute_and_clear_of_the_system() {
        assert_eq!(guest("/srv//project/").0, Path::new("/srv/project"));
        for bad in ["srv/project", "./x", "/srv/../etc"] {
            assert!(
                serde_yaml::from_str::<GuestPath>(&format!("{bad:?}")).is_err(),
                "{bad}"
            );
        }
        for ok in [
            "/srv/project",
            "/home/alice/src",
            "/tmp/build",
            "/opt/data",
            "/mnt/x",
        ] {
            assert_eq!(guest(ok).refusal("dev"), None, "{ok}");
        }
        let why = |p: &str| guest(p).refusal("dev").unwrap();
        assert!(why("/etc").contains("/etc is a folder the guest system needs"));
        assert!(why("/").contains("/ is a folder the guest system needs"));
        assert!(why("/usr").contains("/usr is a folder"));
        assert!(why("/home/dev").contains("the login user `dev`'s home"));
        assert!(why("/home/dev/.ssh").contains("the login user `dev`'s home"));
        assert!(why("/home").contains("/home is a folder"));
        assert!(why("/proc/x").contains("inside /proc, a kernel filesystem"));
    }

    #[test]
    fn host_paths_are_relative_to_the_spec_or_the_home() {
        let root = Path::new("/p");
        assert_eq!(host_path(".", root), Path::new("/p/."));
        assert_eq!(host_path("data", root), Path::new("/p/data"));
        assert_eq!(host_path("/abs", root), Path::new("/abs"));
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(host_path("~/sets", root), home.join("sets"));
        assert_eq!(host_path("~", root), home);
    }

    #[test]
    fn the_default_is_the_project_folder_at_its_own_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let mounts = resolve(None, dir.path()).unwrap();
        assert_eq!(
            mounts,
            [Mount {
                host: real.clone(),
                guest: real,
                read_only: false
            }]
        );
        assert_eq!(resolve(Some(&[]), dir.path()).unwrap(), []);
    }
}
