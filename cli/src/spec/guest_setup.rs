//! The spec's first-boot settings: what cloud-init does in the guest (`cloud_init:`)
//! and how its network is configured (`network:`).

use super::values::Cidr;
use schemars::JsonSchema;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInitSettings {
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: Option<String>,
    /// Installed on first boot.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Files written on first boot.
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

/// A file cloud-init writes on first boot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileSpec {
    /// Absolute path in the guest.
    pub path: String,
    #[serde(default)]
    pub content: String,
    /// Octal, e.g. "0644".
    pub permissions: Option<String>,
    /// `user` or `user:group`; a file owned by hvbox's user is written after the
    /// user exists.
    pub owner: Option<String>,
    /// Append to the file instead of replacing it.
    #[serde(default)]
    pub append: bool,
}

/// The guest's NIC: DHCP v4 and v6 unless the spec says otherwise, static addresses
/// as an option.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettingsSpec {
    /// DHCP for IPv4 (default true).
    #[serde(default = "yes")]
    pub dhcp4: bool,
    /// DHCP for IPv6 (default true).
    #[serde(default = "yes")]
    pub dhcp6: bool,
    /// Static addresses in CIDR form, e.g. `10.0.2.20/24`.
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    /// Default IPv4 route; needs a static IPv4 address.
    pub gateway4: Option<IpAddr>,
    /// Default IPv6 route; needs a static IPv6 address.
    pub gateway6: Option<IpAddr>,
    /// DNS servers, besides any DHCP gives.
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
