//! `hvbox`: declarative virtual machines from a project's `hvbox.yaml`.

mod args;
mod auto_ports;
mod boot_cache;
mod boot_failure;
mod boot_stage;
mod boot_status;
mod commands;
mod daemons;
mod engine;
mod error_text;
mod guest_shares;
mod guest_text;
mod host_proxy;
mod identity;
mod json_fields;
mod kernel_install;
mod keys;
mod kubevirt;
mod launch;
mod lockfile;
mod log_pipe;
mod log_tail;
mod machine;
mod mount_check;
mod oci;
mod process;
mod progress;
mod project;
mod provision;
mod resume;
mod seed;
mod share_requests;
mod spec;
mod ssh;
mod ssh_config_file;
mod supervisor;
mod templates;
mod virtiofs;
mod vmm_flags;
mod vmm_program;

use clap::Parser;
use error_text::describe;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Several problems in a spec: each on its own line, then how many.
            if let Some(problems) = err.downcast_ref::<spec::SpecProblems>() {
                for line in problems.details() {
                    eprintln!("{line}");
                }
            }
            eprintln!("hvbox: error: {}", describe(&err));
            if err.is::<commands::BadArguments>() {
                // What clap's own usage errors exit with.
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
