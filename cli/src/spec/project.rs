//! The whole spec: one machine (`default`), or the named machines of `machines:`,
//! each resolved into its own [`Spec`]. Checks that involve several keys (a
//! top-level `hostname` beside `machines`, a host port forwarded twice) are made
//! here, and located in the text by [`locate`](super::locate).

use super::locate::{path_text, Step};
use super::read::{self, Layers};
use super::{BoxSource, Hostname, PortEntry, PortForward, Spec, SpecError, SpecProblems};
use std::path::Path;

/// The machine of a spec without `machines:`.
pub const DEFAULT_MACHINE: &str = "default";

#[derive(Debug, Clone)]
pub struct ProjectSpec {
    machines: Vec<(String, Spec)>,
    /// For each machine, where its settings were written.
    written: Vec<WrittenIn>,
    /// Whether the spec has `machines:` (else its one machine is `default`).
    named: bool,
}

impl ProjectSpec {
    /// The spec in `path`, as written: its structure and the rules between its keys,
    /// every problem reported. What it refers to on this host (files, boxes) is
    /// checked by [`check`](super::check), which commands that act on machines run.
    pub fn load(path: &Path) -> Result<ProjectSpec, SpecProblems> {
        let text = read_text(path)?;
        ProjectSpec::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ProjectSpec, SpecProblems> {
        let (project, problems) = ProjectSpec::parse_partly(text, path)?;
        if problems.is_empty() {
            Ok(project)
        } else {
            Err(SpecProblems::new(path, problems))
        }
    }

    /// The machines that resolved, with the problems between keys: the host checks
    /// go on with those machines, so that one run reports everything.
    pub(super) fn parse_partly(
        text: &str,
        path: &Path,
    ) -> Result<(ProjectSpec, Vec<SpecError>), SpecProblems> {
        let (layers, read_problems) = read::read(text).map_err(|errors| {
            let problems = errors.iter().map(|e| SpecError::from_yaml(path, e));
            SpecProblems::new(path, problems.collect())
        })?;
        let mut problems: Vec<SpecError> = read_problems
            .iter()
            .map(|e| SpecError::from_yaml(path, e))
            .collect();
        let project = resolve(layers, text, &mut |at, message| {
            problems.push(SpecError::at(path, text, &at, &message));
        });
        Ok((project, problems))
    }

    /// Every machine with its settings, in the spec's order.
    pub fn machines(&self) -> &[(String, Spec)] {
        &self.machines
    }

    pub fn names(&self) -> Vec<&str> {
        self.machines.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Spec> {
        self.machines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Whether the spec names its machines (`machines:`); without, its one
    /// machine is [`DEFAULT_MACHINE`].
    pub fn is_named(&self) -> bool {
        self.named
    }

    /// The boxes the machines ask for, each once, in the order they first appear.
    pub fn boxes(&self) -> Vec<&BoxSource> {
        let mut boxes: Vec<&BoxSource> = Vec::new();
        for (_, spec) in &self.machines {
            if !boxes.contains(&&spec.box_source) {
                boxes.push(&spec.box_source);
            }
        }
        boxes
    }

    /// The path to where the `index`th machine's value of `key` is written: its
    /// own entry, or the top level it takes the value from.
    pub(super) fn written_in(&self, index: usize, key: &str) -> Vec<Step> {
        self.written[index].path(key)
    }
}

/// The spec's text, or the problem of reading it.
pub(super) fn read_text(path: &Path) -> Result<String, SpecProblems> {
    std::fs::read_to_string(path).map_err(|e| {
        SpecProblems::new(
            path,
            vec![SpecError::whole(path, format!("cannot read the spec: {e}"))],
        )
    })
}

fn key(k: &str) -> Step {
    Step::Key(k.to_string())
}

/// Each machine's layers resolved; what is wrong between keys goes to `problem`,
/// with the path to the node to blame. `text` is the spec the layers were read
/// from, for where each provision step's file is named.
fn resolve(layers: Layers, text: &str, problem: &mut dyn FnMut(Vec<Step>, String)) -> ProjectSpec {
    let Layers {
        top,
        top_keys,
        machines,
    } = layers;
    // A key written but unreadable was reported where it is: no "missing" for it.
    let top_has = |k: &str| top_keys.iter().any(|t| t == k);
    let Some(machines) = machines else {
        let mut project = ProjectSpec {
            machines: Vec::new(),
            written: Vec::new(),
            named: false,
        };
        match top.resolve() {
            Some(mut spec) => {
                locate_provision_files(&mut spec, &WrittenIn::Top, text);
                check_auto(&spec.ports, vec![key("ports")], problem);
                check_ports(
                    &[(DEFAULT_MACHINE, ports_of(&spec, &WrittenIn::Top))],
                    problem,
                );
                project.machines.push((DEFAULT_MACHINE.to_string(), spec));
                project.written.push(WrittenIn::Top);
            }
            None if top_has("box") || top_has("machines") => {}
            None => problem(Vec::new(), "missing field `box`".to_string()),
        }
        return project;
    };
    if top.hostname.0.is_some() {
        problem(
            vec![Step::AtKey("hostname".into())],
            "a top-level `hostname` cannot go with `machines`: each machine has its own (its name, unless it sets `hostname`)".into(),
        );
    }
    if let Some(ports) = &top.ports.0 {
        check_auto(ports, vec![key("ports")], problem);
    }
    let mut resolved = Vec::new();
    let mut written = Vec::new();
    for machine in machines {
        let name = machine.name;
        let box_written = top_has("box") || machine.keys.iter().any(|k| k == "box");
        let written_in = WrittenIn::Machine {
            name: name.clone(),
            keys: machine.keys,
        };
        if let Some(own) = &machine.layer.ports.0 {
            check_auto(own, written_in.path("ports"), problem);
        }
        let Some(mut spec) = machine.layer.over(&top).resolve() else {
            if box_written {
                continue;
            }
            problem(
                vec![key("machines"), Step::AtKey(name.clone())],
                format!("machine `{name}` has no `box`, and there is no top-level `box` for it to take: add `box:` to it or to the top level"),
            );
            continue;
        };
        if spec.hostname.is_none() {
            spec.hostname = Some(Hostname(name.clone()));
        }
        locate_provision_files(&mut spec, &written_in, text);
        resolved.push((name, spec));
        written.push(written_in);
    }
    let ports: Vec<(&str, Ports)> = resolved
        .iter()
        .zip(&written)
        .map(|((name, spec), written_in)| (name.as_str(), ports_of(spec, written_in)))
        .collect();
    check_ports(&ports, problem);
    ProjectSpec {
        machines: resolved,
        written,
        named: true,
    }
}

/// Where a machine's settings were written: at the top level, or in the machine's
/// own entry for the keys it sets (each replaces the top-level value).
#[derive(Debug, Clone)]
enum WrittenIn {
    Top,
    Machine { name: String, keys: Vec<String> },
}

impl WrittenIn {
    fn path(&self, k: &str) -> Vec<Step> {
        match self {
            WrittenIn::Machine { name, keys } if keys.iter().any(|own| own == k) => {
                vec![key("machines"), key(name), key(k)]
            }
            _ => vec![key(k)],
        }
    }
}

fn locate_provision_files(spec: &mut Spec, written_in: &WrittenIn, text: &str) {
    let list = written_in.path("provision");
    super::provision::locate_paths(&mut spec.provision, text, &list);
}

/// A machine's forwarded ports, each with the path to where it was written.
type Ports<'a> = Vec<(Vec<Step>, &'a PortForward)>;

fn ports_of<'a>(spec: &'a Spec, written_in: &WrittenIn) -> Ports<'a> {
    let base = written_in.path("ports");
    let at = |i: usize| {
        let mut path = base.clone();
        path.push(Step::Index(i));
        path
    };
    spec.ports
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| match entry {
            PortEntry::Forward(p) => Some((at(i), p)),
            PortEntry::Auto(_) => None,
        })
        .collect()
}

/// `auto` is said once in a list of ports: a second one is reported where it is.
fn check_auto(entries: &[PortEntry], base: Vec<Step>, problem: &mut dyn FnMut(Vec<Step>, String)) {
    let mut first: Option<usize> = None;
    for (i, entry) in entries.iter().enumerate() {
        if !matches!(entry, PortEntry::Auto(_)) {
            continue;
        }
        match first {
            None => first = Some(i),
            Some(f) => {
                let mut path = base.clone();
                path.push(Step::Index(i));
                let mut before = base.clone();
                before.push(Step::Index(f));
                problem(
                    path,
                    format!(
                        "`auto` is already set by {}: keep one `auto` entry in `ports`",
                        path_text(&before)
                    ),
                );
            }
        }
    }
}

/// A host port can be forwarded once in the whole project: passt would fail to
/// bind it a second time, after the machine had booted.
fn check_ports(machines: &[(&str, Ports)], problem: &mut dyn FnMut(Vec<Step>, String)) {
    let mut claimed: Vec<(&str, &[Step], &PortForward)> = Vec::new();
    for (machine, ports) in machines {
        for (path, port) in ports {
            let clash = claimed.iter().find(|(_, _, p)| overlaps(p, port));
            if let Some((other, other_path, _)) = clash {
                let what = describe(port);
                let message = if *other_path == path.as_slice() {
                    format!("host port {what} would go to both machine `{other}` and machine `{machine}`, which take the top-level `ports`: a host port can go to one machine only; give each machine its own `ports`")
                } else if other == machine {
                    format!(
                        "host port {what} is already forwarded by {}",
                        path_text(other_path)
                    )
                } else {
                    format!("host port {what} is already forwarded to machine `{other}` ({}): a host port can go to one machine only", path_text(other_path))
                };
                problem(path.clone(), message);
                continue;
            }
            claimed.push((machine, path, port));
        }
    }
}

/// Same protocol and port, on the same address or where one is the wildcard.
fn overlaps(a: &PortForward, b: &PortForward) -> bool {
    a.protocol == b.protocol
        && a.host == b.host
        && (a.address == b.address || a.address.is_unspecified() || b.address.is_unspecified())
}

fn describe(p: &PortForward) -> String {
    let protocol = match p.protocol {
        super::Protocol::Tcp => "tcp",
        super::Protocol::Udp => "udp",
    };
    format!("{}/{protocol} on {}", p.host.0, p.address)
}
