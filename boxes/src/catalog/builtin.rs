//! The boxes hvbox knows without a catalog file: Debian's and Ubuntu's official cloud
//! images, resolved against the distributions' own servers.
//!
//! What was checked (publicly published layouts, as used by Lima, Packer and
//! Terraform configurations and the distributions' build tools):
//! - Debian: `https://cloud.debian.org/images/cloud/<codename>/` lists one folder per
//!   build, `YYYYMMDD-NNNN/` (e.g. `bookworm/20240211-1654/`), beside `latest/` and
//!   `daily/`. A build folder holds `debian-<N>-genericcloud-amd64-<version>.{raw,
//!   qcow2,tar.xz,json}` and `SHA512SUMS` (SHA-512 only; Debian publishes no
//!   SHA256SUMS for cloud images). The `.tar.xz` is `tar --create --sparse` of the raw
//!   disk renamed `disk.raw` (debian-cloud-images, `build/tar.py`), then xz: the
//!   smallest download, and the sparse tar keeps the holes. `genericcloud` has
//!   cloud-init and drops hardware drivers a VM does not need.
//! - Ubuntu: `https://cloud-images.ubuntu.com/releases/<codename>/` lists
//!   `release-YYYYMMDD[.N]/` folders beside `release/` (the current one). Each holds
//!   `ubuntu-<NN.NN>-server-cloudimg-amd64.img` — a compressed qcow2 despite the
//!   name (Ubuntu's "cloud image artefacts" reference) — and `SHA256SUMS` listing it
//!   as `<hex> *<name>`.
//!
//! Versions are the build folders. Without a version hvbox takes the newest build
//! folder (not `latest/`, whose bytes change under the same URL): the lock file then
//! records a URL that keeps serving the same bytes.

use crate::{Algorithm, Format};

#[derive(Debug)]
pub(crate) struct Builtin {
    pub name: &'static str,
    pub description: &'static str,
    /// The folder listing the builds.
    pub index: &'static str,
    /// A build folder's name is this prefix and the version.
    pub dir_prefix: &'static str,
    /// The disk image's file name in a build folder; `{v}` is the version.
    pub file: &'static str,
    pub sums: &'static str,
    pub algorithm: Algorithm,
    pub format: &'static str,
    pub shape: VersionShape,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum VersionShape {
    /// `YYYYMMDD-N…` (Debian).
    DateBuild,
    /// `YYYYMMDD` or `YYYYMMDD.N` (Ubuntu).
    DateSerial,
}

impl VersionShape {
    pub(crate) fn matches(self, v: &str) -> bool {
        let date = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit());
        let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match self {
            VersionShape::DateBuild => v.split_once('-').is_some_and(|(d, n)| date(d) && number(n)),
            VersionShape::DateSerial => match v.split_once('.') {
                Some((d, n)) => date(d) && number(n),
                None => date(v),
            },
        }
    }
}

impl Builtin {
    pub(crate) fn dir_url(&self, version: &str) -> String {
        format!("{}{}{version}/", self.index, self.dir_prefix)
    }

    pub(crate) fn file_name(&self, version: &str) -> String {
        self.file.replace("{v}", version)
    }

    pub(crate) fn disk_url(&self, version: &str) -> String {
        format!("{}{}", self.dir_url(version), self.file_name(version))
    }

    pub(crate) fn sums_url(&self, version: &str) -> String {
        format!("{}{}", self.dir_url(version), self.sums)
    }

    pub(crate) fn format(&self) -> Format {
        self.format.parse().expect("built-in formats are valid")
    }

    /// The version a listing entry names, if it is a build folder.
    pub(crate) fn version_of(&self, entry: &str) -> Option<String> {
        let v = entry.strip_prefix(self.dir_prefix)?;
        self.shape.matches(v).then(|| v.to_string())
    }
}

pub(crate) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "debian-12",
        description: "Debian 12 (bookworm) genericcloud",
        index: "https://cloud.debian.org/images/cloud/bookworm/",
        dir_prefix: "",
        file: "debian-12-genericcloud-amd64-{v}.tar.xz",
        sums: "SHA512SUMS",
        algorithm: Algorithm::Sha512,
        format: "tar.xz",
        shape: VersionShape::DateBuild,
    },
    Builtin {
        name: "debian-13",
        description: "Debian 13 (trixie) genericcloud",
        index: "https://cloud.debian.org/images/cloud/trixie/",
        dir_prefix: "",
        file: "debian-13-genericcloud-amd64-{v}.tar.xz",
        sums: "SHA512SUMS",
        algorithm: Algorithm::Sha512,
        format: "tar.xz",
        shape: VersionShape::DateBuild,
    },
    Builtin {
        name: "ubuntu-22.04",
        description: "Ubuntu 22.04 LTS (jammy) server cloud image",
        index: "https://cloud-images.ubuntu.com/releases/jammy/",
        dir_prefix: "release-",
        file: "ubuntu-22.04-server-cloudimg-amd64.img",
        sums: "SHA256SUMS",
        algorithm: Algorithm::Sha256,
        format: "qcow2",
        shape: VersionShape::DateSerial,
    },
    Builtin {
        name: "ubuntu-24.04",
        description: "Ubuntu 24.04 LTS (noble) server cloud image",
        index: "https://cloud-images.ubuntu.com/releases/noble/",
        dir_prefix: "release-",
        file: "ubuntu-24.04-server-cloudimg-amd64.img",
        sums: "SHA256SUMS",
        algorithm: Algorithm::Sha256,
        format: "qcow2",
        shape: VersionShape::DateSerial,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_published_layout() {
        let d = &BUILTINS[0];
        assert_eq!(
            d.disk_url("20240211-1654"),
            "https://cloud.debian.org/images/cloud/bookworm/20240211-1654/debian-12-genericcloud-amd64-20240211-1654.tar.xz"
        );
        assert_eq!(
            d.sums_url("20240211-1654"),
            "https://cloud.debian.org/images/cloud/bookworm/20240211-1654/SHA512SUMS"
        );
        let u = &BUILTINS[3];
        assert_eq!(
            u.disk_url("20240423"),
            "https://cloud-images.ubuntu.com/releases/noble/release-20240423/ubuntu-24.04-server-cloudimg-amd64.img"
        );
        assert_eq!(u.version_of("release-20240423"), Some("20240423".into()));
        assert_eq!(
            u.version_of("release-20240423.1"),
            Some("20240423.1".into())
        );
        assert_eq!(u.version_of("release"), None);
        assert_eq!(d.version_of("20240211-1654"), Some("20240211-1654".into()));
        assert_eq!(d.version_of("latest"), None);
        assert_eq!(d.version_of("daily"), None);
    }
}
