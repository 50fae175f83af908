//! Content-addressed cache of verified, converted artifacts.
//!
//! Layout under the root:
//! - `blobs/<algorithm>/<hex>`: the disk (sparse raw) made from the download whose
//!   digest is `<algorithm>:<hex>`, or the file itself for kernels and initrds
//! - `meta/<algorithm>/<hex>.json`: what it is (box name, version, URL, format, sizes)
//! - `tmp/`: downloads in progress (same filesystem, so the final rename is atomic);
//!   `<hex>.download` is a spool kept for resuming after a network failure
//! - `locks/<hex>.lock`: per-entry flock serialising concurrent fetches
//! - `projects/<key>.json`: project folders that used the cache (for "used by")

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::fetch::FetchOptions;
use crate::formats::Format;
use crate::lock::{lock_path, EntryLock};
use crate::pipeline::{self, Job, Kind};
use crate::progress::Reporter;
use crate::spool::ScratchDir;
use crate::{Algorithm, Artifact, BoxArtifacts, Digest, Error, Progress};

/// A cache directory of verified artifacts.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    options: FetchOptions,
}

/// What the cache knows about an entry beyond its digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryMeta {
    /// Box name, when fetched for a box.
    pub name: Option<String>,
    pub version: Option<String>,
    /// Where it was downloaded from.
    pub url: String,
    /// Format of the download.
    pub format: Format,
    /// Bytes downloaded.
    pub download_size: u64,
    /// Size of the stored disk (or file).
    pub disk_size: u64,
    /// Whether it is a file stored as downloaded (kernel, initrd) rather than a disk.
    #[serde(default)]
    pub file: bool,
}

/// An entry in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: Digest,
    pub path: PathBuf,
    /// Missing for entries written by older hvbox versions.
    pub meta: Option<EntryMeta>,
    /// Bytes the entry takes on disk (holes excluded).
    pub allocated: u64,
}

/// One artifact to fetch, and what to remember about it.
#[derive(Debug, Clone)]
pub struct FetchRequest<'a> {
    pub artifact: &'a Artifact,
    pub kind: Kind,
    /// For progress and messages, e.g. "debian-12 disk".
    pub label: &'a str,
    pub name: Option<&'a str>,
    pub version: Option<&'a str>,
}

/// The cached files of a box.
#[derive(Debug, Clone)]
pub struct FetchedBox {
    pub disk: Entry,
    pub kernel: Option<Entry>,
    pub initrd: Option<Entry>,
}

impl Store {
    /// Open the per-user cache: `$HVBOX_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/hvbox`, else `$HOME/.cache/hvbox`.
    pub fn open_default() -> Result<Store, Error> {
        if let Some(dir) = env_path("HVBOX_CACHE_DIR") {
            return Ok(Store::open(dir));
        }
        // Per the XDG spec, relative values are invalid and must be ignored.
        if let Some(dir) = env_path("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
            return Ok(Store::open(dir.join("hvbox")));
        }
        if let Some(home) = env_path("HOME") {
            return Ok(Store::open(home.join(".cache").join("hvbox")));
        }
        Err(Error::NoCacheDir)
    }

    /// Use `root` as the cache directory; it is created on first fetch. Network
    /// settings come from the environment (see [`FetchOptions::from_env`]).
    pub fn open(root: PathBuf) -> Store {
        Store {
            root,
            options: FetchOptions::from_env(),
        }
    }

    /// The same cache with other timeouts and retries.
    pub fn with_options(mut self, options: FetchOptions) -> Store {
        self.options = options;
        self
    }

    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob for `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm.name())
            .join(&digest.hex)
    }

    /// A folder for what hvbox derives from the blob for `digest` (e.g. a disk's boot
    /// files), removed with the blob.
    pub fn derived_dir(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("derived")
            .join(digest.algorithm.name())
            .join(&digest.hex)
    }

    fn meta_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("meta")
            .join(digest.algorithm.name())
            .join(format!("{}.json", digest.hex))
    }

    /// Whether a verified blob for `digest` is cached.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The cached disk for the artifact, downloading, verifying and converting it
    /// when absent. No network access when cached.
    pub fn fetch(
        &self,
        artifact: &Artifact,
        label: &str,
        progress: Progress,
    ) -> Result<PathBuf, Error> {
        let request = FetchRequest {
            artifact,
            kind: Kind::Disk,
            label,
            name: None,
            version: None,
        };
        self.fetch_entry(&request, progress).map(|e| e.path)
    }

    /// Fetch one artifact (see [`Store::fetch`]).
    ///
    /// Blobs are verified once, before they enter the cache; a cached blob is
    /// trusted without rehashing (hashing a multi-GiB disk on every VM start
    /// would be slow).
    pub fn fetch_entry(&self, request: &FetchRequest, progress: Progress) -> Result<Entry, Error> {
        let digest = &request.artifact.digest;
        // The hex becomes a file name; refuse hand-built values like "../x".
        digest.validate()?;
        let blob = self.blob_path(digest);
        if blob.is_file() {
            return Ok(self.entry(digest));
        }
        let tmp_dir = self.root.join("tmp");
        let locks_dir = self.root.join("locks");
        let blobs_dir = blob.parent().expect("blob has a folder").to_path_buf();
        let meta_dir = self
            .meta_path(digest)
            .parent()
            .expect("meta has a folder")
            .to_path_buf();
        for dir in [&blobs_dir, &meta_dir, &tmp_dir, &locks_dir] {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating directory", e))?;
        }

        let _lock = EntryLock::acquire(&lock_path(&locks_dir, &digest.hex), || {
            if progress != Progress::Quiet {
                eprintln!(
                    "waiting for another hvbox process to finish downloading {}",
                    request.label
                );
            }
        })?;
        // Whoever held the lock before us may have just stored the blob.
        if blob.is_file() {
            return Ok(self.entry(digest));
        }

        remove_stale_parts(&tmp_dir, &digest.hex);
        let job = Job {
            artifact: request.artifact,
            kind: request.kind,
            label: request.label,
            spool_path: tmp_dir.join(format!("{}.download", digest.hex)),
            scratch: ScratchDir {
                dir: tmp_dir.clone(),
                prefix: digest.hex.clone(),
            },
            options: &self.options,
        };
        let mut reporter = Reporter::new(progress, request.label);
        reporter.note(&format!(
            "downloading {} from {}",
            request.label, request.artifact.url
        ));
        let done = pipeline::run(&job, &mut reporter)?;
        reporter.finish();
        let meta = EntryMeta {
            name: request.name.map(str::to_string),
            version: request.version.map(str::to_string),
            url: request.artifact.url.clone(),
            format: done.format,
            download_size: done.download_size,
            disk_size: done.disk_size,
            file: request.kind == Kind::File,
        };
        // Meta first: a blob without meta is listed with less detail, meta without
        // a blob is ignored.
        write_atomically(
            &self.meta_path(digest),
            &serde_json::to_vec_pretty(&meta).expect("meta serialises"),
        )?;
        fs::rename(&done.path, &blob).map_err(|e| Error::io(&blob, "moving download into", e))?;
        let _ = fs::remove_file(tmp_dir.join(format!("{}.download.json", digest.hex)));
        let _ = fs::remove_file(tmp_dir.join(format!("{}.download", digest.hex)));
        // Make the rename itself durable.
        sync_dir(&blobs_dir)?;
        Ok(self.entry(digest))
    }

    /// Fetch the artifacts of a box, in parallel.
    pub fn fetch_box(&self, b: &BoxArtifacts, progress: Progress) -> Result<FetchedBox, Error> {
        let labels = [
            format!("{} disk", b.name),
            format!("{} kernel", b.name),
            format!("{} initrd", b.name),
        ];
        let request = |artifact, kind, label| FetchRequest {
            artifact,
            kind,
            label,
            name: Some(&b.name),
            version: b.version.as_deref(),
        };
        std::thread::scope(|s| {
            let kernel = b.kernel.as_ref().map(|k| {
                let r = request(k, Kind::File, &labels[1]);
                s.spawn(move || self.fetch_entry(&r, progress))
            });
            let initrd = b.initrd.as_ref().map(|i| {
                let r = request(i, Kind::File, &labels[2]);
                s.spawn(move || self.fetch_entry(&r, progress))
            });
            let disk = self.fetch_entry(&request(&b.disk, Kind::Disk, &labels[0]), progress);
            let join = |h: Option<std::thread::ScopedJoinHandle<'_, Result<Entry, Error>>>| {
                h.map(|h| h.join().expect("fetch thread panicked"))
                    .transpose()
            };
            let kernel = join(kernel);
            let initrd = join(initrd);
            Ok(FetchedBox {
                disk: disk?,
                kernel: kernel?,
                initrd: initrd?,
            })
        })
    }

    fn entry(&self, digest: &Digest) -> Entry {
        let path = self.blob_path(digest);
        let meta = fs::read(self.meta_path(digest))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Entry {
            digest: digest.clone(),
            allocated: allocated(&path),
            path,
            meta,
        }
    }

    /// Every entry in the cache, sorted by name, version and digest.
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        let mut out = Vec::new();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(algorithm.name());
            let Ok(read) = fs::read_dir(&dir) else {
                continue;
            };
            for e in read.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if let Ok(digest) = Digest::new(algorithm, &name) {
                    out.push(self.entry(&digest));
                }
            }
        }
        out.sort_by(|a, b| {
            let key = |e: &Entry| {
                (
                    e.meta.as_ref().and_then(|m| m.name.clone()),
                    e.meta.as_ref().and_then(|m| m.version.clone()),
                )
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| a.digest.to_string().cmp(&b.digest.to_string()))
        });
        Ok(out)
    }

    /// Remove an entry and what was derived from it. `Ok(false)` when it was not
    /// cached; [`Error::Busy`] while another process is downloading it.
    pub fn remove(&self, digest: &Digest) -> Result<bool, Error> {
        digest.validate()?;
        let locks_dir = self.root.join("locks");
        fs::create_dir_all(&locks_dir)
            .map_err(|e| Error::io(&locks_dir, "creating directory", e))?;
        let Some(_lock) = EntryLock::try_acquire(&lock_path(&locks_dir, &digest.hex))? else {
            return Err(Error::Busy(digest.to_string()));
        };
        let blob = self.blob_path(digest);
        let existed = blob.exists();
        for path in [blob, self.meta_path(digest)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, "removing", e)),
            }
        }
        let derived = self.derived_dir(digest);
        match fs::remove_dir_all(&derived) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&derived, "removing", e)),
        }
        Ok(existed)
    }

    /// Delete partial downloads nobody is working on; returns the bytes freed.
    pub fn remove_partials(&self) -> Result<u64, Error> {
        let tmp = self.root.join("tmp");
        let locks_dir = self.root.join("locks");
        let Ok(read) = fs::read_dir(&tmp) else {
            return Ok(0);
        };
        let mut freed = 0;
        for e in read.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.split('.').next().unwrap_or_default().to_string();
            if hex.is_empty() {
                continue;
            }
            fs::create_dir_all(&locks_dir)
                .map_err(|e| Error::io(&locks_dir, "creating directory", e))?;
            if let Some(_lock) = EntryLock::try_acquire(&lock_path(&locks_dir, &hex))? {
                freed += allocated(&e.path());
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(freed)
    }

    /// Remember that the project in `root` uses this cache (for "used by").
    pub fn register_project(&self, root: &Path) -> Result<(), Error> {
        let dir = self.root.join("projects");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "creating directory", e))?;
        let root = std::path::absolute(root).map_err(|e| Error::io(root, "resolving", e))?;
        let record = ProjectRecord { root: root.clone() };
        let path = dir.join(format!("{}.json", project_key(&root)));
        write_atomically(
            &path,
            &serde_json::to_vec_pretty(&record).expect("record serialises"),
        )
    }

    /// Project folders that used the cache and still exist; records of removed
    /// folders are forgotten.
    pub fn projects(&self) -> Vec<PathBuf> {
        self.projects_pruning().present
    }

    /// Every project record, sorted by what became of its folder; records of
    /// folders that are gone are forgotten on the way.
    pub fn projects_pruning(&self) -> ProjectFolders {
        let dir = self.root.join("projects");
        let mut found = ProjectFolders::default();
        let Ok(read) = fs::read_dir(&dir) else {
            return found;
        };
        for e in read.flatten() {
            // A record being written (`.write*.tmp`) is not one yet.
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let record: Option<ProjectRecord> = fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match record.map(|r| (folder_presence(&r.root), r.root)) {
                Some((Presence::Here, root)) => found.present.push(root),
                Some((Presence::Unreachable, root)) => found.unreachable.push(root),
                other => {
                    // A record half-written by a killed process names nothing.
                    if fs::remove_file(e.path()).is_ok() {
                        found.gone.extend(other.map(|(_, root)| root));
                    }
                }
            }
        }
        found.present.sort();
        found.gone.sort();
        found.unreachable.sort();
        found
    }

    /// Forget the project in `root` (it no longer has a spec or machines).
    pub fn forget_project(&self, root: &Path) {
        let path = self
            .root
            .join("projects")
            .join(format!("{}.json", project_key(root)));
        let _ = fs::remove_file(path);
    }
}

/// The project folders the cache knows, by what became of them.
#[derive(Debug, Default)]
pub struct ProjectFolders {
    pub present: Vec<PathBuf>,
    /// Folders whose records were just forgotten: they were deleted.
    pub gone: Vec<PathBuf>,
    /// Folders that cannot be seen now (on a drive that is not mounted, behind a
    /// folder this user cannot read): their records are kept.
    pub unreachable: Vec<PathBuf>,
}

enum Presence {
    Here,
    Gone,
    Unreachable,
}

/// A folder counts as deleted only when its parent is there without it: a missing
/// parent is more often an unmounted drive or a renamed tree than a deletion.
fn folder_presence(root: &Path) -> Presence {
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => Presence::Here,
        Ok(_) => Presence::Gone,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match root.parent().map(fs::metadata) {
                Some(Ok(parent)) if parent.is_dir() => Presence::Gone,
                _ => Presence::Unreachable,
            }
        }
        Err(_) => Presence::Unreachable,
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProjectRecord {
    root: PathBuf,
}

fn project_key(root: &Path) -> String {
    let mut h = crate::Hasher::new(Algorithm::Sha256);
    h.update(root.as_os_str().as_encoded_bytes());
    h.finish().hex[..16].to_string()
}

/// Bytes a file takes on disk.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Delete scratch files of this entry left by killed processes. Safe only under the
/// entry lock: every live conversion of `hex` holds it, so any `<hex>.*.part` seen
/// now is abandoned. The resumable `<hex>.download` spool is kept.
fn remove_stale_parts(tmp_dir: &Path, hex: &str) {
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return;
    };
    let prefix = format!("{hex}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".part") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "syncing directory", e))
}

/// Write a small file by temp file and rename, so readers never see half of it.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("path has a folder");
    let tmp = dir.join(crate::spool::unique_name(".write", "tmp"));
    fs::write(&tmp, data).map_err(|e| Error::io(&tmp, "writing", e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, "writing", e)
    })
}
