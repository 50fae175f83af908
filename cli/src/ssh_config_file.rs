//! Each machine's own ssh_config, `.hvbox/machines/NAME/ssh_config`, written at every
//! boot (the port changes) under a Host alias unique per project and machine, and
//! linked from one folder of hvbox's data folder: a single `Include` line in
//! ~/.ssh/config then reaches every machine, for ssh, scp, rsync and editors.

use crate::machine::{Machine, MachineState};
use crate::spec::DEFAULT_MACHINE;
use anyhow::{Context, Result};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const FILE: &str = "ssh_config";

/// Where the links to the machines' files are: the folder `hvbox ssh-config
/// --include`'s line names.
pub fn links_dir() -> PathBuf {
    hvbox_boxes::catalog::data_dir().join("ssh")
}

/// The line for ~/.ssh/config.
pub fn include_line() -> String {
    format!(
        "Include {}",
        crate::ssh::config_path(&links_dir().join("*"))
    )
}

/// The machine's alias: the one its file was written with, so it holds across
/// boots, else the one it will get.
pub fn alias(machine: &Machine) -> String {
    written_alias(machine).unwrap_or_else(|| free_alias(machine))
}

/// Write the machine's file for ssh on `port` and link it; returns the alias.
pub fn write(machine: &Machine, state: &MachineState, port: u16) -> Result<String> {
    let alias = alias(machine);
    let mut text = format!(
        "# hvbox machine `{}` in {}; hvbox rewrites this file at every boot, as the port changes.\nHost {alias}\n",
        machine.name,
        project_root(machine).display()
    );
    for (name, value) in crate::ssh::options(machine, state, port) {
        text.push_str(&format!("  {name} {value}\n"));
    }
    let file = own_file(machine);
    crate::machine::write_atomic(&file, text.as_bytes())?;
    link(&alias, &file)?;
    Ok(alias)
}

/// Remove the machine's link (its file goes with its folder).
pub fn forget(machine: &Machine) {
    if let Some(alias) = written_alias(machine) {
        let link = links_dir().join(&alias);
        if std::fs::read_link(&link).is_ok_and(|to| to == own_file(machine)) {
            let _ = std::fs::remove_file(link);
        }
    }
}

fn own_file(machine: &Machine) -> PathBuf {
    let file = machine.file(FILE);
    std::path::absolute(&file).unwrap_or(file)
}

/// `.hvbox/machines/NAME` is in the project's folder.
fn project_root(machine: &Machine) -> PathBuf {
    let dir = std::path::absolute(&machine.dir).unwrap_or_else(|_| machine.dir.clone());
    dir.ancestors().nth(3).unwrap_or(&dir).to_path_buf()
}

fn written_alias(machine: &Machine) -> Option<String> {
    let text = std::fs::read_to_string(machine.file(FILE)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Host "))
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

/// `hvbox-FOLDER` for a project's only machine, `hvbox-FOLDER-NAME` among several;
/// with `-2`, `-3`… when another project's machine has it already.
fn free_alias(machine: &Machine) -> String {
    let folder = project_root(machine)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = match machine.name.as_str() {
        DEFAULT_MACHINE => format!("hvbox-{}", host_word(&folder)),
        name => format!("hvbox-{}-{}", host_word(&folder), host_word(name)),
    };
    let ours = own_file(machine);
    (1..)
        .map(|n| match n {
            1 => base.clone(),
            n => format!("{base}-{n}"),
        })
        .find(|alias| taken_by(&links_dir().join(alias)).is_none_or(|to| to == ours))
        .expect("some alias is free")
}

/// The live file a link points to; a link to a file that is gone holds nothing.
fn taken_by(link: &Path) -> Option<PathBuf> {
    let to = std::fs::read_link(link).ok()?;
    to.exists().then_some(to)
}

/// A name as a Host pattern word: letters, digits, `.`, `_` and `-`.
fn host_word(name: &str) -> String {
    let word: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .collect();
    match word.trim_matches('-') {
        "" => "project".into(),
        w => w.to_string(),
    }
}

/// Point `links_dir()/alias` at `file`, and drop links to machines that are gone.
fn link(alias: &str, file: &Path) -> Result<()> {
    let dir = links_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::machine::private::DIR_MODE)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_symlink()) && taken_by(&entry.path()).is_none() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    // Renamed into place, so ssh never finds the link missing mid-boot.
    let partial = dir.join(format!(".{alias}.{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    std::os::unix::fs::symlink(file, &partial)
        .and_then(|()| std::fs::rename(&partial, dir.join(alias)))
        .with_context(|| format!("linking {} from {}", file.display(), dir.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_words_keep_what_ssh_patterns_allow() {
        assert_eq!(super::host_word("my project"), "my-project");
        assert_eq!(super::host_word("web_1.x"), "web_1.x");
        assert_eq!(super::host_word("*?!"), "project");
    }
}
