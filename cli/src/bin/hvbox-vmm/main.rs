//! `hvbox-vmm`: one VM on hvbox's embedded VMM, in the foreground, in a process of
//! its own that links the VMM and little else (no async runtime, HTTP, TLS or YAML),
//! so a running machine costs the host its guest RAM and not much more. `hvbox up`
//! and `hvbox vmm run` start it; see `hvbox vmm run --help` for what it does.

mod args;
mod confine;

use anyhow::Result;
use hvbox_vmm::arch::cpuid::CpuidMask;
use hvbox_vmm::confine::Seccomp;
use hvbox_vmm::RunOptions;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("hvbox-vmm: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hvbox: error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

fn run(args: args::Args) -> Result<ExitCode> {
    // Before anything else, so every thread inherits it.
    hvbox_vmm::confine::no_new_privs()
        .map_err(|e| anyhow::anyhow!("setting PR_SET_NO_NEW_PRIVS: {e}"))?;
    let config = args.config.expect("parse requires --config");
    let options = RunOptions {
        timeout: args.timeout.map(Duration::from_secs),
        cpuid_mask: CpuidMask {
            emulator_safe: args.mask_unemulated_cpuid,
            ..Default::default()
        },
        control_socket: args.control_socket,
        console_socket: args.console_socket,
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
                    eprintln!("hvbox: cannot resume: {}", describe(&e));
                    return Ok(ExitCode::from(2));
                }
            }
        }
    };
    // Everything the guest needs from the host is open now: what follows only takes
    // rights away, before any thread that serves the guest starts.
    confine::confine(&config, &options)?;
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

/// The error and its causes on one line, a cause already quoted not repeated (as
/// `hvbox` itself writes them).
fn describe(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
