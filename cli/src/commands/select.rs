//! Which machines a command acts on: the ones it names, or every machine of the
//! project in the spec's order. A machine folder under `.hvbox/machines/` whose name
//! the spec no longer has is "orphaned": `status` lists it, `halt` and `destroy`
//! still act on it.

use super::box_fetch::OfflineBoxes;
use crate::machine::{Machine, RunInfo, RunState};
use crate::progress;
use crate::project::Project;
use crate::spec::{self, ProjectSpec, Spec, SpecProblems, DEFAULT_MACHINE};
use anyhow::{anyhow, bail, Context, Result};

/// What a command needs from hvbox.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The machines' settings: the spec is checked as `hvbox validate` checks it
    /// (the files and boxes it names too), and any problem stops the command.
    Settings,
    /// Only which machines there are: commands that never needed the spec (`ssh`,
    /// `halt`, `destroy`, …) keep working on the machines that have state while
    /// hvbox.yaml has an error, and say so.
    Names,
}

/// The project's spec with every problem it has on this host: the one check that
/// `validate` and the commands that act on machines run.
pub fn checked_spec(project: &Project) -> Result<ProjectSpec, SpecProblems> {
    spec::check(&project.spec_path, &OfflineBoxes::of(project))
}

/// The project here and its machines.
pub struct Selection {
    pub project: Project,
    spec: Option<ProjectSpec>,
    /// The spec's machines in its order (the machine folders, if it was unreadable).
    names: Vec<String>,
    orphans: Vec<String>,
}

/// One machine a command acts on.
pub struct Target {
    pub machine: Machine,
    /// Its settings; `None` for an orphaned machine, or when the spec was unreadable.
    spec: Option<Spec>,
    pub orphaned: bool,
    /// Messages name the machine: the project has several, or names its machines.
    pub named: bool,
}

impl Selection {
    /// The project here (in the current folder or the nearest parent).
    pub fn load(need: Need) -> Result<Selection> {
        Selection::of(Project::discover()?, need)
    }

    pub fn of(project: Project, need: Need) -> Result<Selection> {
        let folders = project.machine_folders();
        let loaded = match need {
            Need::Settings => checked_spec(&project),
            Need::Names => ProjectSpec::load(&project.spec_path),
        };
        let spec = match loaded {
            Ok(spec) => spec,
            Err(e) if need == Need::Names && !folders.is_empty() => {
                for line in e.details() {
                    eprintln!("{line}");
                }
                eprintln!(
                    "hvbox: warning: {e}\nhvbox: warning: going on with the machines in {}",
                    project.state_dir().join("machines").display()
                );
                return Ok(Selection {
                    project,
                    spec: None,
                    names: folders,
                    orphans: Vec::new(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let names: Vec<String> = spec.machines().iter().map(|(n, _)| n.clone()).collect();
        let orphans = folders.into_iter().filter(|f| !names.contains(f)).collect();
        Ok(Selection {
            project,
            spec: Some(spec),
            names,
            orphans,
        })
    }

    /// The whole spec; loaded with [`Need::Settings`], it is always there.
    pub fn spec(&self) -> Result<&ProjectSpec> {
        self.spec
            .as_ref()
            .ok_or_else(|| anyhow!("{} could not be read", self.project.spec_path.display()))
    }

    /// The machines `names` names (each once, in the order given), or with no names
    /// every machine of the spec, then, with `orphans`, the orphaned ones.
    pub fn many(&self, names: &[String], orphans: bool) -> Result<Vec<Target>> {
        if names.is_empty() {
            let extra = if orphans { &self.orphans[..] } else { &[] };
            return Ok(self
                .names
                .iter()
                .chain(extra)
                .map(|n| self.target(n))
                .collect());
        }
        let mut targets: Vec<Target> = Vec::new();
        for name in names {
            if targets.iter().all(|t| &t.machine.name != name) {
                targets.push(self.named(name, orphans)?);
            }
        }
        Ok(targets)
    }

    /// The machine `name` names; without a name, the project's only machine.
    /// `command` is for the hint when a name is needed.
    pub fn one(&self, name: Option<&str>, command: &str) -> Result<Target> {
        match (name, self.names.as_slice()) {
            (Some(name), _) => self.named(name, false),
            (None, [only]) => Ok(self.target(only)),
            (None, all) => bail!(
                "{} defines {} machines: name one, as in `hvbox {command} {}` (machines: {})",
                self.project.spec_path.display(),
                all.len(),
                all[0],
                all.join(", ")
            ),
        }
    }

    fn named(&self, name: &str, orphans: bool) -> Result<Target> {
        if self.names.iter().any(|n| n == name)
            || (orphans && self.orphans.iter().any(|n| n == name))
        {
            return Ok(self.target(name));
        }
        let known = self.names.join(", ");
        if self.orphans.iter().any(|n| n == name) {
            bail!(
                "machine `{name}` is not in {} any more: only its state is left, in {} (`hvbox destroy {name}` removes it); the spec's machines are {known}",
                self.project.spec_path.display(),
                self.project.machine_dir(name).display()
            );
        }
        bail!(
            "no machine `{name}` in {}: its machines are {known}",
            self.project.spec_path.display()
        )
    }

    fn target(&self, name: &str) -> Target {
        let orphaned = !self.names.iter().any(|n| n == name);
        let spec = self.spec.as_ref().and_then(|s| s.get(name)).cloned();
        Target {
            machine: self.project.machine(name),
            spec,
            orphaned,
            named: orphaned
                || self.names.len() > 1
                || self.names.iter().any(|n| n != DEFAULT_MACHINE),
        }
    }
}

impl Target {
    pub fn name(&self) -> &str {
        &self.machine.name
    }

    /// The machine's settings (for commands loaded with [`Need::Settings`]).
    pub fn spec(&self) -> Result<&Spec> {
        self.spec.as_ref().with_context(|| {
            format!(
                "machine `{}` is not in hvbox.yaml any more: `hvbox destroy {0}` removes it",
                self.name()
            )
        })
    }

    /// "the machine", or "the machine `web`" where the project has several.
    pub fn subject(&self) -> String {
        if self.named {
            format!("the machine `{}`", self.name())
        } else {
            "the machine".to_string()
        }
    }

    /// The running machine's processes and ports, or an error saying its state and
    /// how to start it (for commands that need a running guest).
    pub fn running(&self) -> Result<RunInfo> {
        match self.machine.run_state() {
            RunState::Running(info) => Ok(info),
            other => bail!(
                "{} is {}; run {} first",
                self.subject(),
                other.label(),
                self.hint("up")
            ),
        }
    }

    /// How to run `command` on this machine: `hvbox up`, or `hvbox up web`.
    pub fn hint(&self, command: &str) -> String {
        if self.named {
            format!("`hvbox {command} {}`", self.name())
        } else {
            format!("`hvbox {command}`")
        }
    }
}

/// Run `act` on each target in turn, its progress lines naming the machine where the
/// project has several. The first failure stops the rest and says which machine
/// failed and which were not reached.
pub fn for_each(targets: &[Target], mut act: impl FnMut(&Target) -> Result<()>) -> Result<()> {
    for (i, target) in targets.iter().enumerate() {
        progress::set_machine(target.named.then_some(target.name()));
        let result = act(target);
        progress::set_machine(None);
        if let Err(e) = result {
            if !target.named {
                return Err(e);
            }
            let rest: Vec<&str> = targets[i + 1..].iter().map(Target::name).collect();
            let context = if rest.is_empty() {
                format!("machine `{}`", target.name())
            } else {
                format!(
                    "machine `{}` (not reached: {})",
                    target.name(),
                    rest.join(", ")
                )
            };
            return Err(e.context(context));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with `spec` and machine folders for `folders`.
    fn project(spec: &str, folders: &[&str]) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("hvbox.yaml"), spec).unwrap();
        let project = Project {
            spec_path: root.join("hvbox.yaml"),
            root,
        };
        for f in folders {
            std::fs::create_dir_all(project.machine_dir(f)).unwrap();
        }
        (dir, project)
    }

    const TWO: &str = "box: debian-12\nmachines:\n  web:\n  db:\n";

    fn names(targets: &[Target]) -> Vec<&str> {
        targets.iter().map(Target::name).collect()
    }

    fn error<T>(result: Result<T>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn all_machines_in_spec_order_then_orphans() {
        let (_dir, p) = project(TWO, &["old", "db"]);
        let s = Selection::of(p, Need::Settings).unwrap();
        assert_eq!(names(&s.many(&[], true).unwrap()), ["web", "db", "old"]);
        assert_eq!(names(&s.many(&[], false).unwrap()), ["web", "db"]);
        let picked = s
            .many(&["db".into(), "web".into(), "db".into()], false)
            .unwrap();
        assert_eq!(names(&picked), ["db", "web"]);
        assert!(picked.iter().all(|t| t.named && !t.orphaned));
        let old = s.many(&["old".into()], true).unwrap();
        assert!(old[0].orphaned && old[0].spec().is_err());
        assert_eq!(old[0].subject(), "the machine `old`");
        assert_eq!(picked[0].hint("up"), "`hvbox up db`");
    }

    #[test]
    fn one_machine_needs_a_name_only_among_several() {
        let (_dir, p) = project(TWO, &[]);
        let s = Selection::of(p, Need::Settings).unwrap();
        let e = error(s.one(None, "ssh"));
        assert!(
            e.ends_with("hvbox.yaml defines 2 machines: name one, as in `hvbox ssh web` (machines: web, db)"),
            "{e}"
        );
        assert_eq!(s.one(Some("db"), "ssh").unwrap().name(), "db");

        let (_dir, p) = project("box: debian-12\n", &[]);
        let s = Selection::of(p, Need::Settings).unwrap();
        let only = s.one(None, "ssh").unwrap();
        assert_eq!(only.name(), "default");
        assert!(!only.named);
        assert_eq!(only.subject(), "the machine");
        assert_eq!(only.hint("up"), "`hvbox up`");
    }

    #[test]
    fn unknown_and_orphaned_names_list_the_known_ones() {
        let (_dir, p) = project(TWO, &["old"]);
        let s = Selection::of(p, Need::Names).unwrap();
        let e = error(s.many(&["web".into(), "wbe".into()], true));
        assert!(e.starts_with("no machine `wbe` in "), "{e}");
        assert!(e.ends_with("hvbox.yaml: its machines are web, db"), "{e}");
        let e = error(s.one(Some("old"), "ssh"));
        assert!(e.starts_with("machine `old` is not in "), "{e}");
        assert!(e.contains("`hvbox destroy old` removes it"), "{e}");
        assert!(e.ends_with("the spec's machines are web, db"), "{e}");
    }

    #[test]
    fn an_unreadable_spec_stops_only_commands_that_need_it() {
        let (_dir, p) = project("box: debian-12\nmemroy: 1G\n", &["default"]);
        let e = error(Selection::of(p.clone(), Need::Settings));
        assert!(e.contains("unknown field `memroy`"), "{e}");
        let s = Selection::of(p, Need::Names).unwrap();
        let all = s.many(&[], true).unwrap();
        assert_eq!(names(&all), ["default"]);
        assert!(all[0].spec().is_err() && !all[0].orphaned);
        // Without any machine folder there is nothing to fall back on.
        let (_dir, p) = project("box: b\nmemroy: 1G\n", &[]);
        assert!(Selection::of(p, Need::Names).is_err());
    }
}
