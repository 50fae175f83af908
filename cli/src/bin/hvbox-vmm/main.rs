//! `hvbox-vmm`: one VM on hvbox's embedded VMM, in the foreground, in a process of
//! its own that links the VMM and little else (no async runtime, HTTP, TLS or YAML),
//! so a running machine costs the host its guest RAM and not much more. `hvbox up`
//! and `hvbox vmm run` start it; see `hvbox vmm run --help` for what it does.

mod args;
mod confine;
// Shared with `hvbox`: the same file, compiled into each program.
#[path = "../../error_text.rs"]
mod error_text;

use anyhow::Result;
use error_text::describe;
use hvbox_vmm::arch::cpuid::CpuidMask;
use hvbox_vmm::confine::Seccomp;
use hvbox_vmm::RunOptions;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    exit_on_panic();
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
        eprintln!("hvbox: vCPU {}", stats.exits);
    }
    Ok(ExitCode::from(exit.exit_code()))
}

/// Release builds abort on a panic (`panic = "abort"`), and an abort dumps core:
/// for the VMM, a file as large as the guest's RAM holding the guest's secrets.
/// After the panic's message, exit at once with Rust's panic status instead.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(101) }
    }));
}
