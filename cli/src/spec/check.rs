//! The one check of a spec, which `validate`, `up` and every command that acts on
//! machines run: the spec read key by key (every problem in it), then what it refers
//! to on this host (boxes the catalogs know, files beside it, the first-boot
//! settings as the seed builder takes them), so that no command fails later on what
//! `validate` could have said.

use super::first_boot::{self, Spot};
use super::locate::{position, Step};
use super::project::{read_text, ProjectSpec};
use super::{BoxSource, Hostname, Spec, SpecError, SpecProblems};
use std::path::Path;

/// Which boxes can be had on this host without the network.
pub trait Boxes {
    /// Why the box `source` names cannot be resolved here without the network;
    /// `None` when it can.
    fn unknown(&self, source: &BoxSource) -> Option<String>;
    /// Whether the machine `name` exists already: it has its own disk and needs no
    /// box, so an unknown one is no problem for it.
    fn machine_exists(&self, _name: &str) -> bool {
        false
    }
}

/// The spec in `path` with every problem it has, on this host.
pub fn check(path: &Path, boxes: &dyn Boxes) -> Result<ProjectSpec, SpecProblems> {
    let text = read_text(path)?;
    let (project, mut problems) = ProjectSpec::parse_partly(&text, path)?;
    let root = path.parent().unwrap_or(Path::new("."));
    let mut asked: Vec<&BoxSource> = Vec::new();
    for (index, (name, spec)) in project.machines().iter().enumerate() {
        let written_in = |key: &str| project.written_in(index, key);
        let spot = Spot {
            spec_path: path,
            text: &text,
            written_in: &written_in,
        };
        if !boxes.machine_exists(name) && !asked.contains(&&spec.box_source) {
            asked.push(&spec.box_source);
            problems.extend(check_box(&spec.box_source, boxes, &spot));
        }
        problems.extend(check_disks(spec, root, &spot));
        let user = spec
            .ssh
            .user
            .as_ref()
            .map_or(first_boot::DEFAULT_USER, |u| u.0.as_str());
        problems.extend(super::mounts::check(
            spec.mounts.as_deref(),
            root,
            user,
            &spot,
        ));
        problems.extend(super::provision::check_local_files(&spec.provision, path));
        let hostname = match &spec.hostname {
            Some(name) => name.clone(),
            None => Hostname::of_folder(&std::path::absolute(root).unwrap_or_default()),
        };
        problems.extend(first_boot::check(spec, &hostname.0, root, &spot));
    }
    if problems.is_empty() {
        Ok(project)
    } else {
        Err(SpecProblems::new(path, problems))
    }
}

/// A catalog name must be known here (a catalog or hvbox.lock); a box with its own
/// kernel or initrd is resolved and cached, but not booted yet.
fn check_box(source: &BoxSource, boxes: &dyn Boxes, spot: &Spot) -> Vec<SpecError> {
    let at = spot.path("box", &[]);
    match source {
        BoxSource::Catalog(_) => {
            let Some(why) = boxes.unknown(source) else {
                return Vec::new();
            };
            let name_at = spot.path("box", &[Step::Key("name".into())]);
            let at = if position(spot.text, &name_at).is_some() {
                name_at
            } else {
                at
            };
            vec![spot.at(&at, &why)]
        }
        BoxSource::Artifacts(a) => [("kernel", a.kernel.is_some()), ("initrd", a.initrd.is_some())]
            .into_iter()
            .filter(|(_, given)| *given)
            .map(|(key, _)| {
                spot.at(
                    &spot.path("box", &[Step::Key(key.into())]),
                    "boxes with a separate kernel or initrd are not supported yet: hvbox boots the kernel installed in the box's disk; remove `kernel` and `initrd`",
                )
            })
            .collect(),
    }
}

/// Each extra disk must be a file (relative paths start at the spec's folder).
fn check_disks(spec: &Spec, root: &Path, spot: &Spot) -> Vec<SpecError> {
    let mut problems = Vec::new();
    for (i, disk) in spec.disks.iter().enumerate() {
        let full = root.join(&disk.path);
        let problem = match std::fs::metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".to_string(),
            Err(e) => format!("cannot be read ({e})"),
            Ok(m) if !m.is_file() => "is not a file".to_string(),
            Ok(_) => continue,
        };
        let at = spot.path("disks", &[Step::Index(i), Step::Key("path".into())]);
        let message = format!(
            "{} {problem} (looked for {})",
            disk.path.display(),
            full.display()
        );
        problems.push(spot.at(&at, &message));
    }
    problems
}
