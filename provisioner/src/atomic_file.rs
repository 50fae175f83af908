//! Write-then-rename files: readers of the destination see either the old
//! file or the complete new one, and a failure leaves no partial file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// A temporary file next to its destination. Dropped without
/// [`TempFile::commit`], it deletes itself.
pub(crate) struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Create a fresh temp file in the directory of `dest` (same filesystem,
    /// so the final rename is atomic).
    pub(crate) fn new_for(dest: &Path) -> Result<Self, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = parent_dir(dest);
        let name = dest
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        // pid + counter keeps concurrent writers (threads or processes)
        // apart; create_new makes a collision an error instead of a clobber.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file: Some(file),
        })
    }

    pub(crate) fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file present until commit")
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// fsync the data, rename over `dest` and fsync the directory so the
    /// rename itself survives a crash.
    pub(crate) fn commit(mut self, dest: &Path) -> Result<(), Error> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Write { path, source }
        };
        let file = self.file.take().expect("file present until commit");
        file.sync_all().map_err(write_err(&self.path))?;
        drop(file);
        std::fs::rename(&self.path, dest).map_err(write_err(dest))?;
        // The temp name is gone now; nothing left for Drop to clean up.
        self.path = PathBuf::new();
        sync_dir(&parent_dir(dest)).map_err(write_err(dest))
    }
}

impl TempFile {
    /// Rename over `dest` without syncing: for files made afresh from their source
    /// each time they are needed (boot files, extracted from the disk at every boot),
    /// where a crash loses nothing the next extraction does not write again.
    /// Readers still see the old file or the complete new one.
    pub(crate) fn commit_unsynced(mut self, dest: &Path) -> Result<(), Error> {
        drop(self.file.take());
        std::fs::rename(&self.path, dest).map_err(|source| Error::Write {
            path: dest.to_path_buf(),
            source,
        })?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
