//! Resolving and fetching a project's boxes: through `hvbox.lock` when it has an
//! entry for what the spec asks, else through the catalog, then writing the lock.
//! Shared by `hvbox up` and `hvbox box update`.

use crate::lockfile::{self, LockFile, LockedBox};
use crate::progress::step;
use crate::project::Project;
use crate::spec::{BoxSource, Boxes, ProjectSpec};
use anyhow::{Context, Result};
use hvbox_boxes::catalog::Catalog;
use hvbox_boxes::{BoxArtifacts, FetchedBox, Progress, Store};

/// Whether an existing lock may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Use `hvbox.lock`'s entry for what the spec asks, when it has one.
    UseLock,
    /// Ask the catalog again (`hvbox box update`).
    Fresh,
}

/// A box fetched into the cache, and its lock entry now.
pub struct ProjectBox {
    pub artifacts: BoxArtifacts,
    pub fetched: FetchedBox,
    /// The lock's entry for this box before this call, if any.
    pub previous: Option<LockedBox>,
    pub locked: LockedBox,
}

/// The catalog a project sees: its own catalog file, the user's, boxes built here,
/// the built-in boxes; checksum files of pinned versions cached in the store.
pub fn catalog(project_root: Option<&std::path::Path>, store: &Store) -> Result<Catalog> {
    Ok(Catalog::standard(project_root)?
        .with_options(store.options().clone())
        .with_text_cache(&store.root().join("texts")))
}

/// The boxes a project can have without the network, for the spec's check: what
/// `hvbox.lock` has an entry for (`up` uses it as it is), else what a catalog names.
pub struct OfflineBoxes {
    lock: Option<LockFile>,
    catalog: Result<Catalog, String>,
    project: Project,
}

impl OfflineBoxes {
    pub fn of(project: &Project) -> OfflineBoxes {
        OfflineBoxes {
            // A lock that cannot be read is reported by the command that reads it.
            lock: lockfile::load(&project.root).ok().flatten(),
            catalog: Catalog::standard(Some(&project.root)).map_err(|e| e.to_string()),
            project: project.clone(),
        }
    }
}

impl Boxes for OfflineBoxes {
    fn unknown(&self, source: &BoxSource) -> Option<String> {
        let BoxSource::Catalog(request) = source else {
            return None;
        };
        if self.lock.as_ref().is_some_and(|l| l.find(source).is_some()) {
            return None;
        }
        match &self.catalog {
            Ok(catalog) => catalog.check_offline(request).err().map(|e| e.to_string()),
            Err(e) => Some(e.clone()),
        }
    }

    fn machine_exists(&self, name: &str) -> bool {
        self.project.machine(name).is_created()
    }
}

/// What a box source is, asking the catalog (network for catalog names).
pub fn resolve_source(
    project: &Project,
    source: &BoxSource,
    store: &Store,
) -> Result<BoxArtifacts> {
    match source {
        BoxSource::Catalog(request) => catalog(Some(&project.root), store)?
            .resolve(request)
            .map_err(Into::into),
        BoxSource::Artifacts(a) => Ok(BoxArtifacts {
            name: label(source),
            version: None,
            disk: a.disk.to_artifact(),
            kernel: a.kernel.as_ref().map(|k| k.to_artifact()),
            initrd: a.initrd.as_ref().map(|i| i.to_artifact()),
        }),
    }
}

/// A short name for a box source: the catalog name, or the disk's file name.
pub fn label(source: &BoxSource) -> String {
    match source {
        BoxSource::Catalog(request) => request.name.clone(),
        BoxSource::Artifacts(a) => a
            .disk
            .url
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("disk")
            .to_string(),
    }
}

/// Resolve each of `wanted` (lock or catalog), fetch every artifact (in parallel,
/// verified), and write `hvbox.lock` if it changed: the entries the spec still asks
/// for, with these. No network when the lock has them and the cache holds them.
pub fn fetch_boxes(
    project: &Project,
    spec: &ProjectSpec,
    wanted: &[&BoxSource],
    store: &Store,
    progress: Progress,
    mode: Resolve,
) -> Result<Vec<ProjectBox>> {
    let previous = lockfile::load(&project.root)?;
    let mut got: Vec<ProjectBox> = Vec::new();
    for source in wanted {
        let requested = lockfile::requested(source);
        if got.iter().any(|b| b.locked.requested == requested) {
            continue;
        }
        let old = previous.as_ref().and_then(|l| l.find(source)).cloned();
        let from_lock = match (&old, mode) {
            (Some(entry), Resolve::UseLock) => Some(entry.artifacts()),
            _ => None,
        };
        if let (Some(lock), None, Resolve::UseLock) = (&previous, &old, mode) {
            say_not_locked(lock, spec, &requested);
        }
        let locked_already = from_lock.is_some();
        let artifacts = match from_lock {
            Some(a) => a,
            None => resolve_source(project, source, store)
                .with_context(|| format!("resolving box `{requested}`"))?,
        };
        let fetched = store.fetch_box(&artifacts, progress)?;
        let locked = match (&old, locked_already) {
            (Some(entry), true) => entry.clone(),
            _ => LockedBox::new(source, &artifacts, &fetched),
        };
        got.push(ProjectBox {
            artifacts,
            fetched,
            previous: old,
            locked,
        });
    }
    write_lock(project, spec, &got)?;
    // For `hvbox box list`'s "used by"; a cache that cannot record it still works.
    if let Err(e) = store.register_project(&project.root) {
        eprintln!("hvbox: warning: {e}");
    }
    Ok(got)
}

fn say_not_locked(lock: &LockFile, spec: &ProjectSpec, requested: &str) {
    match lock.boxes() {
        [only] if spec.boxes().len() == 1 => step!(
            "{} was written for box `{}`; hvbox.yaml now asks for `{requested}`: resolving it again",
            lockfile::LOCK_FILE,
            only.requested
        ),
        _ => step!(
            "{} has no entry for box `{requested}`: resolving it",
            lockfile::LOCK_FILE
        ),
    }
}

/// Put the fetched boxes into the lock as it is now on disk (another command may
/// have written it since it was read), without the entries hvbox.yaml no longer
/// asks for.
fn write_lock(project: &Project, spec: &ProjectSpec, got: &[ProjectBox]) -> Result<()> {
    let on_disk = lockfile::load(&project.root)?;
    let mut lock = on_disk.clone().unwrap_or_default();
    for b in got {
        lock.put(b.locked.clone());
    }
    let asked: Vec<String> = spec.boxes().into_iter().map(lockfile::requested).collect();
    lock.retain_requested(&asked);
    if on_disk.as_ref() != Some(&lock) {
        lockfile::save(&project.root, &lock)?;
    }
    Ok(())
}

/// "debian-12 20240211-1654" or just the name.
pub fn describe(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{name} {v}"),
        None => name.to_string(),
    }
}
