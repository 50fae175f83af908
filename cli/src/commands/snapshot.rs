//! `hvbox snapshot save|restore|list|delete`: a machine's disk, seed and state (and
//! its saved state, when suspended or with `--live`) kept under a name, and put back.

use super::select::{Need, Selection, Target};
use super::table::print_table;
use crate::engine;
use crate::guest_shares::GuestShares;
use crate::machine::lock::MachineLock;
use crate::machine::snapshots::{
    self, Pending, Snapshot, DISK, SAVED_RECORD, SAVED_STATE, SEED, STATE,
};
use crate::machine::{kernels, Machine, RunState};
use crate::progress::step;
use crate::spec::Size;
use anyhow::{bail, Context, Result};
use hvbox_provisioner::clone_disk;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub fn save(machine_name: Option<&str>, name: &str, live: bool) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let target = selection.one(machine_name, "snapshot save")?;
    let machine = &target.machine;
    let _lock = MachineLock::acquire(machine, "snapshot save", false)?;
    let pending = Pending::new(machine, name)?;
    let started = Instant::now();
    // A live snapshot's shared folders that could not be put back in the guest.
    let mut reattach: Option<anyhow::Error> = None;
    let with_state = match machine.run_state() {
        RunState::NotCreated => bail!("{} is not created yet", target.subject()),
        RunState::Running(_) if !live => bail!(
            "{} is running and its disk changes under a copy: `--live` saves it running (paused while its state and disk are copied), or `hvbox halt`/`hvbox suspend` it first",
            target.subject()
        ),
        RunState::Running(info) => {
            let engine = engine::of_kind(info.engine)?;
            let config = launch_config(machine)?;
            let shares =
                GuestShares::new(machine, &info, engine.as_ref(), config.filesystems.clone())?;
            let record = crate::machine::suspended::Suspended::new(
                info.engine,
                engine.state_version(),
                config,
            );
            if shares.needed() {
                step!("unmounting the shared folders in the guest and unplugging their devices");
                shares.detach()?;
            }
            step!("pausing the machine to save its state and copy its disk");
            let state_path = pending.dir.join(SAVED_STATE);
            let file = crate::machine::private::create_file(
                &state_path,
                std::fs::File::options().write(true).create_new(true),
            )?;
            let saved = engine.save_paused(&info.control_socket, &file, &mut || {
                copy_machine_files(machine, &pending.dir)
            });
            // The devices go back in whether or not the save worked.
            let back = match shares.needed() {
                true => {
                    step!("plugging the shared folders back in and mounting them in the guest");
                    shares.attach()
                }
                false => Ok(()),
            };
            if let (Err(e), Err(b)) = (&saved, &back) {
                bail!("the snapshot was not saved ({e:#}), and the machine's shared folders could not be put back ({b:#}); the machine runs on, and `hvbox reload` mounts them again");
            }
            saved.context("the snapshot was not saved; the machine runs on")?;
            // The snapshot is good either way: it is kept, and the shares' failure is
            // said once it is.
            reattach = back.err();
            file.sync_all()?;
            let record = crate::machine::suspended::Suspended {
                state_bytes: file.metadata()?.len(),
                ..record
            };
            crate::machine::write_atomic(
                &pending.dir.join(SAVED_RECORD),
                serde_json::to_string_pretty(&record)?.as_bytes(),
            )?;
            true
        }
        RunState::Suspended => {
            copy_machine_files(machine, &pending.dir)?;
            copy(&machine.saved_state(), &pending.dir.join(SAVED_STATE))?;
            copy(
                &machine.saved_state().with_file_name(SAVED_RECORD),
                &pending.dir.join(SAVED_RECORD),
            )?;
            true
        }
        RunState::Stopped => {
            copy_machine_files(machine, &pending.dir)?;
            false
        }
    };
    let dir = Snapshot::dir(machine, name);
    pending.commit(&Snapshot {
        name: name.to_string(),
        created_unix: kernels::now_unix(),
        with_state,
    })?;
    step!(
        "snapshot `{name}` saved in {:.1} s ({} on disk{})",
        started.elapsed().as_secs_f64(),
        Size::from_bytes(snapshots::allocated(&dir)),
        if with_state {
            ", with the machine's running state"
        } else {
            ""
        }
    );
    if let Some(e) = reattach {
        return Err(e.context(format!("the snapshot `{name}` is saved, but the machine's shared folders could not be put back; `hvbox reload` mounts them again")));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore(machine_name: Option<&str>, name: &str, force: bool) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let target = selection.one(machine_name, "snapshot restore")?;
    let machine = &target.machine;
    let _lock = MachineLock::acquire(machine, "snapshot restore", false)?;
    snapshots::check_name(name)?;
    let dir = Snapshot::dir(machine, name);
    let snapshot = existing(&target, &dir, name)?;
    match machine.run_state() {
        RunState::Running(_) if !force => bail!(
            "{} is running; `hvbox halt` it first, or pass --force to stop it at once (what it did since the snapshot is lost)",
            target.subject()
        ),
        RunState::Running(info) => {
            step!("stopping the machine (--force)");
            super::halt::stop(machine, &info, Duration::ZERO)?;
        }
        _ => {}
    }
    // The machine's own saved state belongs to the disk being replaced.
    machine.discard_state()?;
    for file in [DISK, SEED, STATE] {
        copy(&dir.join(file), &machine.file(file))?;
    }
    if snapshot.with_state {
        let (tmp, file) = machine.new_state_file()?;
        drop(file);
        copy(&dir.join(SAVED_STATE), &tmp)?;
        let record: crate::machine::suspended::Suspended = serde_json::from_str(
            &std::fs::read_to_string(dir.join(SAVED_RECORD))
                .context("reading the snapshot's saved state record")?,
        )?;
        let file = std::fs::File::open(&tmp)?;
        machine.keep_state(&tmp, file, record)?;
        step!(
            "snapshot `{name}` restored: the machine is suspended as it was; {} continues it",
            target.hint("up")
        );
    } else {
        step!("snapshot `{name}` restored: {} boots it", target.hint("up"));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(machine_name: Option<&str>, json: bool) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let target = selection.one(machine_name, "snapshot list")?;
    let found = snapshots::list(&target.machine)?;
    if json {
        let list: Vec<serde_json::Value> = found
            .iter()
            .map(|(s, bytes)| {
                serde_json::json!({
                    "name": s.name,
                    "created_unix": s.created_unix,
                    "with_state": s.with_state,
                    "on_disk": bytes,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        let rows: Vec<[String; 4]> = found
            .iter()
            .map(|(s, bytes)| {
                [
                    s.name.clone(),
                    age(s.created_unix),
                    if s.with_state { "suspended" } else { "stopped" }.to_string(),
                    Size::from_bytes(*bytes).to_string(),
                ]
            })
            .collect();
        print_table(["NAME", "CREATED", "MACHINE", "ON DISK"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn delete(machine_name: Option<&str>, name: &str) -> Result<ExitCode> {
    let selection = Selection::load(Need::Names)?;
    let target = selection.one(machine_name, "snapshot delete")?;
    let _lock = MachineLock::acquire(&target.machine, "snapshot delete", false)?;
    snapshots::check_name(name)?;
    let dir = Snapshot::dir(&target.machine, name);
    existing(&target, &dir, name)?;
    let bytes = snapshots::allocated(&dir);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    step!(
        "snapshot `{name}` deleted ({} freed)",
        Size::from_bytes(bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn existing(target: &Target, dir: &Path, name: &str) -> Result<Snapshot> {
    if !dir.is_dir() {
        let names: Vec<String> = snapshots::list(&target.machine)?
            .into_iter()
            .map(|(s, _)| s.name)
            .collect();
        bail!(
            "{} has no snapshot `{name}` (snapshots: {})",
            target.subject(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    snapshots::load(dir)
}

/// The disk, seed and state.json into `dir`.
fn copy_machine_files(machine: &Machine, dir: &Path) -> Result<()> {
    for file in [DISK, SEED, STATE] {
        copy(&machine.file(file), &dir.join(file))?;
    }
    Ok(())
}

/// A reflink where the file system shares extents, else a sparse copy; through a
/// temp file renamed into place.
fn copy(from: &Path, to: &Path) -> Result<()> {
    clone_disk(from, to, None)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// What the engine runs, from the running machine's launch plan.
fn launch_config(machine: &Machine) -> Result<hvbox_vmm::MachineConfig> {
    crate::supervisor::launch_config(machine)?.context("the machine was started by an older hvbox, which did not record what a live snapshot needs; `hvbox reload` it first")
}

fn age(created_unix: u64) -> String {
    let secs = kernels::now_unix().saturating_sub(created_unix);
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}
