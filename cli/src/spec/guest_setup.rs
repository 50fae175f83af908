//! The spec's first-boot settings: what cloud-init does in the guest (`cloud_init:`)
//! and how its network is configured (`network:`).

use super::values::Cidr;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudInitSettings {
    /// e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    /// Installed on first boot.
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub write_files: Vec<WriteFileSpec>,
    /// Shell commands run once, at the end of first boot.
    #[serde(default)]
    pub runcmd: Vec<String>,
    /// The user's own cloud-config (a block starting with `#cloud-config`), merged
    /// into hvbox's.
    pub user_data: Option<String>,
    /// The same from a file, relative to the spec's folder.
    pub user_data_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFileSpec {
    pub path: String,
    #[serde(default)]
    pub content: String,
    /// Octal, e.g. "0644".
    pub permissions: Option<String>,
    /// `user:group`.
    pub owner: Option<String>,
    #[serde(default)]
    pub append: bool,
}

/// The guest's NIC: DHCP v4 and v6 unless the spec says otherwise, static addresses
/// as an option.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettingsSpec {
    #[serde(default = "yes")]
    pub dhcp4: bool,
    #[serde(default = "yes")]
    pub dhcp6: bool,
    /// Static addresses in CIDR form, e.g. `10.0.2.20/24`.
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    pub gateway4: Option<IpAddr>,
    pub gateway6: Option<IpAddr>,
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
}

impl Default for NetworkSettingsSpec {
    fn default() -> Self {
        NetworkSettingsSpec {
            dhcp4: true,
            dhcp6: true,
            addresses: Vec::new(),
            gateway4: None,
            gateway6: None,
            nameservers: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The line (1-based) of `key:` under `section:` in the spec text, so errors inside
/// an inline block can point into the spec.
pub fn line_of_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indented = line.len() != trimmed.len();
        if !indented && !trimmed.is_empty() && !trimmed.starts_with('#') {
            in_section = trimmed.starts_with(&format!("{section}:"));
        } else if in_section && indented && trimmed.starts_with(&format!("{key}:")) {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines() {
        let text = "box: b\nuser_data: no\ncloud_init:\n  packages: [a]\n  user_data: |\n    #cloud-config\n";
        assert_eq!(line_of_key(text, "cloud_init", "user_data"), Some(5));
        assert_eq!(line_of_key(text, "cloud_init", "runcmd"), None);
    }
}
