//! `hvbox vmm run`: one VM on the embedded VMM, in the foreground.

use crate::args::VmmRunArgs;
use crate::spec::Size;
use anyhow::{anyhow, bail, Result};
use hvbox_vmm::arch::cpuid::CpuidMask;
use hvbox_vmm::{DiskConfig, MachineConfig, RunOptions};
use std::process::ExitCode;
use std::time::Duration;

pub fn run(args: &VmmRunArgs) -> Result<ExitCode> {
    let memory = Size::parse(&args.memory).map_err(|e| anyhow!("--memory: {e}"))?;
    let disks = args
        .disks
        .iter()
        .map(|d| parse_disk(d))
        .collect::<Result<Vec<_>>>()?;
    let config = MachineConfig {
        cpus: args.cpus,
        memory: memory.bytes(),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        disks,
        nics: vec![],
        nested_virtualization: args.nested_virtualization,
        serial_log: args.serial_log.clone(),
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
    let (exit, stats) = hvbox_vmm::run_with_stats(&config, &options)?;
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
