//! One function per command; each takes parsed options and returns an exit code.

mod box_add;
mod box_build;
mod box_export;
mod box_fetch;
mod box_list;
mod box_prune;
mod box_remove;
mod box_search;
mod box_update;
mod complete_names;
mod confirm;
mod console;
mod copy;
mod destroy;
mod export_kubevirt;
mod generate;
mod halt;
mod in_parallel;
mod init;
mod installed_kernel;
mod kernels;
mod list;
mod logs;
mod port;
mod provision;
mod reload;
mod select;
mod snapshot;
mod spec_manual;
mod ssh;
mod ssh_config;
mod status;
mod suspend;
mod table;
mod up;
mod upgrade_kernel;
mod validate;
mod vmm_run;

use crate::args::{BoxCommand, Cli, Command, ExportCommand, SnapshotCommand, VmmCommand};
use anyhow::Result;
use std::process::ExitCode;

/// Arguments clap accepted that do not go together; exits with status 2, as clap's
/// own usage errors do.
#[derive(Debug)]
pub struct BadArguments(pub String);

impl std::fmt::Display for BadArguments {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadArguments {}

pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(dir) = &cli.project {
        enter(dir)?;
    }
    match cli.command {
        Command::Init {
            box_name,
            template,
            list_templates,
            force,
        } => match (list_templates, template) {
            (true, _) => init::list_templates(),
            (false, Some(name)) => init::from_template(&name, box_name.as_deref(), force),
            (false, None) => init::run(box_name.as_deref().unwrap_or("debian-12"), force),
        },
        Command::Validate { file } => validate::run(file),
        Command::Schema => {
            print!("{}", crate::spec::schema::text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(args) => up::run(&args),
        Command::Provision { names } => provision::run(&names),
        Command::Ssh { name, command } => ssh::run(name.as_deref(), &command),
        Command::Console { name } => console::run(name.as_deref()),
        Command::Copy { paths } => copy::run(&paths),
        Command::Logs { name, follow } => logs::run(name.as_deref(), follow),
        Command::Status { names, json } => status::run(&names, json),
        Command::List { json } => list::run(json),
        Command::Port { name, json } => port::run(name.as_deref(), json),
        Command::Halt { names, timeout } => halt::run(&names, timeout),
        Command::Destroy { names, force } => destroy::run(&names, force),
        Command::Suspend { names } => suspend::run(&names),
        Command::Resume(args) => up::resume(&args),
        Command::Snapshot(SnapshotCommand::Save {
            name,
            machine,
            live,
        }) => snapshot::save(machine.as_deref(), &name, live),
        Command::Snapshot(SnapshotCommand::Restore {
            name,
            machine,
            force,
        }) => snapshot::restore(machine.as_deref(), &name, force),
        Command::Snapshot(SnapshotCommand::List { machine, json }) => {
            snapshot::list(machine.as_deref(), json)
        }
        Command::Snapshot(SnapshotCommand::Delete { name, machine }) => {
            snapshot::delete(machine.as_deref(), &name)
        }
        Command::Reload(args) => reload::run(&args),
        Command::SshConfig { names, include } => match include {
            true => ssh_config::include(),
            false => ssh_config::run(&names),
        },
        Command::UpgradeKernel(args) => upgrade_kernel::run(&args),
        Command::Kernels { name, json } => kernels::run(name.as_deref(), json),
        Command::Box(BoxCommand::Build(args)) => box_build::run(args),
        Command::Box(BoxCommand::List { json }) => box_list::run(json),
        Command::Box(BoxCommand::Search { term, json }) => box_search::run(term.as_deref(), json),
        Command::Box(BoxCommand::Add(args)) => box_add::run(&args),
        Command::Box(BoxCommand::Export(args)) => box_export::run(&args),
        Command::Box(BoxCommand::Remove(args)) => box_remove::run(&args),
        Command::Box(BoxCommand::Prune { dry_run }) => box_prune::run(dry_run),
        Command::Box(BoxCommand::Update { quiet }) => box_update::run(quiet),
        Command::Export(ExportCommand::Kubevirt(args)) => export_kubevirt::run(&args),
        Command::Vmm(VmmCommand::Run(args)) => vmm_run::run(&args),
        Command::Completions { shell } => generate::completions(shell),
        Command::Man { page, dir } => generate::man(&page, dir.as_deref()),
        Command::CompleteNames { words } => Ok(complete_names::run(&words)),
        Command::Supervise { machine_dir } => {
            crate::supervisor::run(&machine_dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--project DIR` / `-C DIR`: the command runs as if started in DIR (as `git -C`),
/// so it acts on the project there, or in DIR's nearest parent with a spec.
fn enter(dir: &std::path::Path) -> Result<()> {
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(BadArguments(format!("--project {}: {why}", dir.display())).into());
    }
    std::env::set_current_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot enter {} (--project): {e}", dir.display()))
}
