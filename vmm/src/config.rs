//! The plain description of one virtual machine that every engine runs, and its wire
//! format: [`MachineConfig`] serialized as JSON is what `hvbox up` hands the VMM
//! (`hvbox vmm run --config FILE`), so every value crosses as it is, with no codec of
//! its own to lose precision in.

use crate::layout::PAGE_SIZE;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Everything needed to boot one machine by direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// 1 to 255.
    pub cpus: u32,
    /// Guest RAM in bytes, a multiple of 4 KiB (see [`check_memory`]).
    pub memory: u64,
    pub kernel: PathBuf,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: String,
    /// Attached in order: the root disk first, then the seed, then extra disks.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    #[serde(default)]
    pub nics: Vec<NetConfig>,
    /// virtio-fs devices, each served by a vhost-user backend (virtiofsd) listening on
    /// `socket`; the guest mounts one with `mount -t virtiofs TAG DIR`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystems: Vec<FsConfig>,
    /// Offer the guest the host's SVM/VMX so it can run VMs itself.
    #[serde(default)]
    pub nested_virtualization: bool,
    /// Where the guest's first serial port is written (appended); standard output
    /// when `None`.
    #[serde(default)]
    pub serial_log: Option<PathBuf>,
}

/// A virtio-blk disk: a raw image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
}

/// A virtio-fs device: a folder the guest mounts by its tag, served by a vhost-user
/// backend (virtiofsd) outside the VMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// At most 36 bytes (the virtio-fs config field), not empty, unique per machine.
    pub tag: String,
    /// The backend's listening UNIX socket; it must be listening before the VM starts.
    pub socket: PathBuf,
}

/// The size of virtio-fs's `tag` configuration field.
pub const FS_TAG_MAX: usize = 36;

/// A virtio NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub mac: MacAddr,
    pub backend: NetBackend,
}

/// Where a NIC's frames travel; in JSON `{"passt": "/path/passt.sock"}` or
/// `{"tap": "tap0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetBackend {
    /// A passt UNIX socket (`passt --socket PATH`): unprivileged user-mode networking.
    Passt(PathBuf),
    /// A TAP interface, by name (it must exist and be usable by this user).
    Tap(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0:?} is not a MAC address (want six hex pairs like 52:54:00:12:34:56)")]
    BadMac(String),
    #[error("{0} is a multicast address; a NIC needs a unicast one")]
    MulticastMac(MacAddr),
    #[error("cpus must be 1 to 255, got {0}")]
    Cpus(u32),
    #[error("memory must be more than 0 bytes")]
    NoMemory,
    #[error("a virtio-fs tag must not be empty")]
    FsTagEmpty,
    #[error("virtio-fs tag {tag:?} is {} bytes; the device holds at most {FS_TAG_MAX}", tag.len())]
    FsTagTooLong { tag: String },
    #[error("virtio-fs tag {0:?} is given twice; each filesystem needs a tag of its own")]
    FsTagDuplicate(String),
    #[error("virtio-fs {tag:?}: the backend socket {} is not an absolute path", socket.display())]
    FsSocketRelative { tag: String, socket: PathBuf },
    #[error("memory of {0} bytes is not a whole number of 4 KiB pages (KVM maps guest RAM by the page); use e.g. {rounded} bytes", rounded = .0.div_ceil(PAGE_SIZE) * PAGE_SIZE)]
    MemoryNotPages(u64),
}

impl MachineConfig {
    /// What the VMM needs of the values themselves, checked before anything is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=255).contains(&self.cpus) {
            return Err(ConfigError::Cpus(self.cpus));
        }
        check_memory(self.memory)?;
        check_filesystems(&self.filesystems)
    }
}

/// Tags fit the device's field and tell the devices apart; sockets do not depend on
/// the VMM's working directory.
pub fn check_filesystems(filesystems: &[FsConfig]) -> Result<(), ConfigError> {
    for (i, fs) in filesystems.iter().enumerate() {
        match fs.tag.len() {
            0 => return Err(ConfigError::FsTagEmpty),
            n if n > FS_TAG_MAX => {
                return Err(ConfigError::FsTagTooLong {
                    tag: fs.tag.clone(),
                })
            }
            _ => {}
        }
        if filesystems[..i].iter().any(|other| other.tag == fs.tag) {
            return Err(ConfigError::FsTagDuplicate(fs.tag.clone()));
        }
        if !fs.socket.is_absolute() {
            return Err(ConfigError::FsSocketRelative {
                tag: fs.tag.clone(),
                socket: fs.socket.clone(),
            });
        }
    }
    Ok(())
}

/// Guest RAM must be whole pages: KVM memory slots are page-granular.
pub fn check_memory(bytes: u64) -> Result<(), ConfigError> {
    match bytes {
        0 => Err(ConfigError::NoMemory),
        b if b % PAGE_SIZE != 0 => Err(ConfigError::MemoryNotPages(b)),
        _ => Ok(()),
    }
}

/// A unicast Ethernet address; written `52:54:00:12:34:56` (lower case) in JSON and
/// wherever it is shown, parsed from that or `52-54-00-12-34-56`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    pub fn new(bytes: [u8; 6]) -> Result<MacAddr, ConfigError> {
        let mac = MacAddr(bytes);
        if bytes[0] & 1 != 0 {
            return Err(ConfigError::MulticastMac(mac));
        }
        Ok(mac)
    }

    pub fn bytes(self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddr {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<MacAddr, ConfigError> {
        let bad = || ConfigError::BadMac(text.to_string());
        let mut bytes = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts
                .next()
                .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        MacAddr::new(bytes)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(text: &str) -> Result<[u8; 6], ConfigError> {
        text.parse::<MacAddr>().map(MacAddr::bytes)
    }

    #[test]
    fn macs_parse_in_either_notation_and_print_in_one() {
        assert_eq!(
            mac("52:54:00:0a:Bc:ff"),
            Ok([0x52, 0x54, 0, 0x0a, 0xbc, 0xff])
        );
        assert_eq!(mac("02-00-00-00-00-01"), Ok([2, 0, 0, 0, 0, 1]));
        for bad in [
            "",
            "52:54:00:0a:bc",
            "52:54:00:0a:bc:ff:00",
            "52:54:00:0a:bc:f",
            "zz:54:00:0a:bc:ff",
            "+1:54:00:0a:bc:ff",
        ] {
            assert_eq!(mac(bad), Err(ConfigError::BadMac(bad.into())), "{bad}");
        }
        let multicast = mac("01:00:5e:00:00:01").unwrap_err().to_string();
        assert!(multicast.contains("multicast"), "{multicast}");
        let parsed: MacAddr = "52-54-00-0A-BC-FF".parse().unwrap();
        assert_eq!(parsed.to_string(), "52:54:00:0a:bc:ff");
    }

    fn sample() -> MachineConfig {
        MachineConfig {
            cpus: 2,
            // Not a whole number of MiB: the old flag codec sent it as "1M".
            memory: 1536 << 10,
            kernel: "/m/vmlinux".into(),
            initrd: Some("/m/initrd.img".into()),
            cmdline: "console=ttyS0 root=/dev/vda1".into(),
            disks: vec![
                DiskConfig {
                    path: "/m/disk,1.raw".into(),
                    read_only: false,
                },
                DiskConfig {
                    path: "/m/seed.iso".into(),
                    read_only: true,
                },
            ],
            nics: vec![
                NetConfig {
                    mac: "52:54:00:01:02:03".parse().unwrap(),
                    backend: NetBackend::Passt("/run/x/passt.sock".into()),
                },
                NetConfig {
                    mac: "52:54:00:01:02:04".parse().unwrap(),
                    backend: NetBackend::Tap("tap0".into()),
                },
            ],
            filesystems: vec![
                FsConfig {
                    tag: "project".into(),
                    socket: "/run/x/fs-0.sock".into(),
                },
                FsConfig {
                    tag: "data".into(),
                    socket: "/run/x/fs-1.sock".into(),
                },
            ],
            nested_virtualization: true,
            serial_log: Some("/m/serial.log".into()),
        }
    }

    #[test]
    fn json_round_trips_exactly() {
        for memory in [1536 << 10, 512 << 10, (3 << 30) + (4 << 10), 5 << 30] {
            let config = MachineConfig { memory, ..sample() };
            let json = serde_json::to_string_pretty(&config).unwrap();
            let back: MachineConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, config, "{json}");
        }
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["memory"], 1_572_864);
        assert_eq!(json["nics"][0]["mac"], "52:54:00:01:02:03");
        assert_eq!(json["nics"][0]["backend"]["passt"], "/run/x/passt.sock");
        assert_eq!(json["nics"][1]["backend"]["tap"], "tap0");
        assert_eq!(json["disks"][1]["read_only"], true);
        assert_eq!(json["filesystems"][1]["tag"], "data");
        assert_eq!(json["filesystems"][1]["socket"], "/run/x/fs-1.sock");
        // A machine without filesystems writes no key for them, as before they existed.
        let bare = MachineConfig {
            filesystems: vec![],
            ..sample()
        };
        let json = serde_json::to_value(&bare).unwrap();
        assert!(json.get("filesystems").is_none(), "{json}");
        let back: MachineConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, bare);
    }

    #[test]
    fn json_may_leave_out_what_has_a_default_but_nothing_unknown() {
        let minimal: MachineConfig =
            serde_json::from_str(r#"{"cpus": 1, "memory": 67108864, "kernel": "/k"}"#).unwrap();
        assert_eq!(
            minimal,
            MachineConfig {
                cpus: 1,
                memory: 64 << 20,
                kernel: "/k".into(),
                initrd: None,
                cmdline: String::new(),
                disks: vec![],
                nics: vec![],
                filesystems: vec![],
                nested_virtualization: false,
                serial_log: None,
            }
        );
        let err = |json: &str| serde_json::from_str::<MachineConfig>(json).unwrap_err();
        let typo = err(r#"{"cpus": 1, "memory": 4096, "kernel": "/k", "memroy": 1}"#);
        assert!(
            typo.to_string().contains("unknown field `memroy`"),
            "{typo}"
        );
        let nic = err(r#"{"cpus": 1, "memory": 4096, "kernel": "/k",
            "nics": [{"mac": "52:54:00:zz:00:01", "backend": {"passt": "/s"}}]}"#);
        assert!(nic.to_string().contains("not a MAC address"), "{nic}");
        assert_eq!(nic.line(), 2);
        let backend = err(r#"{"cpus": 1, "memory": 4096, "kernel": "/k",
            "nics": [{"mac": "52:54:00:00:00:01", "backend": {"vde": "/s"}}]}"#);
        assert!(
            backend.to_string().contains("unknown variant `vde`"),
            "{backend}"
        );
        let fs = err(r#"{"cpus": 1, "memory": 4096, "kernel": "/k",
            "filesystems": [{"tag": "a", "socket": "/s", "readonly": true}]}"#);
        assert!(fs.to_string().contains("unknown field `readonly`"), "{fs}");
    }

    #[test]
    fn validation_names_the_value() {
        assert_eq!(sample().validate(), Ok(()));
        let cpus = MachineConfig {
            cpus: 0,
            ..sample()
        };
        assert_eq!(cpus.validate(), Err(ConfigError::Cpus(0)));
        let odd = MachineConfig {
            memory: 1000,
            ..sample()
        };
        let err = odd.validate().unwrap_err().to_string();
        assert!(
            err.contains("1000 bytes") && err.contains("4096 bytes"),
            "{err}"
        );
        assert_eq!(check_memory(0), Err(ConfigError::NoMemory));
    }

    #[test]
    fn filesystem_tags_fit_the_device_and_sockets_are_absolute() {
        let with = |filesystems: &[(&str, &str)]| MachineConfig {
            filesystems: filesystems
                .iter()
                .map(|&(tag, socket)| FsConfig {
                    tag: tag.into(),
                    socket: socket.into(),
                })
                .collect(),
            ..sample()
        };
        let longest = "t".repeat(FS_TAG_MAX);
        assert_eq!(with(&[(&longest, "/s")]).validate(), Ok(()));
        // Bytes count, not characters: 18 two-byte letters fill the field exactly.
        assert_eq!(with(&[(&"é".repeat(18), "/s")]).validate(), Ok(()));
        let long = with(&[(&"é".repeat(19), "/s")]).validate().unwrap_err();
        assert_eq!(
            long.to_string(),
            format!(
                "virtio-fs tag {:?} is 38 bytes; the device holds at most 36",
                "é".repeat(19)
            )
        );
        assert_eq!(with(&[("", "/s")]).validate(), Err(ConfigError::FsTagEmpty));
        assert_eq!(
            with(&[("a", "/s"), ("b", "/t"), ("a", "/u")]).validate(),
            Err(ConfigError::FsTagDuplicate("a".into()))
        );
        let relative = with(&[("a", "run/fs.sock")]).validate().unwrap_err();
        assert_eq!(
            relative.to_string(),
            "virtio-fs \"a\": the backend socket run/fs.sock is not an absolute path"
        );
    }
}
