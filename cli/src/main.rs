//! `hvbox`: declarative virtual machines from a project's `hvbox.yaml`.

mod args;
mod commands;
mod engine;
mod keys;
mod machine;
mod process;
mod project;
mod spec;
mod ssh;
mod supervisor;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hvbox: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
