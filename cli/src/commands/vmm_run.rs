//! `hvbox vmm run`: one VM on the embedded VMM, in the foreground. The machine is the
//! `--config` file, or the one its flags describe; the run's bounds and sockets are
//! flags either way.

use crate::args::VmmRunArgs;
use crate::machine::state::new_mac;
use crate::spec::Size;
use anyhow::{anyhow, bail, Result};
use hvbox_vmm::arch::cpuid::CpuidMask;
use hvbox_vmm::{DiskConfig, MacAddr, MachineConfig, NetBackend, NetConfig, RunOptions};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(args: &VmmRunArgs) -> Result<ExitCode> {
    let config = match &args.config {
        Some(config) => MachineConfig::clone(config),
        None => from_flags(args)?,
    };
    let options = RunOptions {
        timeout: args.timeout.map(Duration::from_secs),
        cpuid_mask: CpuidMask {
            emulator_safe: args.mask_unemulated_cpuid,
            ..Default::default()
        },
        control_socket: args.control_socket.clone(),
        console_socket: args.console_socket.clone(),
    };
    let (exit, stats) = hvbox_vmm::build(&config, &options)?.run()?;
    eprintln!("hvbox: VM exited: {exit}");
    if args.stats {
        eprintln!(
            "hvbox: peak RSS {} KiB, guest memory touched {} KiB, VMM overhead {} KiB",
            stats.peak_rss / 1024,
            stats.guest_touched / 1024,
            stats.overhead() / 1024
        );
    }
    Ok(ExitCode::from(exit.exit_code()))
}

/// The machine the flags describe.
fn from_flags(args: &VmmRunArgs) -> Result<MachineConfig> {
    let memory = Size::parse(&args.memory).map_err(|e| anyhow!("--memory: {e}"))?;
    let disks = args
        .disks
        .iter()
        .map(|d| parse_disk(d))
        .collect::<Result<Vec<_>>>()?;
    Ok(MachineConfig {
        cpus: args.cpus,
        memory: memory.bytes(),
        kernel: args
            .kernel
            .clone()
            .expect("clap requires --kernel without --config"),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        disks,
        nics: parse_nics(&args.nets, &args.macs)?,
        nested_virtualization: args.nested_virtualization,
        serial_log: args.serial_log.clone(),
    })
}

fn parse_disk(text: &str) -> Result<DiskConfig> {
    let (path, read_only) = match text.rsplit_once(',') {
        Some((path, "ro")) => (path, true),
        Some((path, "rw")) => (path, false),
        Some((_, other)) => bail!("--disk {text}: unknown option {other:?} (use ro or rw)"),
        None => (text, false),
    };
    if path.is_empty() {
        bail!("--disk needs a path");
    }
    Ok(DiskConfig {
        path: path.into(),
        read_only,
    })
}

/// One NIC per `--net`, each with the `--mac` in the same position or a new one.
fn parse_nics(nets: &[String], macs: &[String]) -> Result<Vec<NetConfig>> {
    if macs.len() > nets.len() {
        bail!(
            "{} --mac for {} --net: each --mac goes with the --net in the same position",
            macs.len(),
            nets.len()
        );
    }
    nets.iter()
        .enumerate()
        .map(|(i, net)| {
            let backend = parse_net(net)?;
            let mac = match macs.get(i) {
                Some(mac) => mac.parse::<MacAddr>().map_err(|e| anyhow!("--mac: {e}"))?,
                None => new_mac()?,
            };
            Ok(NetConfig { mac, backend })
        })
        .collect()
}

/// Longest interface name Linux takes (IFNAMSIZ without the NUL).
const MAX_IFNAME: usize = 15;

fn parse_net(text: &str) -> Result<NetBackend> {
    match text.split_once(':') {
        Some(("passt", socket)) if !socket.is_empty() => {
            if !Path::new(socket).exists() {
                bail!("--net {text}: no socket at {socket}; start `passt --socket {socket}` first");
            }
            Ok(NetBackend::Passt(socket.into()))
        }
        Some(("tap", name)) if !name.is_empty() => {
            if name.len() > MAX_IFNAME || name.contains(['/', ' ']) {
                bail!("--net {text}: {name:?} is not a network interface name");
            }
            Ok(NetBackend::Tap(name.into()))
        }
        _ => bail!(
            "--net {text}: use passt:SOCKET (a running passt's UNIX socket) \
             or tap:NAME (an existing TAP interface)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn net_backends_parse() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("passt.sock");
        std::fs::write(&socket, "").unwrap();
        let passt = format!("passt:{}", socket.display());
        let nics = parse_nics(&nets(&[&passt, "tap:tap0"]), &nets(&["52:54:00:00:00:07"])).unwrap();
        assert_eq!(nics[0].backend, NetBackend::Passt(socket.clone()));
        assert_eq!(nics[0].mac.to_string(), "52:54:00:00:00:07");
        assert_eq!(nics[1].backend, NetBackend::Tap("tap0".into()));
        // Generated: locally administered, unicast.
        assert_eq!(nics[1].mac.bytes()[0] & 0b11, 0b10);
    }

    #[test]
    fn bad_net_values_say_what_is_expected() {
        let err = |n: &[&str], m: &[&str]| parse_nics(&nets(n), &nets(m)).unwrap_err().to_string();
        assert!(err(&["vde:/x"], &[]).contains("use passt:SOCKET"));
        assert!(err(&["passt:"], &[]).contains("use passt:SOCKET"));
        assert!(err(&["passt:/nonexistent/sock"], &[]).contains("start `passt --socket"));
        assert!(err(&["tap:a-name-far-too-long"], &[]).contains("not a network interface name"));
        assert!(err(&["tap:tap0"], &["52:54:00"]).contains("--mac"));
        assert!(
            err(&["tap:tap0"], &["52:54:00:00:00:01", "52:54:00:00:00:02"])
                .contains("same position")
        );
    }
}
