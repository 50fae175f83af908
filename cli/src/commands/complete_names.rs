//! `hvbox complete-names -- WORDS…` (hidden): the names a shell may complete after
//! WORDS, the command line typed so far without `hvbox` and without the word being
//! completed. Machine names come from the project's hvbox.yaml, box names from the
//! catalogs (built-in, the user's and the project's catalog file, boxes built
//! here). Prints nothing, and succeeds, where no name fits or none can be read:
//! a shell completing must never show an error.

use crate::project::Project;
use crate::spec::ProjectSpec;
use std::process::ExitCode;

/// What may come next.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    Machines,
    Boxes,
}

/// Commands whose positional arguments are machines.
const MACHINE_COMMANDS: &[&str] = &[
    "up",
    "provision",
    "ssh",
    "console",
    "logs",
    "status",
    "halt",
    "suspend",
    "resume",
    "destroy",
    "reload",
    "ssh-config",
    "upgrade-kernel",
    "kernels",
];

/// Options whose value is the next word, by what that value is.
fn option_value(option: &str) -> Option<Option<Wanted>> {
    match option {
        "--machine" => Some(Some(Wanted::Machines)),
        "--box" => Some(Some(Wanted::Boxes)),
        "-C" | "--project" | "--timeout" | "-j" | "--jobs" | "--version" | "--digest"
        | "--checksums" | "--package" | "-o" | "--output" | "-n" | "--namespace" | "--registry"
        | "--oci" | "--kernel-oci" | "--dir" => Some(None),
        _ => None,
    }
}

/// What the word after `words` is, and the project folder `-C` names, if any.
pub fn wanted(words: &[String]) -> (Option<Wanted>, Option<String>) {
    let mut commands: Vec<&str> = Vec::new();
    let mut project = None;
    let mut iter = words.iter().peekable();
    while let Some(word) = iter.next() {
        if word == "--" {
            // An ssh command or ssh's options follow: no names.
            return (None, project);
        }
        if let Some(value) = option_value(word) {
            match iter.next() {
                Some(v) if word == "-C" || word == "--project" => project = Some(v.clone()),
                Some(_) => {}
                None => return (value, project),
            }
            continue;
        }
        if !word.starts_with('-') {
            commands.push(word);
        }
    }
    let wanted = match commands.as_slice() {
        [cmd, ..] if MACHINE_COMMANDS.contains(cmd) => Some(Wanted::Machines),
        ["export", "kubevirt", ..] => Some(Wanted::Machines),
        ["box", "remove" | "export"] => Some(Wanted::Boxes),
        ["box", "add"] => Some(Wanted::Boxes),
        _ => None,
    };
    (wanted, project)
}

pub fn run(words: &[String]) -> ExitCode {
    let (wanted, project) = wanted(words);
    if let Some(dir) = project {
        if std::env::set_current_dir(&dir).is_err() {
            return ExitCode::SUCCESS;
        }
    }
    let names = match wanted {
        Some(Wanted::Machines) => machines(),
        Some(Wanted::Boxes) => boxes(),
        None => Vec::new(),
    };
    for name in names {
        println!("{name}");
    }
    ExitCode::SUCCESS
}

fn machines() -> Vec<String> {
    let Ok(project) = Project::discover() else {
        return Vec::new();
    };
    let mut names: Vec<String> = match ProjectSpec::load(&project.spec_path) {
        Ok(spec) => spec.machines().iter().map(|(n, _)| n.clone()).collect(),
        Err(_) => Vec::new(),
    };
    // Machines made before the spec lost them can still be halted or destroyed.
    for folder in project.machine_folders() {
        if !names.contains(&folder) {
            names.push(folder);
        }
    }
    names
}

fn boxes() -> Vec<String> {
    let root = Project::discover().ok().map(|p| p.root);
    let Ok(catalog) = hvbox_boxes::catalog::Catalog::standard(root.as_deref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = catalog.list().into_iter().map(|l| l.name).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(line: &str) -> (Option<Wanted>, Option<String>) {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        wanted(&words)
    }

    #[test]
    fn machine_commands_want_machines() {
        assert_eq!(w("up").0, Some(Wanted::Machines));
        assert_eq!(w("up --timeout 30 web").0, Some(Wanted::Machines));
        assert_eq!(
            w("-C ../shop halt"),
            (Some(Wanted::Machines), Some("../shop".into()))
        );
        assert_eq!(w("snapshot list --machine").0, Some(Wanted::Machines));
        assert_eq!(w("export kubevirt").0, Some(Wanted::Machines));
    }

    #[test]
    fn box_commands_and_options_want_boxes() {
        assert_eq!(w("box remove").0, Some(Wanted::Boxes));
        assert_eq!(w("init --box").0, Some(Wanted::Boxes));
    }

    #[test]
    fn elsewhere_no_names() {
        assert_eq!(w("").0, None);
        assert_eq!(w("box").0, None);
        assert_eq!(w("box remove debian-12").0, None);
        assert_eq!(w("up --timeout").0, None);
        assert_eq!(w("ssh web --").0, None);
        assert_eq!(w("completions").0, None);
    }
}
