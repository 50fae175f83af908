//! The spec's first-boot settings as the cloud-init seed takes them, and their check
//! by the cloud-init crate's own code (the code the seed is built with), so that
//! `validate` and `up` give the same verdict on the same text.

use super::locate::{path_text, position, Step};
use super::mounts::{Mount, GUEST_UID};
use super::{CloudInitSettings, Spec, SpecError};
use hvbox_cloud_init::{HostKey, NetworkSettings, SeedConfig, UserData, WriteFile};
use std::fmt;
use std::path::{Path, PathBuf};

/// The login user when the spec names none.
pub const DEFAULT_USER: &str = "dev";

/// How inline user-data is named in the messages of cloud-init's parser.
const INLINE: &str = "cloud_init.user_data";

/// What only the machine has: its identity and keys.
pub struct Identity {
    pub instance_id: String,
    pub hostname: String,
    pub user: String,
    pub authorized_keys: Vec<String>,
    pub host_key: HostKey,
    pub mac: String,
}

/// The seed of a machine with `identity` and `spec`'s first-boot settings, and its
/// `mounts` resolved on this host.
pub fn seed_config(
    spec: &Spec,
    identity: Identity,
    user_data: Option<UserData>,
    mounts: &[Mount],
) -> SeedConfig {
    let ci = &spec.cloud_init;
    let net = &spec.network;
    SeedConfig {
        instance_id: identity.instance_id,
        hostname: identity.hostname,
        user: identity.user,
        authorized_keys: identity.authorized_keys,
        host_key: identity.host_key,
        mac: identity.mac,
        user_groups: spec.ssh.groups.clone(),
        network: NetworkSettings {
            dhcp4: net.dhcp4,
            dhcp6: net.dhcp6,
            addresses: net.addresses.iter().map(|a| a.0.clone()).collect(),
            gateway4: net.gateway4.map(|g| g.to_string()),
            gateway6: net.gateway6.map(|g| g.to_string()),
            nameservers: net.nameservers.iter().map(|n| n.to_string()).collect(),
        },
        timezone: ci.timezone.clone(),
        packages: ci.packages.clone(),
        write_files: ci
            .write_files
            .iter()
            .map(|f| WriteFile {
                path: f.path.clone(),
                content: f.content.clone(),
                permissions: f.permissions.clone(),
                owner: f.owner.clone(),
                append: f.append,
                // Files owned by a user must wait until cloud-init created it.
                defer: f.owner.is_some(),
            })
            .collect(),
        runcmd: ci.runcmd.clone(),
        user_data,
        // Fixed, so the host's virtiofsd can map the login user to the owner of
        // each shared folder before the guest has booted.
        user_uid: Some(GUEST_UID),
        mounts: super::mounts::guest_mounts(mounts),
        // The host's, not the spec's: the seed's writer adds them.
        proxy: Default::default(),
    }
}

/// Why the user's own cloud-config cannot be used.
#[derive(Debug)]
pub enum UserDataError {
    /// `user_data` and `user_data_file` both.
    Both,
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// cloud-init's parser refused it.
    Invalid(hvbox_cloud_init::Error),
}

impl fmt::Display for UserDataError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            UserDataError::Both => {
                f.write_str("cloud_init has both `user_data` and `user_data_file`: keep one")
            }
            UserDataError::Unreadable { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            UserDataError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UserDataError {}

/// The user's own cloud-config: inline, or read from its file (relative to `root`,
/// the spec's folder).
pub fn user_data(ci: &CloudInitSettings, root: &Path) -> Result<Option<UserData>, UserDataError> {
    match (&ci.user_data, &ci.user_data_file) {
        (Some(_), Some(_)) => Err(UserDataError::Both),
        (Some(text), None) => UserData::parse(text, INLINE)
            .map(Some)
            .map_err(UserDataError::Invalid),
        (None, Some(file)) => {
            let path = root.join(file);
            let text =
                std::fs::read_to_string(&path).map_err(|error| UserDataError::Unreadable {
                    path: path.clone(),
                    error,
                })?;
            UserData::parse(&text, &path.display().to_string())
                .map(Some)
                .map_err(UserDataError::Invalid)
        }
        (None, None) => Ok(None),
    }
}

/// Where the check reports: the spec and the paths to the machine's settings.
pub(super) struct Spot<'a> {
    pub spec_path: &'a Path,
    pub text: &'a str,
    /// The path to where the machine's value of a top-level key is written.
    pub written_in: &'a dyn Fn(&str) -> Vec<Step>,
}

impl Spot<'_> {
    pub fn path(&self, key: &str, rest: &[Step]) -> Vec<Step> {
        let mut path = (self.written_in)(key);
        path.extend_from_slice(rest);
        path
    }

    pub fn at(&self, path: &[Step], message: &str) -> SpecError {
        SpecError::at(self.spec_path, self.text, path, message)
    }
}

fn key(k: &str) -> Step {
    Step::Key(k.to_string())
}

/// Every problem the seed of `spec`'s machine would have: each first-boot setting
/// checked on its own (so one bad setting does not hide another), then the user's
/// cloud-config merged into them all. `hostname` is the machine's.
pub(super) fn check(spec: &Spec, hostname: &str, root: &Path, spot: &Spot) -> Vec<SpecError> {
    let user = spec
        .ssh
        .user
        .as_ref()
        .map_or(DEFAULT_USER, |u| u.0.as_str());
    let mounts = super::mounts::resolve(spec.mounts.as_deref(), root).unwrap_or_default();
    let full = seed_config(spec, stand_in(hostname, user), None, &mounts);
    let base = SeedConfig {
        user_groups: Vec::new(),
        network: NetworkSettings::default(),
        timezone: None,
        packages: Vec::new(),
        write_files: Vec::new(),
        runcmd: Vec::new(),
        ..full.clone()
    };
    let mut parts = vec![(
        spot.path("network", &[]),
        "network",
        SeedConfig {
            network: full.network.clone(),
            ..base.clone()
        },
    )];
    if let Some(timezone) = &full.timezone {
        parts.push((
            spot.path("cloud_init", &[key("timezone")]),
            "timezone",
            SeedConfig {
                timezone: Some(timezone.clone()),
                ..base.clone()
            },
        ));
    }
    // Lists element by element, so that each bad one is reported.
    for (i, group) in full.user_groups.iter().enumerate() {
        parts.push((
            spot.path("ssh", &[key("groups"), Step::Index(i)]),
            "user_groups",
            SeedConfig {
                user_groups: vec![group.clone()],
                ..base.clone()
            },
        ));
    }
    for (i, package) in full.packages.iter().enumerate() {
        parts.push((
            spot.path("cloud_init", &[key("packages"), Step::Index(i)]),
            "packages",
            SeedConfig {
                packages: vec![package.clone()],
                ..base.clone()
            },
        ));
    }
    for (i, command) in full.runcmd.iter().enumerate() {
        parts.push((
            spot.path("cloud_init", &[key("runcmd"), Step::Index(i)]),
            "runcmd",
            SeedConfig {
                runcmd: vec![command.clone()],
                ..base.clone()
            },
        ));
    }
    for (i, file) in full.write_files.iter().enumerate() {
        parts.push((
            spot.path("cloud_init", &[key("write_files"), Step::Index(i)]),
            "write_files",
            SeedConfig {
                write_files: vec![file.clone()],
                ..base.clone()
            },
        ));
    }
    let mut problems = Vec::new();
    for (path, field, config) in parts {
        if let Err(hvbox_cloud_init::Error::InvalidConfig(message)) =
            hvbox_cloud_init::user_data(&config)
        {
            let (path, message) = refine(spot, path, field, &message);
            problems.push(spot.at(&path, message));
        }
    }
    let written = spec.cloud_init.user_data_file.as_deref();
    match user_data(&spec.cloud_init, root) {
        Err(e) => problems.push(user_data_problem(e, written, spot)),
        // It merges into all of the above, so only once they are right.
        Ok(Some(found)) if problems.is_empty() => {
            let config = SeedConfig {
                user_data: Some(found),
                ..full
            };
            if let Err(e) = hvbox_cloud_init::user_data(&config) {
                problems.push(user_data_problem(UserDataError::Invalid(e), written, spot));
            }
        }
        Ok(_) => {}
    }
    problems
}

/// Placeholders for what only a created machine has; valid as cloud-init's checks
/// want them.
fn stand_in(hostname: &str, user: &str) -> Identity {
    let public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvboxCheckStandIn hvbox-check";
    Identity {
        instance_id: "i-hvbox-check".into(),
        hostname: hostname.to_string(),
        user: user.to_string(),
        authorized_keys: vec![public.into()],
        host_key: HostKey {
            private_openssh:
                "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            public_openssh: public.into(),
        },
        mac: "52:54:00:00:00:00".into(),
    }
}

/// cloud-init's messages start with the field they are about (`network.gateway4 …`,
/// `timezone must …`): the problem goes to that key when the spec writes it, and
/// the message loses the name its location already says.
fn refine<'m>(spot: &Spot, path: Vec<Step>, field: &str, message: &'m str) -> (Vec<Step>, &'m str) {
    let token = message.split([' ', ':']).next().unwrap_or_default();
    let rest = |m: &'m str| m.trim_start_matches(':').trim_start();
    if let Some(sub) = token.strip_prefix("network.") {
        let mut finer = path.clone();
        finer.push(key(sub));
        if position(spot.text, &finer).is_some() {
            return (finer, rest(&message[token.len()..]));
        }
        return (path, message);
    }
    if token == field {
        return (path, rest(&message[token.len()..]));
    }
    (path, message)
}

/// A problem of the user's cloud-config, at the spec's `user_data` line it is on
/// (inline) or at `user_data_file` (naming the file's own line).
/// `written` is the file as the spec names it.
fn user_data_problem(e: UserDataError, written: Option<&Path>, spot: &Spot) -> SpecError {
    let file_at = spot.path("cloud_init", &[key("user_data_file")]);
    let inline_at = spot.path("cloud_init", &[key("user_data")]);
    match e {
        UserDataError::Both => spot.at(
            &file_at,
            "`user_data` is set too: keep one of `user_data` and `user_data_file`",
        ),
        UserDataError::Unreadable { path, error } => {
            let problem = match error.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                std::io::ErrorKind::IsADirectory => "is not a file".to_string(),
                _ => format!("cannot be read ({error})"),
            };
            let written = written.unwrap_or(&path).display();
            spot.at(
                &file_at,
                &format!("{written} {problem} (looked for {})", path.display()),
            )
        }
        UserDataError::Invalid(hvbox_cloud_init::Error::UserData {
            origin,
            line,
            column,
            message,
        }) if origin == INLINE => {
            let value_at = position(spot.text, &inline_at);
            let place = value_at.and_then(|at| in_block(spot.text, at, line, column));
            let (place, message) = match place {
                Some(place) => (Some(place), format!("{}: {message}", path_text(&inline_at))),
                None => {
                    let column = column.map(|c| format!(", column {c}")).unwrap_or_default();
                    let what = path_text(&inline_at);
                    (value_at, format!("{what}, line {line}{column}: {message}"))
                }
            };
            SpecError {
                path: spot.spec_path.to_path_buf(),
                line: place.map(|(l, _)| l),
                column: place.map(|(_, c)| c),
                message,
            }
        }
        UserDataError::Invalid(hvbox_cloud_init::Error::InvalidConfig(message)) => {
            spot.at(&spot.path("cloud_init", &[]), &message)
        }
        UserDataError::Invalid(other) => spot.at(&file_at, &other.to_string()),
    }
}

/// Where line `line` (and `column`) of a literal block (`user_data: |`) whose
/// indicator is at `value_at` is in the spec; `None` for another kind of scalar,
/// whose lines are not the spec's.
fn in_block(
    text: &str,
    value_at: (usize, usize),
    line: usize,
    column: Option<usize>,
) -> Option<(usize, usize)> {
    let (value_line, value_column) = value_at;
    let indicator = text
        .lines()
        .nth(value_line - 1)?
        .chars()
        .nth(value_column - 1)?;
    if indicator != '|' {
        return None;
    }
    let indent = text
        .lines()
        .skip(value_line)
        .find(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())?;
    Some((value_line + line, indent + column.unwrap_or(1)))
}
