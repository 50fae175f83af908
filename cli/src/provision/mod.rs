//! Provisioning: the spec's `provision:` steps, run over the machine's ssh one
//! after another once it is up. `up` runs them until one run has completed them
//! all; `hvbox provision` and `up --provision` run them again on request.

mod archive;
mod output;
mod remote;

use crate::kernel_install::shell_quote;
use crate::machine::{kernels, Machine};
use crate::progress::step;
use crate::project::Project;
use crate::spec::{Action, ProvisionStep, Spec};
use anyhow::{anyhow, Context, Result};
use output::StepOutput;
use remote::{Guest, Input};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// What `up` does about the steps (its `--provision` and `--no-provision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Unless a run has completed them all before.
    Pending,
    Always,
    Never,
}

impl When {
    pub fn from_flags(provision: bool, no_provision: bool) -> When {
        match (provision, no_provision) {
            (true, _) => When::Always,
            (_, true) => When::Never,
            _ => When::Pending,
        }
    }

    fn due(self, provisioned: bool) -> bool {
        match self {
            When::Always => true,
            When::Never => false,
            When::Pending => !provisioned,
        }
    }
}

/// `up`'s part, once the machine answers ssh on `port`.
pub fn after_up(
    project: &Project,
    machine: &Machine,
    spec: &Spec,
    port: u16,
    when: When,
) -> Result<()> {
    if spec.provision.is_empty() {
        return Ok(());
    }
    let provisioned = machine.load_state()?.provisioned_unix.is_some();
    if when.due(provisioned) {
        // The last stage of `up`'s wait; its steps' own output follows, so no
        // live status line stands in its way.
        step!(
            "boot stage: {}",
            crate::boot_stage::Stage::Provisioning.label()
        );
        return run_all(project, machine, &spec.provision, port);
    }
    if when == When::Never {
        step!("provision steps skipped (--no-provision)");
    } else {
        step!(
            "already provisioned: `hvbox provision` or `hvbox up --provision` runs the steps again"
        );
    }
    Ok(())
}

/// Run every step, in order, on the running machine reached on `port`.
pub fn run_all(
    project: &Project,
    machine: &Machine,
    steps: &[ProvisionStep],
    port: u16,
) -> Result<()> {
    let state = machine.load_state()?;
    let guest = Guest {
        machine,
        state: &state,
        port,
    };
    let total = steps.len();
    recorded(machine, steps, |index, step| {
        run_step(&guest, &project.root, index, total, step)
    })?;
    step!(
        "provisioned: {total} step{} done",
        if total == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Run `steps` with `run`, stopping at the first that fails. The machine's state
/// records provisioning only once every step succeeded; the record is cleared
/// before the first step starts, so a run that fails or is cut short (Ctrl-C, a
/// crash) leaves the machine unprovisioned and `up` runs the steps again.
fn recorded<T>(
    machine: &Machine,
    steps: &[T],
    mut run: impl FnMut(usize, &T) -> Result<()>,
) -> Result<()> {
    set_provisioned(machine, None)?;
    for (index, step) in steps.iter().enumerate() {
        run(index, step)?;
    }
    set_provisioned(machine, Some(kernels::now_unix()))
}

fn set_provisioned(machine: &Machine, when: Option<u64>) -> Result<()> {
    let mut state = machine.load_state()?;
    state.provisioned_unix = when;
    state.save(&machine.state_path())
}

fn run_step(
    guest: &Guest,
    root: &Path,
    index: usize,
    total: usize,
    step: &ProvisionStep,
) -> Result<()> {
    let number = format!("{}/{total}", index + 1);
    let who = if step.privileged {
        "root"
    } else {
        guest.state.user.as_str()
    };
    let what = describe(&step.action);
    let named = step
        .name
        .as_ref()
        .map(|n| format!(" [{n}]"))
        .unwrap_or_default();
    step!("provision {number}{named}: {what} (as {who})");
    let label = match &step.name {
        Some(name) => format!("{number} {name}"),
        None => format!("{number} {}", short_label(&step.action)),
    };
    // Machines provision at the same time (`up --jobs`): each line says whose it is.
    let label = match crate::progress::machine() {
        Some(machine) => format!("{machine} {label}"),
        None => label,
    };
    let mut output = StepOutput::new(&label);
    let step_context = || format!("provision step {number} ({what})");
    let (command, input) = prepare(root, step).with_context(step_context)?;
    let status = remote::run(guest, &command, input, &mut output).with_context(step_context)?;
    if status.success() {
        return Ok(());
    }
    Err(anyhow!(failure_message(
        &number,
        index + 1 < total,
        &what,
        who,
        status,
        &output.tail()
    )))
}

/// The guest command for a step and what it reads on standard input.
fn prepare(root: &Path, step: &ProvisionStep) -> Result<(String, Input)> {
    Ok(match &step.action {
        Action::Shell { script, args } => (
            remote::script_command(script.as_bytes(), args, step.privileged),
            Input::Script(script.as_bytes().to_vec()),
        ),
        Action::Script { path, args } => {
            let path = root.join(path);
            let script =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            (
                remote::script_command(&script, args, step.privileged),
                Input::Script(script),
            )
        }
        Action::File {
            source,
            destination,
        } => {
            let source = root.join(source);
            // The real name: a source written as `.` or `dir/..` has none of its own.
            let resolved = std::fs::canonicalize(&source)
                .with_context(|| format!("reading {}", source.display()))?;
            let name = resolved
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into());
            let place = archive::placement(resolved.is_dir(), &name, destination);
            (
                remote::unpack_command(&place.dir, step.privileged),
                Input::Tree {
                    source: resolved,
                    file_name: place.file_name,
                },
            )
        }
    })
}

/// What a step does, for its header line and errors.
fn describe(action: &Action) -> String {
    match action {
        Action::Shell { script, args } => {
            let mut lines = script.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or_default();
            let mut shown: String = first.chars().take(60).collect();
            if first.chars().count() > 60 || lines.next().is_some() {
                shown.push_str(" …");
            }
            format!("shell: {shown}{}", shown_args(args))
        }
        Action::Script { path, args } => format!("script {}{}", path.display(), shown_args(args)),
        Action::File {
            source,
            destination,
        } => format!("file {} -> {destination}", source.display()),
    }
}

/// The default label before each line of a step's output.
fn short_label(action: &Action) -> String {
    let file_name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    match action {
        Action::Shell { .. } => "shell".into(),
        Action::Script { path, .. } => format!("script {}", file_name(path)),
        Action::File { source, .. } => format!("file {}", file_name(source)),
    }
}

/// Arguments as a shell would need them typed: quoted only when they must be.
fn shown_args(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                format!(" {a}")
            } else {
                format!(" {}", shell_quote(a))
            }
        })
        .collect()
}

fn failure_message(
    number: &str,
    more_steps: bool,
    what: &str,
    who: &str,
    status: ExitStatus,
    tail: &[String],
) -> String {
    let how = match (status.code(), status.signal()) {
        (Some(255), _) => {
            "exit status 255 (also ssh's own failure status: the connection may have broken)"
                .to_string()
        }
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    };
    let output = if tail.is_empty() {
        "It printed nothing.".to_string()
    } else {
        format!("Its last lines:\n{}", tail.join("\n"))
    };
    let skipped = if more_steps {
        "; the steps after it did not run"
    } else {
        ""
    };
    format!(
        "provision step {number} ({what}, as {who}) failed with {how}{skipped}. The machine is up: fix the step, then `hvbox provision` runs all steps again. {output}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineState;
    use std::path::PathBuf;

    fn machine(dir: &Path) -> Machine {
        let machine = Machine::new("default", dir.to_path_buf());
        MachineState {
            instance_id: "i-1".into(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            hostname: "h".into(),
            user: "dev".into(),
            box_name: "b".into(),
            box_disk_digest: "sha256:00".into(),
            created_unix: 0,
            kernels: Vec::new(),
            pinned_kernel: None,
            provisioned_unix: None,
            proxy: Default::default(),
        }
        .save(&machine.state_path())
        .unwrap();
        machine
    }

    fn provisioned(machine: &Machine) -> bool {
        machine.load_state().unwrap().provisioned_unix.is_some()
    }

    #[test]
    fn only_a_run_where_every_step_succeeded_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let m = machine(dir.path());
        let mut ran = Vec::new();
        let failed = recorded(&m, &["a", "b", "c"], |i, step| {
            ran.push(*step);
            if i == 1 {
                anyhow::bail!("step b failed");
            }
            Ok(())
        });
        assert_eq!(failed.unwrap_err().to_string(), "step b failed");
        assert_eq!(ran, ["a", "b"], "a step after a failure ran");
        assert!(!provisioned(&m));

        recorded(&m, &["a", "b", "c"], |_, _| Ok(())).unwrap();
        assert!(provisioned(&m));

        // A later run that fails (or is cut short) takes the record back.
        let _ = recorded(&m, &["a"], |_, _| anyhow::bail!("no"));
        assert!(!provisioned(&m));
        recorded(&m, &["a"], |_, _| {
            assert!(!provisioned(&m), "recorded before the steps ran");
            Ok(())
        })
        .unwrap();
        assert!(provisioned(&m));
    }

    #[test]
    fn up_runs_the_steps_until_they_completed_once() {
        assert!(When::Pending.due(false));
        assert!(!When::Pending.due(true));
        assert!(When::Always.due(true));
        assert!(!When::Never.due(false));
        assert_eq!(When::from_flags(false, false), When::Pending);
        assert_eq!(When::from_flags(true, false), When::Always);
        assert_eq!(When::from_flags(false, true), When::Never);
    }

    #[test]
    fn old_state_files_load_as_not_provisioned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(
            &path,
            r#"{"instance_id":"i-1","mac":"52:54:00:00:00:01","hostname":"h","user":"dev","box_name":"b","box_disk_digest":"d","created_unix":0}"#,
        )
        .unwrap();
        assert_eq!(MachineState::load(&path).unwrap().provisioned_unix, None);
    }

    #[test]
    fn headers_and_labels_say_what_each_step_does() {
        let shell = Action::Shell {
            script: "\napt-get install -y nginx\nsystemctl start nginx\n".into(),
            args: vec![],
        };
        assert_eq!(describe(&shell), "shell: apt-get install -y nginx …");
        assert_eq!(short_label(&shell), "shell");
        let script = Action::Script {
            path: PathBuf::from("scripts/setup.sh"),
            args: vec!["--fast".into(), "two words".into()],
        };
        assert_eq!(
            describe(&script),
            "script scripts/setup.sh --fast 'two words'"
        );
        assert_eq!(short_label(&script), "script setup.sh");
        let file = Action::File {
            source: PathBuf::from("config/app.conf"),
            destination: "/etc/app.conf".into(),
        };
        assert_eq!(describe(&file), "file config/app.conf -> /etc/app.conf");
        assert_eq!(short_label(&file), "file app.conf");
    }

    #[test]
    fn a_failure_names_the_step_its_status_and_its_last_lines() {
        let status = ExitStatus::from_raw(3 << 8);
        let tail = ["    [2/3 script setup.sh] not allowed".to_string()];
        assert_eq!(
            failure_message("2/3", true, "script setup.sh", "dev", status, &tail),
            "provision step 2/3 (script setup.sh, as dev) failed with exit status 3; the steps after it did not run. The machine is up: fix the step, then `hvbox provision` runs all steps again. Its last lines:\n    [2/3 script setup.sh] not allowed"
        );
        let killed = failure_message(
            "1/1",
            false,
            "shell: x",
            "root",
            ExitStatus::from_raw(9),
            &[],
        );
        assert!(
            killed.starts_with(
                "provision step 1/1 (shell: x, as root) failed with signal 9. The machine is up"
            ),
            "{killed}"
        );
        assert!(killed.ends_with("It printed nothing."), "{killed}");
    }

    #[test]
    fn file_steps_resolve_their_source_and_destination() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/app.conf"), "x").unwrap();
        let step = |source: &str, destination: &str| ProvisionStep {
            action: Action::File {
                source: source.into(),
                destination: destination.into(),
            },
            privileged: false,
            name: None,
            path_at: None,
            key_path: None,
        };
        let (command, input) = prepare(dir.path(), &step("config/app.conf", "/etc/app/")).unwrap();
        assert_eq!(command, remote::unpack_command("/etc/app", false));
        let Input::Tree { file_name, .. } = input else {
            panic!("a file step sends a tree")
        };
        assert_eq!(file_name.as_deref(), Some("app.conf"));
        let (command, _) = prepare(dir.path(), &step("config/..", "/srv/")).unwrap();
        let project = dir.path().file_name().unwrap().to_string_lossy();
        assert_eq!(
            command,
            remote::unpack_command(&format!("/srv/{project}"), false)
        );
        let err = prepare(dir.path(), &step("gone", "/x")).unwrap_err();
        assert!(format!("{err:#}").contains("reading"), "{err:#}");
    }
}
