//! The host paths a spec reaches outside its project folder. Like a Vagrantfile, a
//! spec cloned from someone else can point a machine at any path its user may open
//! (a disk the guest writes, a folder it shares, a file copied into it); `validate`
//! lists those paths so that opening a project is an informed choice.

use super::first_boot::Spot;
use super::locate::Step;
use super::project::{read_text, ProjectSpec};
use super::provision::Action;
use super::{BoxSource, SpecError, SpecProblems};
use std::path::{Component, Path, PathBuf};

/// One host path outside the project: where the spec names it, the path and what
/// the machine may do with it (`file:line:column: key: path (access)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPath {
    pub at: SpecError,
    pub path: PathBuf,
}

impl std::fmt::Display for HostPath {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.at.fmt(f)
    }
}

fn described(path: &Path, access: &str) -> String {
    format!("{} ({access})", path.display())
}

/// Every host path outside the spec's folder that `project`'s machines reach, in
/// the spec's order, each once. Symbolic links are followed, so a link inside the
/// project that leads out of it is listed too.
pub fn outside_project(
    project: &ProjectSpec,
    spec_path: &Path,
) -> Result<Vec<HostPath>, SpecProblems> {
    let text = read_text(spec_path)?;
    let root = match spec_path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let project_dir = resolved(root);
    let mut found: Vec<HostPath> = Vec::new();
    for (index, (_, spec)) in project.machines().iter().enumerate() {
        let written_in = |key: &str| project.written_in(index, key);
        let spot = Spot {
            spec_path,
            text: &text,
            written_in: &written_in,
        };
        let mut named = Vec::new();
        if let BoxSource::Artifacts(artifacts) = &spec.box_source {
            let url = &artifacts.disk.url;
            if let Some(file) = url.strip_prefix("file://") {
                let at = spot.path("box", &[key("disk"), key("url")]);
                named.push((
                    at,
                    PathBuf::from(file),
                    "a box disk image read from the host",
                ));
            }
        }
        for (i, disk) in spec.disks.iter().enumerate() {
            let at = spot.path("disks", &[Step::Index(i), key("path")]);
            let access = if disk.read_only {
                "a disk the guest reads"
            } else {
                "a disk the guest reads and writes"
            };
            named.push((at, root.join(&disk.path), access));
        }
        for (i, mount) in spec.mounts.iter().flatten().enumerate() {
            let at = spot.path("mounts", &[Step::Index(i), key("host")]);
            let access = if mount.read_only {
                "a folder shared with the guest, read-only"
            } else {
                "a folder shared with the guest, which may change it"
            };
            named.push((at, super::mounts::host_path(&mount.host, root), access));
        }
        if let Some(file) = &spec.cloud_init.user_data_file {
            let at = spot.path("cloud_init", &[key("user_data_file")]);
            named.push((at, root.join(file), "read into the first-boot seed"));
        }
        let mut listed: Vec<HostPath> = named
            .into_iter()
            .map(|(at, path, access)| {
                let path = resolved(&path);
                HostPath {
                    at: spot.at(&at, &described(&path, access)),
                    path,
                }
            })
            .collect();
        for (i, step) in spec.provision.iter().enumerate() {
            let (path, access) = match &step.action {
                Action::Shell { .. } => continue,
                Action::Script { path, .. } => (path, "a script run in the guest"),
                Action::File { source, .. } => (source, "copied into the guest"),
            };
            let path = resolved(&root.join(path));
            listed.push(HostPath {
                at: step.at_its_file(i, spec_path, &described(&path, access)),
                path,
            });
        }
        for path in listed {
            // Machines share what the spec's top level says: each place once.
            if !path.path.starts_with(&project_dir) && !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found.sort_by_key(|p| (p.at.line, p.at.column));
    Ok(found)
}

fn key(k: &str) -> Step {
    Step::Key(k.to_string())
}

/// `path` absolute with its links followed; when it does not exist (the spec check
/// says so), made absolute and tidied by hand.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut tidy = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                tidy.pop();
            }
            Component::CurDir => {}
            other => tidy.push(other),
        }
    }
    tidy
}
