//! `hvbox up [NAME…]`: create each machine on first use, then boot it, wait for
//! ssh and run the provision steps that have not completed yet; several machines at
//! once (`--jobs`), started in the order given (default: the spec's).

use super::box_fetch::{self, Resolve};
use super::in_parallel::{self, for_each_parallel};
use super::port::Forwards;
use super::select::{Need, Selection, Target};
use crate::args::UpArgs;
use crate::boot_cache::BootCache;
use crate::engine;
use crate::guest_shares::GuestShares;
use crate::launch;
use crate::machine::lock::MachineLock;
use crate::machine::{Machine, MachineState, RunInfo, RunState};
use crate::progress::step;
use crate::project::Project;
use crate::provision;
use crate::resume::{self, Resumed};
use crate::spec::{ProjectSpec, Size, Spec};
use anyhow::{bail, Context, Result};
use hvbox_boxes::{BoxArtifacts, Progress, Store};
use hvbox_provisioner::clone_disk;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(args: &UpArgs) -> Result<ExitCode> {
    let selection = Selection::load(Need::Settings)?;
    selection.project.refresh_schema();
    let targets = selection.many(&args.names, false)?;
    let result = for_each_parallel(&targets, in_parallel::jobs(args.jobs), |target| {
        // Held until the machine answers ssh: a second `up` fails at once instead of
        // creating or booting the same machine twice.
        let _lock = MachineLock::acquire(&target.machine, "up", true)?;
        start(&selection, target, args)
    });
    // For `hvbox list` (creating a machine records it too), also for machines made
    // before the store kept projects; an `up` refused before anything was made
    // leaves the cache alone.
    if targets.iter().any(|t| t.machine.is_created()) {
        let store = Store::open_default();
        if let Err(e) = store.and_then(|s| s.register_project(&selection.project.root)) {
            eprintln!("hvbox: warning: {e}");
        }
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `hvbox resume [NAME…]`: `up` for the suspended machines among those named; the
/// others are left as they are, with a line saying why.
pub fn resume(args: &UpArgs) -> Result<ExitCode> {
    let selection = Selection::load(Need::Settings)?;
    let targets = selection.many(&args.names, false)?;
    for_each_parallel(&targets, in_parallel::jobs(args.jobs), |target| {
        let _lock = MachineLock::acquire(&target.machine, "resume", true)?;
        match target.machine.run_state() {
            RunState::Suspended => start(&selection, target, args),
            RunState::Running(_) => {
                step!("machine is already running");
                Ok(())
            }
            other => {
                step!(
                    "machine is {}, not suspended; {} starts it",
                    other.label(),
                    target.hint("up")
                );
                Ok(())
            }
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Shared folders a suspend or snapshot took out of the running machine, and did
/// not put back because it was cut short (its `hvbox` killed), go back in.
fn recover_shares(machine: &Machine, info: &RunInfo) -> Result<()> {
    if !crate::share_requests::any_unplugged(&info.runtime_dir) {
        return Ok(());
    }
    let Some(config) = crate::supervisor::launch_config(machine)? else {
        return Ok(());
    };
    let engine = engine::of_kind(info.engine)?;
    let shares = GuestShares::new(machine, info, engine.as_ref(), config.filesystems)?;
    step!("the shared folders were taken out by a suspend or snapshot that did not finish; putting them back");
    shares
        .recover_cut_save()
        .context("putting the shared folders back (`hvbox reload` mounts them again)")?;
    step!("shared folders mounted again");
    Ok(())
}

/// A running machine whose disk I/O waits for space (a disk full) retries it now:
/// the user frees space, then runs `up`.
fn resume_held_io(info: &RunInfo) -> Result<()> {
    let engine = engine::of_kind(info.engine)?;
    // An engine that does not answer (busy, or ending) left nothing paused to see.
    if engine
        .continue_if_paused(&info.control_socket)
        .unwrap_or(false)
    {
        step!(
            "the guest was paused by a suspend or snapshot that did not finish; it continues now"
        );
    }
    let paused = engine.io_paused(&info.control_socket).unwrap_or_default();
    if paused.is_empty() {
        return Ok(());
    }
    step!(
        "the guest's disk I/O was paused ({}); retrying it now",
        paused.join(", ")
    );
    engine.resume_io(&info.control_socket)?;
    std::thread::sleep(Duration::from_millis(200));
    let still = engine.io_paused(&info.control_socket).unwrap_or_default();
    if !still.is_empty() {
        bail!(
            "the guest's disk I/O is still paused: {}; free space there and run `hvbox up` again",
            still.join(", ")
        );
    }
    step!("disk I/O resumed");
    Ok(())
}

/// `up` of one machine under the machine lock the caller holds (also `reload`'s
/// second half).
pub(super) fn start(selection: &Selection, target: &Target, args: &UpArgs) -> Result<()> {
    let project = &selection.project;
    let machine = &target.machine;
    let spec = target.spec()?;
    let when = provision::When::from_flags(args.provision, args.no_provision);
    if let RunState::Running(info) = machine.run_state() {
        step!(
            "machine is already running (ssh on 127.0.0.1:{})",
            info.ssh_port
        );
        resume_held_io(&info)?;
        recover_shares(machine, &info)?;
        if let Some(from) = disk_growth(machine, spec)? {
            step!(
                "disk: {} takes effect at the next boot (the disk has {from} now; {} applies it)",
                spec.disk.expect("growth needs a size"),
                target.hint("reload")
            );
        }
        provision::after_up(project, machine, spec, info.ssh_port, when)?;
        announce_forwards(target);
        return Ok(());
    }
    // Before the host ports are checked: a killed run's passt may hold them.
    if let Ok(state) = machine.load_state() {
        launch::clear_leftovers(machine, &state);
    }
    let mut checked = launch::preflight(project, spec)?;
    if let Some(record) = machine.suspended()? {
        if args.cold {
            step!("discarding the saved state (--cold): the machine boots fresh");
            machine.discard_state()?;
        } else {
            match resume::resume(
                machine,
                spec,
                &checked,
                record,
                Duration::from_secs(args.timeout),
            )? {
                Resumed::Running(info) => {
                    provision::after_up(project, machine, spec, info.ssh_port, when)?;
                    announce_forwards(target);
                    step!("machine is up: {} opens a shell", target.hint("ssh"));
                    return Ok(());
                }
                Resumed::Refused(why) => {
                    step!("cannot resume the saved state: {why}; it is discarded and the machine boots cold");
                    // The engine's checks are made again for the cold boot.
                    checked = launch::preflight(project, spec)?;
                }
            }
        }
    }
    let progress = if args.quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    };
    let mut fresh_clone = None;
    if !machine.is_created() {
        // One machine at a time: a box both need is fetched once, with one progress
        // bar, and hvbox.lock written by one.
        let _one = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        fresh_clone = Some(create(project, selection.spec()?, machine, spec, progress)?);
    } else {
        step!("starting existing machine");
        if let Some(from) = disk_growth(machine, spec)? {
            let to = spec.disk.expect("growth needs a size");
            step!("growing the disk from {from} to {to} (the guest grows its root filesystem as it boots)");
            hvbox_provisioner::grow_disk(&machine.disk(), to.bytes())
                .context("growing the machine's disk")?;
        }
        if crate::seed::refresh(project, spec, machine)? {
            step!("first-boot settings changed: seed rewritten (cloud-init applies its per-boot settings again; packages, files and runcmd run only on a machine's first boot: `hvbox destroy` and `up` to re-run them)");
        }
    }
    let booted = launch::boot(
        machine,
        spec,
        checked,
        Duration::from_secs(args.timeout),
        fresh_clone.as_ref(),
    )?;
    provision::after_up(project, machine, spec, booted.info.ssh_port, when)?;
    announce_forwards(target);
    step!("machine is up: {} opens a shell", target.hint("ssh"));
    Ok(())
}

/// The ports the running machine forwards, as its run was given them.
fn announce_forwards(target: &Target) {
    let forwards = Forwards::of(target, &target.machine.run_state());
    for line in forwards.announce(&target.hint("port")) {
        step!("{line}");
    }
}

/// Held while a machine is created (see [`start`]).
static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// First `up`: fetch the box, clone its disk, make keys and the seed. A failure
/// removes the half-made machine so the next `up` starts clean. Returns the box
/// disk's kept boot files, which the fresh clone's first boot may use.
fn create(
    project: &Project,
    project_spec: &ProjectSpec,
    machine: &Machine,
    spec: &Spec,
    progress: Progress,
) -> Result<BootCache> {
    let store = Store::open_default()?;
    // hvbox.lock's entry when it has one for the spec's box (no catalog lookup, no
    // network once cached), else the catalog; the lock is written for the next `up`.
    let got = box_fetch::fetch_boxes(
        project,
        project_spec,
        &[&spec.box_source],
        &store,
        progress,
        Resolve::UseLock,
    )?
    .pop()
    .context("no box was fetched")?;
    let artifacts = got.artifacts;
    step!(
        "creating machine from box {}",
        box_fetch::describe(&artifacts.name, artifacts.version.as_deref())
    );
    let disk = got.fetched.disk;
    crate::machine::private::create_machine_dir(&machine.dir)?;
    let result = populate(project, machine, spec, &artifacts, &disk.path);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&machine.dir);
        project.prune_state_dir();
    }
    result.map(|()| BootCache::of(&store, &disk.digest))
}

fn populate(
    project: &Project,
    machine: &Machine,
    spec: &Spec,
    artifacts: &BoxArtifacts,
    disk_blob: &Path,
) -> Result<()> {
    let size = spec.disk.map(|s| s.bytes());
    clone_disk(disk_blob, &machine.disk(), size).context("cloning the box disk")?;

    let state = MachineState {
        // A machine made here goes through this host's proxies.
        proxy: crate::host_proxy::for_guests().clone(),
        ..crate::identity::new_state(project, spec, artifacts)?
    };
    crate::identity::write_keys(machine, &state)?;

    crate::seed::write_new(project, spec, machine, &state)?;
    // state.json last: its presence marks a finished machine.
    state.save(&machine.state_path())
}

/// The disk's size now, when the spec's `disk:` is larger; a smaller `disk:` is an
/// error, as shrinking would destroy the guest's data.
fn disk_growth(machine: &Machine, spec: &Spec) -> Result<Option<Size>> {
    let Some(wanted) = spec.disk else {
        return Ok(None);
    };
    let disk = machine.disk();
    let now = Size::from_bytes(
        std::fs::metadata(&disk)
            .with_context(|| format!("reading the size of {}", disk.display()))?
            .len(),
    );
    if wanted < now {
        bail!(
            "disk: {wanted} in hvbox.yaml is smaller than the machine's disk, which has {now}: a disk cannot shrink without losing data; set `disk:` to {now} or more (or `hvbox destroy` and `up` to start over at {wanted})"
        );
    }
    Ok((wanted > now).then_some(now))
}
