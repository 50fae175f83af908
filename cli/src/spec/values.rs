//! Names that end up in the guest: checked here so cloud-init never sees a bad one.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// An RFC 1123 host name: labels of letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(pub String);

impl Hostname {
    /// A hostname made from a folder's name: the default of a project's only machine.
    pub fn of_folder(dir: &Path) -> Hostname {
        let raw = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let cleaned: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let trimmed: String = cleaned.trim_matches('-').chars().take(63).collect();
        let trimmed = trimmed.trim_end_matches('-');
        Hostname(if trimmed.is_empty() {
            "hvbox".to_string()
        } else {
            trimmed.to_string()
        })
    }
}

/// A login name that `useradd` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(pub String);

pub fn check_hostname(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.is_empty() || s.len() > 253 || !s.split('.').all(label_ok) {
        return Err(format!(
            "{s:?} is not a valid hostname: use letters, digits and hyphens (not at either end), at most 63 per label"
        ));
    }
    Ok(())
}

pub fn check_user(s: &str) -> Result<(), String> {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !first_ok || !rest_ok || s.len() > 32 {
        return Err(format!(
            "{s:?} is not a valid user name: start with a lowercase letter or '_', then lowercase letters, digits, '_' or '-', at most 32"
        ));
    }
    if s == "root" {
        return Err("the ssh user cannot be root: hvbox logs in as a user with sudo".into());
    }
    Ok(())
}

/// Kernel arguments: one line of printable text (the boot protocol takes a C string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelArgs(pub String);

pub fn check_kernel_args(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("kernel arguments are empty; remove the key instead".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "kernel arguments must be one line of printable text, found {c:?}"
        ));
    }
    // x86 COMMAND_LINE_SIZE, with room for the guest's own arguments.
    if s.len() > 1024 {
        return Err(format!(
            "kernel arguments are {} bytes; at most 1024 fit beside the guest's own",
            s.len()
        ));
    }
    Ok(())
}

/// An address with its prefix length, e.g. `10.0.2.20/24`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr(pub String);

pub fn check_cidr(s: &str) -> Result<(), String> {
    let bad = || {
        format!("{s:?} is not an address with a prefix length such as 10.0.2.20/24 or fd00::20/64")
    };
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(format!("{s:?}: the prefix length must be at most {max}"));
    }
    Ok(())
}

macro_rules! checked_string {
    ($ty:ident, $check:ident, $what:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        $check(s).map(|()| $ty(s.to_string())).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

checked_string!(Hostname, check_hostname, "a hostname such as \"dev\"");
checked_string!(UserName, check_user, "a user name such as \"dev\"");
checked_string!(
    Cidr,
    check_cidr,
    "an address with a prefix length such as \"10.0.2.20/24\""
);
checked_string!(
    KernelArgs,
    check_kernel_args,
    "kernel arguments such as \"quiet mitigations=off\""
);

#[cfg(test)]
mod tests {
    use super::{check_cidr, check_hostname, Hostname};
    use std::path::Path;

    #[test]
    fn hostnames_from_folder_names() {
        let of = |dir: &str| Hostname::of_folder(Path::new(dir)).0;
        assert_eq!(of("/x/My_Project"), "my-project");
        assert_eq!(of("/x/__"), "hvbox");
        assert_eq!(of("/"), "hvbox");
        assert!(check_hostname(&of(&format!("/x/{}", "a-".repeat(40)))).is_ok());
    }

    #[test]
    fn cidr_checks() {
        assert!(check_cidr("10.0.2.20/24").is_ok());
        assert!(check_cidr("fd00::20/64").is_ok());
        assert!(check_cidr("10.0.2.20")
            .unwrap_err()
            .contains("prefix length"));
        assert!(check_cidr("10.0.2.20/33")
            .unwrap_err()
            .contains("at most 32"));
        assert!(check_cidr("host/24").is_err());
    }
}
