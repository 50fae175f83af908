//! The whole spec: one machine (`default`), or the named machines of `machines:`,
//! each resolved into its own [`Spec`]. Checks that involve several keys (a
//! top-level `hostname` beside `machines`, a host port forwarded twice) are made
//! here, and located in the text by [`locate`](super::locate).

use super::layer::SpecFile;
use super::locate::{error_at, path_text, Step};
use super::{BoxSource, Hostname, PortForward, Spec, SpecError};
use std::path::Path;

/// The machine of a spec without `machines:`.
pub const DEFAULT_MACHINE: &str = "default";

#[derive(Debug, Clone)]
pub struct ProjectSpec {
    machines: Vec<(String, Spec)>,
    /// Whether the spec has `machines:` (else its one machine is `default`).
    named: bool,
}

impl ProjectSpec {
    pub fn load(path: &Path) -> Result<ProjectSpec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read the spec: {e}"),
        })?;
        ProjectSpec::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<ProjectSpec, SpecError> {
        if text.trim().is_empty() {
            return Err(SpecError {
                path: path.to_path_buf(),
                line: None,
                column: None,
                message:
                    "the spec is empty; it needs at least `box:` (run `hvbox init` for a starter)"
                        .into(),
            });
        }
        let file: SpecFile =
            serde_yaml::from_str(text).map_err(|e| SpecError::from_yaml(path, &e))?;
        resolve(file, text)
            .map_err(|(at, message)| SpecError::from_yaml(path, &error_at(text, &at, &message)))
    }

    /// Check that the files every machine's provision steps name exist: for
    /// commands that are about to run them.
    pub fn check_provision_files(&self, path: &Path) -> Result<(), SpecError> {
        for (_, spec) in &self.machines {
            super::provision::check_local_files(&spec.provision, path)?;
        }
        Ok(())
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
}

/// What is wrong, and the path to the node to blame.
type Located = (Vec<Step>, String);

fn key(k: &str) -> Step {
    Step::Key(k.to_string())
}

/// Each machine's layers resolved, or the first problem found. `text` is the spec
/// the file was read from, for where each provision step's file is named.
fn resolve(file: SpecFile, text: &str) -> Result<ProjectSpec, Located> {
    let (top, machines) = file.split();
    let Some(machines) = machines else {
        let mut spec = top
            .resolve()
            .ok_or_else(|| (Vec::new(), "missing field `box`".to_string()))?;
        locate_provision_files(&mut spec, &WrittenIn::Top, text);
        check_ports(&[(DEFAULT_MACHINE, ports_of(&spec, &WrittenIn::Top))])?;
        return Ok(ProjectSpec {
            machines: vec![(DEFAULT_MACHINE.to_string(), spec)],
            named: false,
        });
    };
    if top.hostname.is_some() {
        return Err((
            vec![Step::AtKey("hostname".into())],
            "a top-level `hostname` cannot go with `machines`: each machine has its own (its name, unless it sets `hostname`)".into(),
        ));
    }
    let mut resolved = Vec::new();
    let mut sources = Vec::new();
    for (name, layer) in machines {
        let written_in = |own: bool| {
            if own {
                WrittenIn::Machine(name.clone())
            } else {
                WrittenIn::Top
            }
        };
        let ports_in = written_in(layer.ports.is_some());
        let provision_in = written_in(layer.provision.is_some());
        let mut spec = layer.over(&top).resolve().ok_or_else(|| {
            (
                vec![key("machines"), Step::AtKey(name.clone())],
                format!("machine `{name}` has no `box`, and there is no top-level `box` for it to take: add `box:` to it or to the top level"),
            )
        })?;
        if spec.hostname.is_none() {
            spec.hostname = Some(Hostname(name.clone()));
        }
        locate_provision_files(&mut spec, &provision_in, text);
        sources.push(ports_in);
        resolved.push((name, spec));
    }
    let ports: Vec<(&str, Ports)> = resolved
        .iter()
        .zip(&sources)
        .map(|((name, spec), source)| (name.as_str(), ports_of(spec, source)))
        .collect();
    check_ports(&ports)?;
    Ok(ProjectSpec {
        machines: resolved,
        named: true,
    })
}

/// Where a machine's value of a key was written: at the top level, or in the
/// machine's own entry (which replaces the top-level value).
enum WrittenIn {
    Top,
    Machine(String),
}

impl WrittenIn {
    fn path(&self, k: &str) -> Vec<Step> {
        match self {
            WrittenIn::Top => vec![key(k)],
            WrittenIn::Machine(name) => vec![key("machines"), key(name), key(k)],
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
    spec.ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut path = base.clone();
            path.push(Step::Index(i));
            (path, p)
        })
        .collect()
}

/// A host port can be forwarded once in the whole project: passt would fail to
/// bind it a second time, after the machine had booted.
fn check_ports(machines: &[(&str, Ports)]) -> Result<(), Located> {
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
                return Err((path.clone(), message));
            }
            claimed.push((machine, path, port));
        }
    }
    Ok(())
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

impl SpecError {
    fn from_yaml(path: &Path, e: &serde_yaml::Error) -> SpecError {
        let location = e.location();
        SpecError {
            path: path.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message: super::strip_location(&e.to_string()),
        }
    }
}
