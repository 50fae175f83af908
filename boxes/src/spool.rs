//! A file that one thread appends to while others read it, blocking until the bytes
//! they need have arrived.
//!
//! The download thread writes every byte it receives (after hashing it) to the spool,
//! and the converter reads the spool at its own pace: sequentially through [`Read`]
//! for compressed and tar streams, or at any offset for qcow2, whose tables may point
//! backwards at bytes that went by before the converter knew what they were. The
//! spool sits in the page cache, so reading it back costs a memory copy; in exchange
//! nothing is buffered in the process (peak memory stays flat whatever the image
//! size), the download never waits for the converter, and an interrupted download
//! keeps its bytes for the next attempt to resume from.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::formats::FormatError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// More bytes may come.
    Open,
    /// Every byte is there.
    Done,
    /// The writer gave up (download failed); readers stop.
    Failed,
}

#[derive(Debug)]
struct State {
    available: u64,
    end: End,
    /// A reader gave up (bad image): the writer can stop downloading.
    cancelled: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

/// The writing side. Dropping it without [`Spool::finish`] fails pending reads.
#[derive(Debug)]
pub(crate) struct Spool {
    file: Arc<File>,
    path: PathBuf,
    shared: Arc<Shared>,
    /// Removed on drop (scratch spools); the download spool is kept for resuming.
    temporary: bool,
}

impl Spool {
    /// Open (creating if needed) the spool at `path`, keeping the first `keep` bytes
    /// already in it (a resumed download) and dropping anything after them.
    pub(crate) fn open(path: &Path, keep: u64, temporary: bool) -> io::Result<Spool> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.set_len(keep)?;
        Ok(Spool {
            file: Arc::new(file),
            path: path.to_path_buf(),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    available: keep,
                    end: End::Open,
                    cancelled: false,
                }),
                cond: Condvar::new(),
            }),
            temporary,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn len(&self) -> u64 {
        self.shared.state.lock().unwrap().available
    }

    pub(crate) fn reader(&self) -> SpoolReader {
        SpoolReader {
            file: Arc::clone(&self.file),
            shared: Arc::clone(&self.shared),
            pos: 0,
        }
    }

    /// Append bytes and wake readers.
    pub(crate) fn append(&self, data: &[u8]) -> io::Result<()> {
        let at = self.len();
        self.file.write_all_at(data, at)?;
        let mut state = self.shared.state.lock().unwrap();
        state.available = at + data.len() as u64;
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Every byte has been appended.
    pub(crate) fn finish(&self) {
        self.set_end(End::Done);
    }

    /// The writer failed; readers waiting for more get [`FormatError::SourceFailed`].
    pub(crate) fn abort(&self) {
        self.set_end(End::Failed);
    }

    fn set_end(&self, end: End) {
        let mut state = self.shared.state.lock().unwrap();
        if state.end == End::Open {
            state.end = end;
        }
        self.shared.cond.notify_all();
    }

    /// Whether a reader gave up, so writing more is pointless.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.shared.state.lock().unwrap().cancelled
    }

    /// Fill the spool from a stream (a decompressor), then finish it; more than
    /// `limit` bytes is an error.
    pub(crate) fn fill_from(
        &self,
        mut reader: Box<dyn Read + Send + '_>,
        limit: u64,
        bounds: &crate::bounds::Bounds,
    ) -> Result<(), FormatError> {
        let mut buf = vec![0u8; 1 << 20];
        let result = loop {
            if self.is_cancelled() {
                break Ok(());
            }
            if let Err(e) = bounds.check_stop() {
                break Err(e);
            }
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) if self.len() + n as u64 > limit => {
                    break Err(FormatError::OverCap {
                        what: "the decompressed qcow2 image".into(),
                        cap: limit,
                        why: "twice the largest disk it may hold",
                    });
                }
                Ok(n) => {
                    if let Err(e) = self.append(&buf[..n]) {
                        break Err(FormatError::Write(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(crate::formats::read_error("decompressed", e)),
            }
        };
        match &result {
            Ok(()) => self.finish(),
            Err(_) => self.abort(),
        }
        result
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // A writer that goes away without finishing has failed.
        self.set_end(End::Failed);
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The reading side: blocking reads of what the writer has appended so far.
#[derive(Debug)]
pub(crate) struct SpoolReader {
    file: Arc<File>,
    shared: Arc<Shared>,
    /// Position for [`Read`].
    pos: u64,
}

impl SpoolReader {
    /// Block until at least `end` bytes are there or the spool is complete; returns
    /// how many bytes are available (less than `end` only at the end of the data).
    pub(crate) fn wait_for(&self, end: u64) -> Result<u64, FormatError> {
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if state.available >= end {
                return Ok(state.available);
            }
            match state.end {
                End::Done => return Ok(state.available),
                End::Failed => return Err(FormatError::SourceFailed),
                End::Open => state = self.shared.cond.wait(state).unwrap(),
            }
        }
    }

    /// Bytes available now, and whether that is all of them.
    pub(crate) fn available(&self) -> (u64, bool) {
        let state = self.shared.state.lock().unwrap();
        (state.available, state.end == End::Done)
    }

    /// Read `buf.len()` bytes at `offset`, which the caller has waited for.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), FormatError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(FormatError::ReadBack)
    }

    /// Another reader of the same spool, at position 0.
    pub(crate) fn clone_handle(&self) -> SpoolReader {
        SpoolReader {
            file: Arc::clone(&self.file),
            shared: Arc::clone(&self.shared),
            pos: 0,
        }
    }

    /// Tell the writer to stop: this reader has given up.
    pub(crate) fn cancel(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.cancelled = true;
        self.shared.cond.notify_all();
    }
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let available = match self.wait_for(self.pos + 1) {
            Ok(a) => a,
            Err(_) => return Err(source_failure()),
        };
        if available <= self.pos {
            return Ok(0);
        }
        let n = ((available - self.pos) as usize).min(buf.len());
        let n = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct SourceFailed;

impl std::fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the download stopped")
    }
}

impl std::error::Error for SourceFailed {}

fn source_failure() -> io::Error {
    io::Error::other(SourceFailed)
}

/// Whether a read error means "the download failed" rather than "bad data"
/// (decoders may wrap the error they got from the spool).
pub(crate) fn is_source_failure(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(err) = cur {
        if err.is::<SourceFailed>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                cur = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        cur = err.source();
    }
    false
}

/// Where a conversion may put scratch files; each is removed when dropped.
#[derive(Debug, Clone)]
pub(crate) struct ScratchDir {
    pub(crate) dir: PathBuf,
    pub(crate) prefix: String,
}

impl ScratchDir {
    /// A new scratch spool, named so that a killed process's leftovers are swept up
    /// as stale partial files of this entry.
    pub(crate) fn spool(&self, what: &str) -> Result<Spool, FormatError> {
        let path = self.dir.join(unique_name(&self.prefix, what));
        Spool::open(&path, 0, true).map_err(FormatError::Write)
    }
}

/// `<prefix>.<pid>.<counter>.<nanos>.<what>.part`: unique across processes, threads
/// and pid reuse.
pub(crate) fn unique_name(prefix: &str, what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}.{}.{}.{nanos}.{what}.part",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s"), 0, true).unwrap();
        let mut reader = spool.reader();
        let handle = std::thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            all
        });
        for i in 0..10u8 {
            spool.append(&[i; 1000]).unwrap();
        }
        spool.finish();
        let all = handle.join().unwrap();
        assert_eq!(all.len(), 10_000);
        assert_eq!(all[9_999], 9);
    }

    #[test]
    fn an_aborted_writer_fails_readers() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("s"), 0, true).unwrap();
        let reader = spool.reader();
        spool.append(b"abc").unwrap();
        assert_eq!(reader.wait_for(2).unwrap(), 3);
        spool.abort();
        assert!(matches!(
            reader.wait_for(10),
            Err(FormatError::SourceFailed)
        ));
        let mut r = spool.reader();
        let mut buf = [0u8; 10];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert!(is_source_failure(&r.read(&mut buf).unwrap_err()));
    }

    #[test]
    fn resumed_spools_keep_their_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, b"hello world").unwrap();
        let spool = Spool::open(&path, 5, false).unwrap();
        spool.append(b"!").unwrap();
        spool.finish();
        drop(spool);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello!");
    }
}
