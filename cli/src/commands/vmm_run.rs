//! `hvbox vmm run`: one VM on the embedded VMM, in the foreground. The machine is the
//! `--config` file, or the one its flags describe; the run's bounds and sockets are
//! flags either way.

use super::BadArguments;
use crate::args::VmmRunArgs;
use crate::machine::state::new_mac;
use anyhow::{Context, Result};
use hvbox_vmm::config::check_filesystems;
use hvbox_vmm::{MacAddr, MachineConfig, NetBackend, NetConfig};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

/// Becomes `hvbox-vmm` (exec): the VM runs in the VMM's own small process, this big
/// one gone. The machine goes to it as JSON in a memory file it inherits and closes.
pub fn run(args: &VmmRunArgs) -> Result<ExitCode> {
    let config = match &args.config {
        Some(config) => MachineConfig::clone(config),
        None => from_flags(args)?,
    };
    let program = crate::vmm_program::vmm_program()?;
    let json = memory_file(&serde_json::to_vec(&config)?)?;
    let mut vmm = std::process::Command::new(&program);
    vmm.args(vmm_args(args, json.as_raw_fd()));
    let err = vmm.exec();
    Err(err).with_context(|| format!("starting {}", program.display()))
}

/// hvbox-vmm's arguments for `args`, the machine read from descriptor `config`.
fn vmm_args(args: &VmmRunArgs, config: i32) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["--config-fd".into(), config.to_string().into()];
    if let Some(secs) = args.timeout {
        argv.extend(["--timeout".into(), secs.to_string().into()]);
    }
    for (flag, path) in [
        ("--control-socket", &args.control_socket),
        ("--console-socket", &args.console_socket),
        ("--restore", &args.restore),
    ] {
        if let Some(path) = path {
            argv.extend([flag.into(), path.into()]);
        }
    }
    for (flag, on) in [
        ("--stats", args.stats),
        ("--mask-unemulated-cpuid", args.mask_unemulated_cpuid),
        ("--no-seccomp", args.no_seccomp),
    ] {
        if on {
            argv.push(flag.into());
        }
    }
    argv
}

/// An anonymous file holding `bytes`, open across exec (no close-on-exec).
fn memory_file(bytes: &[u8]) -> Result<File> {
    // SAFETY: the name is a NUL-terminated string; the result is checked.
    let fd = unsafe { libc::memfd_create(c"hvbox-vm.json".as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create for the VMM's machine");
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes).context("writing the VMM's machine")?;
    Ok(file)
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
    use crate::args::{Cli, Command, VmmCommand};
    use clap::Parser;

    #[test]
    fn the_run_flags_go_to_hvbox_vmm_and_the_machine_in_its_config() {
        let cli = Cli::try_parse_from([
            "hvbox",
            "vmm",
            "run",
            "--kernel",
            "/k",
            "--timeout",
            "9",
            "--stats",
            "--no-seccomp",
            "--control-socket",
            "/r/c.sock",
            "--memory",
            "64M",
        ])
        .unwrap();
        let Command::Vmm(VmmCommand::Run(args)) = cli.command else {
            panic!("not vmm run");
        };
        let argv = vmm_args(&args, 9);
        assert_eq!(
            argv,
            [
                "--config-fd",
                "9",
                "--timeout",
                "9",
                "--control-socket",
                "/r/c.sock",
                "--stats",
                "--no-seccomp",
            ]
            .map(OsString::from)
        );
    }

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
