//! The plain description of one virtual machine that every engine runs.

use std::path::PathBuf;

/// Everything needed to boot one machine by direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// Attached in order: the root disk first, then the seed, then extra disks.
    pub disks: Vec<DiskConfig>,
    pub nics: Vec<NetConfig>,
    /// Offer the guest the host's SVM/VMX so it can run VMs itself.
    pub nested_virtualization: bool,
    /// Where the guest's first serial port is written (appended); standard output
    /// when `None`.
    pub serial_log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A virtio NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// `52:54:00:xx:xx:xx` form (see [`parse_mac`]).
    pub mac: String,
    pub backend: NetBackend,
}

/// Where a NIC's frames travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetBackend {
    /// A passt UNIX socket (`passt --socket PATH`): unprivileged user-mode networking.
    Passt(PathBuf),
    /// A TAP interface, by name (it must exist and be usable by this user).
    Tap(String),
}

/// `aa:bb:cc:dd:ee:ff` (six hex pairs, `:` or `-` between them) as bytes.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad =
        || format!("{text:?} is not a MAC address (want six hex pairs like 52:54:00:12:34:56)");
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts
            .next()
            .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(bad)?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "{text} is a multicast address; a NIC needs a unicast one"
        ));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_in_either_notation() {
        assert_eq!(
            parse_mac("52:54:00:0a:Bc:ff"),
            Ok([0x52, 0x54, 0, 0x0a, 0xbc, 0xff])
        );
        assert_eq!(parse_mac("02-00-00-00-00-01"), Ok([2, 0, 0, 0, 0, 1]));
        for bad in [
            "",
            "52:54:00:0a:bc",
            "52:54:00:0a:bc:ff:00",
            "52:54:00:0a:bc:f",
            "zz:54:00:0a:bc:ff",
            "+1:54:00:0a:bc:ff",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .contains("multicast"));
    }
}
