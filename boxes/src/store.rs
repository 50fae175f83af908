//! Content-addressed cache of downloaded artifacts.
//!
//! Layout under the root:
//! - `blobs/<algorithm>/<hex>`: verified content, named by its digest
//! - `tmp/`: in-flight downloads (same filesystem, so rename is atomic)
//! - `locks/<hex>.lock`: per-entry flock serialising concurrent fetches

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::download::download_to_file;
use crate::lock::{lock_path, EntryLock};
use crate::progress::Reporter;
use crate::{Artifact, Digest, Error, Progress};

/// A cache directory of verified artifacts.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
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

    /// Use `root` as the cache directory; it is created on first fetch.
    pub fn open(root: PathBuf) -> Store {
        Store { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob for `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir(digest).join(&digest.hex)
    }

    /// Whether a verified blob for `digest` is cached.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Return the cached, verified file for the artifact, downloading it when
    /// absent. No network access when cached.
    ///
    /// Blobs are verified once, before they enter the cache; a cached blob is
    /// trusted without rehashing (hashing a multi-GiB disk on every VM start
    /// would be slow).
    pub fn fetch(
        &self,
        artifact: &Artifact,
        label: &str,
        progress: Progress,
    ) -> Result<PathBuf, Error> {
        let digest = &artifact.digest;
        // The hex becomes a file name; refuse hand-built values like "../x".
        digest.validate()?;
        let blob = self.blob_path(digest);
        if blob.is_file() {
            return Ok(blob);
        }

        let blobs_dir = self.blobs_dir(digest);
        let tmp_dir = self.root.join("tmp");
        let locks_dir = self.root.join("locks");
        for dir in [&blobs_dir, &tmp_dir, &locks_dir] {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, "creating directory", e))?;
        }

        let _lock = EntryLock::acquire(&lock_path(&locks_dir, &digest.hex), || {
            if progress != Progress::Quiet {
                eprintln!("waiting for another hvbox process to finish downloading {label}");
            }
        })?;
        // Whoever held the lock before us may have just stored the blob.
        if blob.is_file() {
            return Ok(blob);
        }

        remove_stale_parts(&tmp_dir, &digest.hex);
        let tmp = TempFile::create(&tmp_dir, &digest.hex)?;
        let mut reporter = Reporter::new(progress, label);
        reporter.note(&format!("downloading {label} from {}", artifact.url));
        let actual = download_to_file(
            &artifact.url,
            digest.algorithm,
            &tmp.file,
            &tmp.path,
            &mut reporter,
        )?;
        reporter.finish();
        tmp.file
            .sync_all()
            .map_err(|e| Error::io(&tmp.path, "syncing", e))?;
        if actual != *digest {
            return Err(Error::DigestMismatch {
                url: artifact.url.clone(),
                expected: digest.clone(),
                actual,
            });
        }
        tmp.persist(&blob)?;
        // Make the rename itself durable.
        sync_dir(&blobs_dir)?;
        Ok(blob)
    }

    fn blobs_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join(digest.algorithm.name())
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Delete partial downloads of this entry left by killed processes. Safe only
/// under the entry lock: every live download of `hex` holds it, so any
/// `<hex>.*.part` seen now is abandoned.
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

/// A download in progress, removed on drop unless persisted, so every
/// failure path (HTTP error, mismatch, I/O error) leaves the cache unchanged.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    fn create(dir: &Path, hex: &str) -> Result<TempFile, Error> {
        // Unique across processes (pid), threads (counter) and pid reuse
        // (time); create_new guarantees we never share a file regardless.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "{hex}.{}.{}.{nanos}.part",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "creating temporary file", e))?;
        Ok(TempFile {
            path,
            file,
            persisted: false,
        })
    }

    fn persist(mut self, dest: &Path) -> Result<(), Error> {
        fs::rename(&self.path, dest).map_err(|e| Error::io(dest, "moving download into", e))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}
