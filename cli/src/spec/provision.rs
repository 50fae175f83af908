//! `provision:`: steps run over ssh, in order, once the machine is up — an inline
//! shell script, a script file from the project, or a file or folder copied in.
//!
//! A step is read by hand rather than derived, so that a wrong combination of keys
//! is an error at the step's own line and column (serde_yaml stamps errors raised
//! while a mapping is read with the mapping's position).

use super::locate::{path_text, position, Step};
use super::SpecError;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionStep {
    pub action: Action,
    /// Run as root through sudo (the default for every kind of step), or as the
    /// ssh user.
    pub privileged: bool,
    /// A label for the step's output; its kind and file name when absent.
    pub name: Option<String>,
    /// Line and column of the `script:` or `file:` value in the spec, so that a
    /// missing file is reported where it is named. Filled in after parsing.
    pub path_at: Option<(usize, usize)>,
    /// Where the step is, as `machines.web.provision[0]`. Filled in after parsing.
    pub key_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An inline script.
    Shell { script: String, args: Vec<String> },
    /// A script file; a relative path is relative to the spec's folder.
    Script { path: PathBuf, args: Vec<String> },
    /// A file or folder copied to `destination` in the guest.
    File {
        source: PathBuf,
        destination: String,
    },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Shell { .. } => "shell",
            Action::Script { .. } => "script",
            Action::File { .. } => "file",
        }
    }

    /// The host file the step reads, as the spec writes it.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Action::Shell { .. } => None,
            Action::Script { path, .. } => Some(path),
            Action::File { source, .. } => Some(source),
        }
    }
}

const FIELDS: &[&str] = &[
    "shell",
    "script",
    "file",
    "args",
    "privileged",
    "name",
    "destination",
];
const ACTIONS: [&str; 3] = ["shell", "script", "file"];

enum Field {
    Shell,
    Script,
    File,
    Args,
    Privileged,
    Name,
    Destination,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a provision step key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
                Ok(match s {
                    "shell" => Field::Shell,
                    "script" => Field::Script,
                    "file" => Field::File,
                    "args" => Field::Args,
                    "privileged" => Field::Privileged,
                    "name" => Field::Name,
                    "destination" => Field::Destination,
                    _ => return Err(E::unknown_field(s, FIELDS)),
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> Deserialize<'de> for ProvisionStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = ProvisionStep;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a provision step: a mapping with one of `shell`, `script` or `file`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProvisionStep, A::Error> {
        let mut shell = None;
        let mut script = None;
        let mut file = None;
        let mut args = None;
        let mut privileged = None;
        let mut name = None;
        let mut destination = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Shell => once(&mut shell, "shell", map.next_value::<InlineScript>()?.0)?,
                Field::Script => once(&mut script, "script", map.next_value::<LocalPath>()?.0)?,
                Field::File => once(&mut file, "file", map.next_value::<LocalPath>()?.0)?,
                Field::Args => once(
                    &mut args,
                    "args",
                    map.next_value::<Vec<Arg>>()?
                        .into_iter()
                        .map(|a| a.0)
                        .collect(),
                )?,
                Field::Privileged => once(&mut privileged, "privileged", map.next_value()?)?,
                Field::Name => once(&mut name, "name", map.next_value::<StepName>()?.0)?,
                Field::Destination => once(
                    &mut destination,
                    "destination",
                    map.next_value::<Destination>()?.0,
                )?,
            }
        }
        let present: Vec<&str> = [shell.is_some(), script.is_some(), file.is_some()]
            .iter()
            .zip(ACTIONS)
            .filter(|(set, _)| **set)
            .map(|(_, key)| key)
            .collect();
        if present.len() > 1 {
            return Err(de::Error::custom(format!(
                "a step does one thing, but this one has `{}`: make one step of each",
                present.join("` and `")
            )));
        }
        let action = if let Some(script) = shell {
            Action::Shell {
                script,
                args: args.unwrap_or_default(),
            }
        } else if let Some(path) = script {
            Action::Script {
                path,
                args: args.unwrap_or_default(),
            }
        } else if let Some(source) = file {
            if args.is_some() {
                return Err(de::Error::custom(
                    "`args` is for `shell` and `script` steps; a `file` step runs nothing",
                ));
            }
            let Some(destination) = destination.take() else {
                return Err(de::Error::custom(
                    "a `file` step needs `destination`: where in the guest the file or folder goes",
                ));
            };
            Action::File {
                source,
                destination,
            }
        } else {
            return Err(de::Error::custom(
                "a step needs one of `shell` (an inline script), `script` (a script file) or `file` (a file or folder to copy)",
            ));
        };
        if destination.is_some() {
            return Err(de::Error::custom(format!(
                "`destination` is for `file` steps, not `{}` steps",
                action.kind()
            )));
        }
        Ok(ProvisionStep {
            action,
            privileged: privileged.unwrap_or(true),
            name,
            path_at: None,
            key_path: None,
        })
    }
}

fn once<T, E: de::Error>(slot: &mut Option<T>, key: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(key));
    }
    Ok(())
}

/// A string value checked as it is read, so a bad one is reported at its position.
fn checked_str<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &'static str,
    check: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct V<T> {
        what: &'static str,
        check: fn(&str) -> Result<T, String>,
    }
    impl<T> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.what)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.check)(s).map_err(E::custom)
        }
    }
    d.deserialize_str(V { what, check })
}

struct InlineScript(String);

impl<'de> Deserialize<'de> for InlineScript {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a shell script (use `|` for several lines)", |s| {
            if s.trim().is_empty() {
                return Err(
                    "the script is empty: write the commands to run, or remove the step".into(),
                );
            }
            Ok(InlineScript(s.to_string()))
        })
    }
}

struct LocalPath(PathBuf);

impl<'de> Deserialize<'de> for LocalPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a path relative to hvbox.yaml's folder", |s| {
            if s.trim().is_empty() {
                return Err("the path is empty".into());
            }
            if s.starts_with('~') {
                return Err(format!(
                    "{s:?}: `~` is not expanded; write the path relative to hvbox.yaml's folder, or in full"
                ));
            }
            Ok(LocalPath(PathBuf::from(s)))
        })
    }
}

/// Where a `file` step puts its file or folder in the guest.
struct Destination(String);

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a path in the guest such as /etc/app.conf", |s| {
            if s.trim().is_empty() {
                return Err("the destination is empty".into());
            }
            if s.starts_with('~') {
                return Err(format!(
                    "{s:?}: `~` is not expanded in the guest; a relative destination is already relative to the user's home folder"
                ));
            }
            if let Some(c) = s.chars().find(|c| c.is_control()) {
                return Err(format!("{s:?}: a destination cannot hold {c:?}"));
            }
            Ok(Destination(s.to_string()))
        })
    }
}

/// A label printed before each line of the step's output.
struct StepName(String);

impl<'de> Deserialize<'de> for StepName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "a short label such as \"app setup\"", |s| {
            let s = s.trim();
            if s.is_empty() {
                return Err("the name is empty; remove the key to use the default label".into());
            }
            if s.chars().any(char::is_control) {
                return Err(format!("{s:?}: a name is one line of printable text"));
            }
            Ok(StepName(s.to_string()))
        })
    }
}

/// One argument, as written: serde_yaml hands any scalar (`3`, `1.50`, `true`) to
/// a string as its text.
struct Arg(String);

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an argument: a string or a number", |s| {
            Ok(Arg(s.to_string()))
        })
    }
}

/// Record where each step's `script:` or `file:` value is written in `text`, the
/// steps being the list at `list` (`provision`, or a machine's own).
pub(super) fn locate_paths(steps: &mut [ProvisionStep], text: &str, list: &[Step]) {
    for (i, step) in steps.iter_mut().enumerate() {
        if step.action.local_path().is_some() {
            let mut path = list.to_vec();
            path.push(Step::Index(i));
            step.key_path = Some(path_text(&path));
            path.push(Step::Key(step.action.kind().to_string()));
            step.path_at = position(text, &path);
        }
    }
}

impl ProvisionStep {
    /// `message` about the host file of the `index`th step, at its `script:` or
    /// `file:` value: `machines.web.provision[0].script: message`.
    pub(super) fn at_its_file(&self, index: usize, spec_path: &Path, message: &str) -> SpecError {
        let key = self
            .key_path
            .clone()
            .unwrap_or_else(|| format!("provision[{index}]"));
        SpecError {
            path: spec_path.to_path_buf(),
            line: self.path_at.map(|(l, _)| l),
            column: self.path_at.map(|(_, c)| c),
            message: format!("{key}.{}: {message}", self.action.kind()),
        }
    }
}

/// Every `script:` and `file:` must exist beside the spec: a missing one is found
/// by `hvbox validate` and stops `hvbox up` before anything boots.
pub(super) fn check_local_files(steps: &[ProvisionStep], spec_path: &Path) -> Vec<SpecError> {
    let root = spec_path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let Some(path) = step.action.local_path() else {
            continue;
        };
        let full = root.join(path);
        let problem = match (&step.action, std::fs::metadata(&full)) {
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
            (_, Err(e)) => format!("cannot be read ({e})"),
            (Action::Script { .. }, Ok(m)) if !m.is_file() => "is not a file".to_string(),
            (Action::File { .. }, Ok(m)) if !m.is_file() && !m.is_dir() => {
                "is neither a file nor a folder".to_string()
            }
            _ => continue,
        };
        problems.push(step.at_its_file(
            i,
            spec_path,
            &format!(
                "{} {problem} (looked for {})",
                path.display(),
                full.display()
            ),
        ));
    }
    problems
}
