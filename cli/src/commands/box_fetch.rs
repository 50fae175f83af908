//! Resolving and fetching a project's box: through `hvbox.lock` when it matches the
//! spec, else through the catalog, then writing the lock. Shared by `hvbox up` and
//! `hvbox box update`.

use crate::lockfile::{self, LockFile};
use crate::project::Project;
use crate::spec::{BoxSource, Spec};
use anyhow::{Context, Result};
use hvbox_boxes::catalog::Catalog;
use hvbox_boxes::{BoxArtifacts, FetchedBox, Progress, Store};

/// Whether an existing lock may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Use `hvbox.lock` when it was written for what the spec asks.
    UseLock,
    /// Ask the catalog again (`hvbox box update`).
    Fresh,
}

/// The box fetched into the cache, and the lock that now describes it.
pub struct ProjectBox {
    pub artifacts: BoxArtifacts,
    pub fetched: FetchedBox,
    /// The lock before this call, if any.
    pub previous: Option<LockFile>,
    pub lock: LockFile,
}

/// The catalog a project sees: its own catalog file, the user's, boxes built here,
/// the built-in boxes; checksum files of pinned versions cached in the store.
pub fn catalog(project_root: Option<&std::path::Path>, store: &Store) -> Result<Catalog> {
    Ok(Catalog::standard(project_root)?
        .with_options(store.options().clone())
        .with_text_cache(&store.root().join("texts")))
}

/// What the spec's box is, asking the catalog (network for catalog names).
pub fn resolve_spec(project: &Project, spec: &Spec, store: &Store) -> Result<BoxArtifacts> {
    match &spec.box_source {
        BoxSource::Catalog(request) => catalog(Some(&project.root), store)?
            .resolve(request)
            .map_err(Into::into),
        BoxSource::Artifacts(a) => {
            let name = a
                .disk
                .url
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("disk")
                .to_string();
            Ok(BoxArtifacts {
                name,
                version: None,
                disk: a.disk.to_artifact(),
                kernel: a.kernel.as_ref().map(|k| k.to_artifact()),
                initrd: a.initrd.as_ref().map(|i| i.to_artifact()),
            })
        }
    }
}

/// Resolve (lock or catalog), fetch every artifact (in parallel, verified), and
/// write `hvbox.lock` if it changed. No network when the lock matches and the cache
/// holds the box.
pub fn fetch_project_box(
    project: &Project,
    spec: &Spec,
    store: &Store,
    progress: Progress,
    mode: Resolve,
) -> Result<ProjectBox> {
    let previous = lockfile::load(&project.root)?;
    let from_lock = match (&previous, mode) {
        (Some(lock), Resolve::UseLock) if lock.matches(&spec.box_source) => Some(lock.artifacts()),
        (Some(lock), Resolve::UseLock) => {
            println!(
                "==> {} was written for box `{}`; hvbox.yaml now asks for `{}`: resolving it again",
                lockfile::LOCK_FILE,
                lock.locked.requested,
                lockfile::requested(&spec.box_source)
            );
            None
        }
        _ => None,
    };
    let locked = from_lock.is_some();
    let artifacts = match from_lock {
        Some(a) => a,
        None => resolve_spec(project, spec, store).with_context(|| {
            format!("resolving box `{}`", lockfile::requested(&spec.box_source))
        })?,
    };
    let fetched = store.fetch_box(&artifacts, progress)?;
    let lock = match (&previous, locked) {
        (Some(p), true) => p.clone(),
        _ => LockFile::new(&spec.box_source, &artifacts, &fetched),
    };
    if previous.as_ref() != Some(&lock) {
        lockfile::save(&project.root, &lock)?;
    }
    // For `hvbox box list`'s "used by"; a cache that cannot record it still works.
    if let Err(e) = store.register_project(&project.root) {
        eprintln!("hvbox: warning: {e}");
    }
    Ok(ProjectBox {
        artifacts,
        fetched,
        previous,
        lock,
    })
}

/// "debian-12 20240211-1654" or just the name.
pub fn describe(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{name} {v}"),
        None => name.to_string(),
    }
}
