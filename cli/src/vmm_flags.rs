//! The values of `hvbox vmm run`'s flags, parsed as clap reads them: a bad one is a
//! usage error (exit status 2) that names its flag.

use crate::spec::Size;
use hvbox_vmm::config::{check_memory, FS_TAG_MAX};
use hvbox_vmm::{DiskConfig, FsConfig, MachineConfig, NetBackend};
use std::path::Path;

/// `--config FILE`: a [`MachineConfig`] as JSON; errors carry FILE:LINE:COLUMN.
/// Boxed: it is by far the largest of the arguments.
pub fn config_file(path: &str) -> Result<Box<MachineConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let config: MachineConfig = serde_json::from_str(&text).map_err(|e| {
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&position).unwrap_or(&message);
        format!("{path}:{}:{}: {message}", e.line(), e.column())
    })?;
    config.validate().map_err(|e| format!("{path}: {e}"))?;
    Ok(Box::new(config))
}

/// `--memory SIZE`: a size with its unit (`512M`, `1536K`), in whole pages.
pub fn memory(text: &str) -> Result<u64, String> {
    let bytes = Size::parse(text)?.bytes();
    check_memory(bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// `--disk PATH[,ro|,rw]`.
pub fn disk(text: &str) -> Result<DiskConfig, String> {
    let (path, read_only) = match text.rsplit_once(',') {
        Some((path, "ro")) => (path, true),
        Some((path, "rw")) => (path, false),
        Some((_, other)) => return Err(format!("unknown option {other:?} (use ro or rw)")),
        None => (text, false),
    };
    if path.is_empty() {
        return Err("no path".into());
    }
    Ok(DiskConfig {
        path: path.into(),
        read_only,
    })
}

/// Longest interface name Linux takes (IFNAMSIZ without the NUL).
const MAX_IFNAME: usize = 15;

/// `--net passt:SOCKET` (a running passt's socket) or `--net tap:NAME`.
pub fn net(text: &str) -> Result<NetBackend, String> {
    match text.split_once(':') {
        Some(("passt", socket)) if !socket.is_empty() => {
            if !Path::new(socket).exists() {
                return Err(format!(
                    "no socket at {socket}; start `passt --socket {socket}` first"
                ));
            }
            Ok(NetBackend::Passt(socket.into()))
        }
        Some(("tap", name)) if !name.is_empty() => {
            if name.len() > MAX_IFNAME || name.contains(['/', ' ']) {
                return Err(format!("{name:?} is not a network interface name"));
            }
            Ok(NetBackend::Tap(name.into()))
        }
        _ => Err("use passt:SOCKET (a running passt's UNIX socket) \
                  or tap:NAME (an existing TAP interface)"
            .into()),
    }
}

/// `--fs TAG=SOCKET`: a virtio-fs device the guest mounts by TAG, served by a
/// running virtiofsd listening on SOCKET (made absolute here).
pub fn fs(text: &str) -> Result<FsConfig, String> {
    let usage = "use TAG=SOCKET (the tag the guest mounts, a running virtiofsd's socket)";
    let Some((tag, socket)) = text.split_once('=') else {
        return Err(usage.into());
    };
    if tag.is_empty() || socket.is_empty() {
        return Err(usage.into());
    }
    if tag.len() > FS_TAG_MAX {
        return Err(format!(
            "tag {tag:?} is {} bytes; virtio-fs holds at most {FS_TAG_MAX}",
            tag.len()
        ));
    }
    if !Path::new(socket).exists() {
        return Err(format!(
            "no socket at {socket}; start `virtiofsd --socket-path {socket} --shared-dir DIR` first"
        ));
    }
    let socket = std::path::absolute(socket).map_err(|e| format!("{socket}: {e}"))?;
    Ok(FsConfig {
        tag: tag.into(),
        socket,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_whole_pages() {
        assert_eq!(memory("1536K"), Ok(1536 << 10));
        assert_eq!(memory("1G"), Ok(1 << 30));
        assert!(memory("abc").unwrap_err().contains("not a size"));
        assert!(memory("1025K").unwrap_err().contains("4 KiB pages"));
    }

    #[test]
    fn disks_take_ro_or_rw() {
        assert_eq!(
            disk("/d/a,b.raw,ro"),
            Ok(DiskConfig {
                path: "/d/a,b.raw".into(),
                read_only: true
            })
        );
        assert!(!disk("/d/x.raw").unwrap().read_only);
        assert!(disk("/d/x.raw,rx").unwrap_err().contains("use ro or rw"));
        assert!(disk(",ro").is_err());
    }

    #[test]
    fn net_backends_parse_and_bad_ones_say_what_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("passt.sock");
        std::fs::write(&socket, "").unwrap();
        assert_eq!(
            net(&format!("passt:{}", socket.display())),
            Ok(NetBackend::Passt(socket))
        );
        assert_eq!(net("tap:tap0"), Ok(NetBackend::Tap("tap0".into())));
        assert!(net("vde:/x").unwrap_err().contains("use passt:SOCKET"));
        assert!(net("passt:").unwrap_err().contains("use passt:SOCKET"));
        assert!(net("passt:/nonexistent/sock")
            .unwrap_err()
            .contains("start `passt --socket"));
        assert!(net("tap:a-name-far-too-long")
            .unwrap_err()
            .contains("not a network interface name"));
    }

    #[test]
    fn filesystems_take_a_tag_and_a_live_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fs.sock");
        std::fs::write(&socket, "").unwrap();
        assert_eq!(
            fs(&format!("share={}", socket.display())),
            Ok(FsConfig {
                tag: "share".into(),
                socket: socket.clone(),
            })
        );
        // Everything after the first `=` is the path.
        let odd = dir.path().join("a=b.sock");
        std::fs::write(&odd, "").unwrap();
        assert_eq!(fs(&format!("t={}", odd.display())).unwrap().socket, odd);
        for bad in ["share", "=/s", "share="] {
            assert!(fs(bad).unwrap_err().contains("use TAG=SOCKET"), "{bad}");
        }
        let long = fs(&format!("{}={}", "t".repeat(37), socket.display())).unwrap_err();
        assert!(
            long.contains("37 bytes") && long.contains("at most 36"),
            "{long}"
        );
        assert!(fs("share=/nonexistent/fs.sock")
            .unwrap_err()
            .contains("start `virtiofsd --socket-path /nonexistent/fs.sock"));
    }

    #[test]
    fn config_errors_point_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.json");
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            config_file(path.to_str().unwrap())
        };
        let p = path.display();
        assert_eq!(
            write("{\n  \"cpus\": 1,\n  \"memroy\": 4096\n}").unwrap_err(),
            format!("{p}:3:10: unknown field `memroy`, expected one of `cpus`, `memory`, `kernel`, `initrd`, `cmdline`, `disks`, `nics`, `filesystems`, `nested_virtualization`, `serial_log`")
        );
        assert_eq!(
            write("{\"cpus\": 1,\n \"memory\": \"1G\"").unwrap_err(),
            format!("{p}:2:15: invalid type: string \"1G\", expected u64")
        );
        let invalid = write(r#"{"cpus": 1, "memory": 1000, "kernel": "/k"}"#).unwrap_err();
        assert!(
            invalid.starts_with(&format!("{p}: memory of 1000 bytes")),
            "{invalid}"
        );
        let config = write(r#"{"cpus": 2, "memory": 1572864, "kernel": "/k"}"#).unwrap();
        assert_eq!((config.cpus, config.memory), (2, 1536 << 10));
        assert!(config_file("/nonexistent/vm.json")
            .unwrap_err()
            .contains("cannot read /nonexistent/vm.json"));
    }
}
