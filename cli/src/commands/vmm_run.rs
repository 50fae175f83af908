//! `hvbox vmm run`: one VM on the embedded VMM, in the foreground. The machine is the
//! `--config` file, or the one its flags describe; the run's bounds and sockets are
//! flags either way.

use super::BadArguments;
use crate::args::VmmRunArgs;
use crate::machine::state::new_mac;
use anyhow::Result;
use hvbox_vmm::arch::cpuid::CpuidMask;
use hvbox_vmm::config::check_filesystems;
use hvbox_vmm::confine::Seccomp;
use hvbox_vmm::{MacAddr, MachineConfig, NetBackend, NetConfig, RunOptions};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(args: &VmmRunArgs) -> Result<ExitCode> {
    // Before anything else, so every thread inherits it.
    hvbox_vmm::confine::no_new_privs()
        .map_err(|e| anyhow::anyhow!("setting PR_SET_NO_NEW_PRIVS: {e}"))?;
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
        seccomp: match args.no_seccomp {
            true => Seccomp::Off,
            false => Seccomp::WholeProcess,
        },
    };
    let machine = match &args.restore {
        None => hvbox_vmm::build(&config, &options)?,
        Some(path) => {
            let restored = std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))
                .and_then(|file| Ok(hvbox_vmm::restore(&config, &options, &file)?));
            match restored {
                Ok(machine) => {
                    eprintln!("hvbox: continuing the machine saved in {}", path.display());
                    machine
                }
                Err(e) => {
                    eprintln!("hvbox: cannot resume: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
    };
    // Everything the guest needs from the host is open now: what follows only takes
    // rights away, before any thread that serves the guest starts.
    super::vmm_confine::confine(&config, &options)?;
    let (exit, stats) = machine.run()?;
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

/// The machine the flags describe (each value already parsed by clap).
fn from_flags(args: &VmmRunArgs) -> Result<MachineConfig> {
    check_filesystems(&args.filesystems).map_err(|e| BadArguments(format!("--fs: {e}")))?;
    Ok(MachineConfig {
        cpus: args.cpus,
        memory: args.memory,
        kernel: args
            .kernel
            .clone()
            .expect("clap requires --kernel without --config"),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        disks: args.disks.clone(),
        nics: pair_nics(&args.nets, &args.macs)?,
        filesystems: args.filesystems.clone(),
        nested_virtualization: args.nested_virtualization,
        serial_log: args.serial_log.clone(),
    })
}

/// One NIC per `--net`, each with the `--mac` in the same position or a new one.
fn pair_nics(nets: &[NetBackend], macs: &[MacAddr]) -> Result<Vec<NetConfig>> {
    if macs.len() > nets.len() {
        return Err(BadArguments(format!(
            "--mac: {} --mac for {} --net; each --mac goes with the --net in the same position",
            macs.len(),
            nets.len()
        ))
        .into());
    }
    nets.iter()
        .enumerate()
        .map(|(i, backend)| {
            let mac = match macs.get(i) {
                Some(&mac) => mac,
                None => new_mac()?,
            };
            Ok(NetConfig {
                mac,
                backend: backend.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_pair_with_nets_by_position_and_the_rest_are_made_up() {
        let nets = [
            NetBackend::Tap("tap0".into()),
            NetBackend::Tap("tap1".into()),
        ];
        let given: MacAddr = "52:54:00:00:00:07".parse().unwrap();
        let nics = pair_nics(&nets, &[given]).unwrap();
        assert_eq!(nics[0].mac, given);
        assert_eq!(nics[1].backend, NetBackend::Tap("tap1".into()));
        // Generated: locally administered, unicast.
        assert_eq!(nics[1].mac.bytes()[0] & 0b11, 0b10);
        let err = pair_nics(&nets[..1], &[given, given]).unwrap_err();
        assert!(err.is::<BadArguments>());
        assert!(err.to_string().contains("same position"), "{err}");
    }
}
