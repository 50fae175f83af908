//! `hvbox upgrade-kernel [NAME]`: install a new kernel in a guest, boot it from the
//! disk, and fall back to the previous kernel when it does not come up.

use super::halt::stop;
use super::installed_kernel::{self, Pin};
use super::select::{Need, Selection};
use crate::args::UpgradeKernelArgs;
use crate::kernel_install::{self, NO_KERNEL_PACKAGE, NO_PACKAGE_MANAGER};
use crate::launch::{self, BootFailure, Booted};
use crate::machine::lock::MachineLock;
use crate::machine::{kernels, Machine, MachineState, RunInfo, RunState};
use crate::process::wait_gone;
use crate::progress::step;
use crate::project::Project;
use crate::spec::Spec;
use crate::ssh;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// How long the guest gets to power off before the reboot into the new kernel.
const HALT_GRACE: Duration = Duration::from_secs(90);

pub fn run(args: &UpgradeKernelArgs) -> Result<ExitCode> {
    let selection = Selection::load(Need::Settings)?;
    let chosen = selection.one(args.name.as_deref(), "upgrade-kernel")?;
    let (project, machine, spec) = (&selection.project, &chosen.machine, chosen.spec()?);
    let _lock = MachineLock::acquire(machine, "upgrade-kernel", false)?;
    let timeout = Duration::from_secs(args.timeout);
    let run_state = machine.run_state();
    if let RunState::NotCreated = run_state {
        bail!(
            "{} is not created yet; {} creates it",
            chosen.subject(),
            chosen.hint("up")
        );
    }
    if args.rollback {
        return rollback(project, machine, spec, run_state, timeout);
    }
    let mut state = machine.load_state()?;
    // The kernel files in /boot before the install: those that appear are the ones
    // installed, which must be what boots next.
    let mut files_before = None;
    let previous = match &run_state {
        RunState::Running(info) => {
            let running = ssh::capture(machine, &state, info.ssh_port, "uname -r")
                .context("asking the guest which kernel it runs")?;
            if !args.no_install {
                files_before = Some(boot_files_in_guest(machine, &state, info)?);
                install(machine, &state, info, args.package.as_deref())?;
            }
            step!("powering the guest off to boot from its disk");
            power_off(machine, &state, info)?;
            Some(running)
        }
        _ if !args.no_install => bail!(
            "{} is stopped; {} first, since the kernel is installed from inside the guest (or pass --no-install to boot a kernel already on its disk)",
            chosen.subject(),
            chosen.hint("up")
        ),
        _ => state.kernels.last().map(|k| k.version.clone()),
    };

    // The disk's default kernel now (the one the guest's bootloader would pick),
    // unless that is not the kernel just installed.
    let pin = match &files_before {
        Some(before) => {
            let menu = hvbox_provisioner::boot_menu(&machine.disk())
                .context("reading the kernels on the machine's disk")?;
            installed_kernel::pin_after_install(&menu, before, state.pinned_kernel.as_deref())
        }
        None => Pin::DiskDefault,
    };
    match &pin {
        Pin::Installed(not_default) => step!("{}", not_default.explain()),
        Pin::Keep(v) => step!("no kernel was installed; {v} stays pinned"),
        Pin::DiskDefault => {}
    }
    state.pinned_kernel = pin.version().map(str::to_string);
    state.save(&machine.state_path())?;
    let attempt = launch::preflight(project, spec)
        .and_then(|checked| launch::boot(machine, spec, checked, timeout, None))
        .and_then(|booted| confirm_running(machine, &booted).map(|()| booted));
    match attempt {
        Ok(booted) => {
            match previous {
                Some(p) if p == booted.kernel_version => match pin {
                    Pin::DiskDefault => {
                        step!("no newer kernel: the guest still boots {p} (the disk's default)")
                    }
                    _ => step!("no newer kernel: the guest still boots {p} (pinned)"),
                },
                Some(p) => {
                    let pinned = match pin {
                        Pin::DiskDefault => "",
                        _ => " (pinned)",
                    };
                    let b = &booted.kernel_version;
                    match hvbox_provisioner::compare_kernel_versions(b, &p) {
                        std::cmp::Ordering::Less => step!(
                            "kernel changed to an older one: {p} -> {b}{pinned} (the disk's default)"
                        ),
                        _ => step!("kernel upgraded: {p} -> {b}{pinned}"),
                    }
                }
                None => step!("the guest runs {}", booted.kernel_version),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            let Some(previous) = previous else {
                return Err(failure.context("the new kernel did not come up and the machine has no earlier kernel to return to"));
            };
            eprintln!("hvbox: the new kernel did not come up: {failure:#}");
            eprintln!(
                "{}",
                crate::progress::line(format_args!("rolling back to {previous}"))
            );
            restore(project, machine, spec, &previous, timeout)?;
            bail!(
                "the kernel upgrade failed and was rolled back: the machine runs {previous} again, pinned until the next `hvbox upgrade-kernel` (`hvbox kernels` lists the history)"
            )
        }
    }
}

/// Install the kernel in the guest: a local package file copied in, or the distro's
/// kernel packages upgraded from its repositories.
fn install(
    machine: &Machine,
    state: &MachineState,
    info: &RunInfo,
    package: Option<&Path>,
) -> Result<()> {
    let guest_file = match package {
        Some(file) => Some(copy_in(machine, state, info, file)?),
        None => None,
    };
    step!("installing the kernel in the guest");
    let script = kernel_install::script(guest_file.as_deref());
    let status = ssh::run_streaming(
        machine,
        state,
        info.ssh_port,
        &format!("sudo sh -c {}", kernel_install::shell_quote(&script)),
        Stdio::null(),
    )?;
    match status.code() {
        Some(0) => Ok(()),
        Some(NO_PACKAGE_MANAGER) => bail!(
            "the guest has neither apt-get nor dnf; install the kernel yourself, then run `hvbox upgrade-kernel --no-install`"
        ),
        Some(NO_KERNEL_PACKAGE) => bail!(
            "apt in the guest has no kernel meta package to upgrade; pass a kernel package with --package"
        ),
        _ => bail!(
            "installing the kernel in the guest failed ({status}); the machine still runs its old kernel"
        ),
    }
}

/// The names of the files in the guest's /boot.
fn boot_files_in_guest(
    machine: &Machine,
    state: &MachineState,
    info: &RunInfo,
) -> Result<Vec<String>> {
    let listing = ssh::capture(machine, state, info.ssh_port, "ls -1A /boot")
        .context("listing the guest's /boot before installing")?;
    Ok(listing.lines().map(str::to_string).collect())
}

/// Copy a package file into the guest's /tmp; returns its path there.
fn copy_in(machine: &Machine, state: &MachineState, info: &RunInfo, file: &Path) -> Result<String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb") || n.ends_with(".rpm"))
        .with_context(|| {
            format!(
                "--package {}: expected a .deb or .rpm kernel package",
                file.display()
            )
        })?;
    let source = std::fs::File::open(file)
        .with_context(|| format!("--package {}: cannot read it", file.display()))?;
    let guest_path = format!("/tmp/hvbox-{name}");
    step!("copying {} into the guest", file.display());
    let status = ssh::run_streaming(
        machine,
        state,
        info.ssh_port,
        &format!("cat > {}", kernel_install::shell_quote(&guest_path)),
        Stdio::from(source),
    )?;
    if !status.success() {
        bail!(
            "copying {} into the guest failed ({status})",
            file.display()
        );
    }
    Ok(guest_path)
}

/// Power off from inside the guest, after flushing its disk: the new kernel must be
/// on the disk before hvbox reads it, and a shutdown through ssh does not depend on
/// the guest handling the power button. The engine's own stop is the fallback.
fn power_off(machine: &Machine, state: &MachineState, info: &RunInfo) -> Result<()> {
    let asked = ssh::capture(
        machine,
        state,
        info.ssh_port,
        "sync && sudo systemctl poweroff --no-block",
    );
    // The supervisor cleans up after itself once the VM is gone.
    if asked.is_ok() && wait_gone(info.supervisor_pid, HALT_GRACE) {
        return Ok(());
    }
    stop(machine, info, HALT_GRACE)
}

/// The guest must report the version hvbox booted: anything else means the boot
/// files and the running kernel disagree.
fn confirm_running(machine: &Machine, booted: &Booted) -> Result<()> {
    let state = machine.load_state()?;
    let running = ssh::capture(machine, &state, booted.info.ssh_port, "uname -r")?;
    if running != booted.kernel_version {
        return Err(BootFailure {
            message: format!(
                "hvbox booted kernel {} but the guest reports {running}",
                booted.kernel_version
            ),
        }
        .into());
    }
    Ok(())
}

/// Stop whatever runs, pin `version` and boot it.
fn restore(
    project: &Project,
    machine: &Machine,
    spec: &Spec,
    version: &str,
    timeout: Duration,
) -> Result<Booted> {
    if let RunState::Running(info) = machine.run_state() {
        stop(machine, &info, Duration::ZERO)?;
    }
    let mut state = machine.load_state()?;
    state.pinned_kernel = Some(version.to_string());
    state.save(&machine.state_path())?;
    let checked = launch::preflight(project, spec)?;
    let booted = launch::boot(machine, spec, checked, timeout, None)
        .with_context(|| format!("booting the previous kernel {version}"))?;
    confirm_running(machine, &booted)?;
    Ok(booted)
}

/// `--rollback`: back to the kernel booted before the current one, and stay there.
fn rollback(
    project: &Project,
    machine: &Machine,
    spec: &Spec,
    run_state: RunState,
    timeout: Duration,
) -> Result<ExitCode> {
    let state = machine.load_state()?;
    let Some(target) = kernels::previous_version(&state.kernels).map(str::to_string) else {
        bail!("the machine has booted only one kernel, so there is nothing to roll back to (`hvbox kernels` lists the history)");
    };
    if let RunState::Running(info) = &run_state {
        step!("powering the guest off to boot {target}");
        power_off(machine, &state, info)?;
    }
    restore(project, machine, spec, &target, timeout)?;
    step!("the machine runs {target}, pinned; `hvbox upgrade-kernel --no-install` returns to the disk's default kernel"
    );
    Ok(ExitCode::SUCCESS)
}
