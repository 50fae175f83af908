//! One pass from the network to a verified, converted cache entry.
//!
//! The download thread hashes each chunk and appends it to the entry's spool
//! (`tmp/<hex>.download`); a converter thread reads the spool as it grows and writes
//! the sparse raw disk (see `spool.rs` and `formats/`). So hashing and converting run
//! side by side, and the slower of the two sets the pace. A raw image needs no
//! converter: it is written sparse into the spool, which then becomes the entry.
//!
//! The digest is compared as soon as the last byte is in, before waiting for the
//! converter: a mismatch stops it at once (a few KiB of sparse tarball would
//! otherwise expand to its whole declared size first), and nothing reaches the cache.
//! What a converter may write is bounded (see `bounds.rs`).
//!
//! The spool outlives a failed pass when the network failed it: the next attempt
//! re-hashes what is there, feeds it to a fresh converter (no network), and asks the
//! server for the rest only. A pass whose digest does not match after resuming is
//! retried once from the first byte, in case the kept part was stale.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::PathBuf;
use std::thread::{Scope, ScopedJoinHandle};

use crate::bounds::{Bounds, CapSource};
use crate::fetch::{transfer, FetchOptions, Sink, Started, Validator};
use crate::formats::{self, check_declared, sniff, Format, FormatError, Sniffed, SNIFF_LEN};
use crate::progress::Reporter;
use crate::sparse_writer::SparseWriter;
use crate::spool::{ScratchDir, Spool};
use crate::{Artifact, Error, Hasher};

/// What becomes of the downloaded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A disk image: converted to sparse raw, whatever its format.
    #[default]
    Disk,
    /// Any other file (kernel, initrd): stored as it is.
    File,
}

pub(crate) struct Job<'a> {
    pub artifact: &'a Artifact,
    pub kind: Kind,
    pub label: &'a str,
    pub spool_path: PathBuf,
    pub scratch: ScratchDir,
    pub options: &'a FetchOptions,
}

/// A finished, verified pass.
pub(crate) struct Done {
    /// The file holding the disk (or file): moved into the cache by the caller.
    pub path: PathBuf,
    pub format: Format,
    pub download_size: u64,
    pub disk_size: u64,
}

/// Saved beside the spool so a later attempt can resume.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Resume {
    url: String,
    validator: Validator,
    total: Option<u64>,
}

impl Job<'_> {
    fn sidecar(&self) -> PathBuf {
        let mut p = self.spool_path.clone().into_os_string();
        p.push(".json");
        PathBuf::from(p)
    }

    /// The cap on the disk: the size the lock file recorded, else hvbox's limit.
    fn bounds(&self) -> Bounds {
        let (cap, source) = match self.artifact.disk_size {
            Some(size) if self.kind == Kind::Disk => (size, CapSource::LockFile),
            _ => (self.options.max_disk_size, CapSource::Global),
        };
        Bounds::new(cap, source, &self.scratch.dir)
    }

    fn discard_spool(&self) {
        let _ = fs::remove_file(&self.spool_path);
        let _ = fs::remove_file(self.sidecar());
    }

    /// Bytes of an earlier attempt to keep, and the server's validator for them.
    fn resumable(&self) -> (u64, Option<Validator>) {
        let Ok(meta) = fs::metadata(&self.spool_path) else {
            return (0, None);
        };
        let saved: Option<Resume> = fs::read(self.sidecar())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match saved {
            // The same bytes (the digest is the entry's name) from elsewhere resume
            // fine; only the validator is specific to the URL.
            Some(r) => {
                let validator = (r.url == self.artifact.url).then_some(r.validator);
                (meta.len(), validator)
            }
            None => (0, None),
        }
    }
}

/// Download, verify and convert `job.artifact`, resuming an earlier attempt if its
/// spool is there.
pub(crate) fn run(job: &Job, reporter: &mut Reporter) -> Result<Done, Error> {
    let (keep, validator) = job.resumable();
    if keep > 0 {
        reporter.note(&format!(
            "resuming {} after {} already downloaded",
            job.label,
            crate::progress::format_bytes(keep)
        ));
    }
    match pass(job, keep, validator.as_ref(), reporter) {
        Err(Error::DigestMismatch { .. }) if keep > 0 => {
            reporter.note(&format!(
                "the resumed download of {} did not verify; downloading it again from the start",
                job.label
            ));
            pass(job, 0, None, reporter)
        }
        other => other,
    }
}

fn pass(
    job: &Job,
    keep: u64,
    validator: Option<&Validator>,
    reporter: &mut Reporter,
) -> Result<Done, Error> {
    let io = |action, e| Error::io(&job.spool_path, action, e);
    let spool = Spool::open(&job.spool_path, keep, false).map_err(|e| io("opening", e))?;
    let mut hasher = Hasher::new(job.artifact.digest.algorithm);
    let mut head = Vec::with_capacity(SNIFF_LEN);
    if keep > 0 {
        let mut file = File::open(&job.spool_path).map_err(|e| io("opening", e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| io("reading", e))?;
            if n == 0 {
                break;
            }
            let want = SNIFF_LEN.saturating_sub(head.len()).min(n);
            head.extend_from_slice(&buf[..want]);
            hasher.update(&buf[..n]);
        }
    }
    let out = OutputFile::create(&job.scratch)?;
    let bounds = job.bounds();
    let result = std::thread::scope(|scope| {
        let mut sink = PassSink {
            job,
            spool: &spool,
            out: &out,
            bounds: &bounds,
            scope,
            hasher,
            head,
            mode: Mode::Undecided,
            received: keep,
        };
        let transferred = (|| {
            if sink.head.len() >= SNIFF_LEN {
                sink.decide()?;
            }
            let total = transfer(
                &job.artifact.url,
                keep,
                validator,
                job.options,
                reporter,
                &mut sink,
            )?;
            if matches!(sink.mode, Mode::Undecided) {
                sink.decide()?;
            }
            Ok(total)
        })();
        sink.finish(transferred, reporter)
    });
    match result {
        Ok(done) => {
            if done.path != job.spool_path {
                job.discard_spool();
            }
            out.keep_if(done.path == out.path);
            Ok(done)
        }
        Err((e, keep_spool)) => {
            drop(spool);
            if !keep_spool {
                job.discard_spool();
            }
            Err(e)
        }
    }
}

enum Mode<'scope> {
    /// Fewer than [`SNIFF_LEN`] bytes seen: the format is not known yet.
    Undecided,
    /// Stored as downloaded, sparse, in the spool itself.
    Raw(SparseWriter<'scope>),
    /// A converter thread reads the spool.
    Convert(ScopedJoinHandle<'scope, Result<(Format, u64), FormatError>>),
}

struct PassSink<'scope, 'env> {
    job: &'env Job<'env>,
    spool: &'env Spool,
    out: &'env OutputFile,
    bounds: &'env Bounds,
    scope: &'scope Scope<'scope, 'env>,
    hasher: Hasher,
    head: Vec<u8>,
    mode: Mode<'scope>,
    received: u64,
}

impl<'scope, 'env> PassSink<'scope, 'env>
where
    'env: 'scope,
{
    /// Choose raw or converted from the first bytes.
    fn decide(&mut self) -> Result<(), Error> {
        let sniffed = sniff(&self.head);
        if sniffed == Sniffed::Html {
            return Err(self.format_error(FormatError::Html));
        }
        let raw =
            self.job.kind == Kind::File || sniffed == Sniffed::Container(formats::Container::Raw);
        if raw {
            if self.job.kind == Kind::Disk {
                check_declared(self.job.artifact.format, Format::RAW, &self.head)
                    .map_err(|e| self.format_error(e))?;
            }
            let spool: &'env Spool = self.spool;
            self.mode = Mode::Raw(SparseWriter::at(spool.file(), self.received));
        } else {
            let reader = self.spool.reader();
            let out: &'env File = &self.out.file;
            let declared = self.job.artifact.format;
            let scratch = self.job.scratch.clone();
            let bounds: &'env Bounds = self.bounds;
            self.mode = Mode::Convert(
                self.scope
                    .spawn(move || formats::convert(declared, reader, out, &scratch, bounds)),
            );
        }
        Ok(())
    }

    fn format_error(&self, detail: FormatError) -> Error {
        Error::Format {
            label: self.job.label.to_string(),
            url: self.job.artifact.url.clone(),
            detail,
        }
    }

    /// Close the pass: join the converter, verify, and say which file is the result.
    /// An error comes with whether the spool is worth keeping for a resume.
    fn finish(
        self,
        transferred: Result<u64, Error>,
        reporter: &mut Reporter,
    ) -> Result<Done, (Error, bool)> {
        let PassSink {
            job,
            spool,
            out,
            bounds,
            hasher,
            mode,
            received,
            ..
        } = self;
        let format_error = |detail| Error::Format {
            label: job.label.to_string(),
            url: job.artifact.url.clone(),
            detail,
        };
        // Verify before waiting for the converter: bytes that are not the box must
        // not cost a conversion.
        let verified = transferred.and_then(|total| {
            let actual = hasher.finish();
            if actual != job.artifact.digest {
                return Err(Error::DigestMismatch {
                    url: job.artifact.url.clone(),
                    expected: job.artifact.digest.clone(),
                    actual,
                    size: total,
                });
            }
            match job.artifact.size {
                Some(expected) if expected != total => Err(Error::SizeMismatch {
                    url: job.artifact.url.clone(),
                    expected,
                    actual: total,
                }),
                _ => Ok(total),
            }
        });
        let converted = match mode {
            Mode::Undecided => None,
            Mode::Raw(writer) => Some(
                writer
                    .finish()
                    .map(|size| (Format::RAW, size))
                    .map_err(|e| format_error(FormatError::Write(e))),
            ),
            Mode::Convert(handle) => {
                if verified.is_ok() {
                    spool.finish();
                    reporter.phase(&format!("converting {}", job.label));
                } else {
                    bounds.stop();
                    spool.abort();
                }
                let joined = handle.join().expect("converter thread panicked");
                Some(joined.map_err(format_error))
            }
        };
        let total = match verified {
            Ok(total) => total,
            Err(e @ (Error::DigestMismatch { .. } | Error::SizeMismatch { .. })) => {
                return Err((e, false));
            }
            Err(e) => {
                // A converter that failed on its own stopped the download: its error
                // is the one to report, and the spool is useless.
                if let Some(Err(ce)) = converted {
                    if !matches!(
                        ce,
                        Error::Format {
                            detail: FormatError::SourceFailed,
                            ..
                        }
                    ) {
                        return Err((ce, false));
                    }
                }
                let keep = received > 0 && e.is_interruption();
                return Err((e, keep));
            }
        };
        let (format, disk_size) = match converted {
            Some(result) => result.map_err(|e| (e, false))?,
            None => unreachable!("decided before the transfer ended"),
        };
        let path = if format.is_raw() || job.kind == Kind::File {
            spool
                .file()
                .sync_all()
                .map_err(|e| (Error::io(spool.path(), "syncing", e), false))?;
            spool.path().to_path_buf()
        } else {
            out.file
                .sync_all()
                .map_err(|e| (Error::io(&out.path, "syncing", e), false))?;
            out.path.clone()
        };
        Ok(Done {
            path,
            format,
            download_size: total,
            disk_size,
        })
    }
}

impl Sink for PassSink<'_, '_> {
    fn started(&mut self, started: &Started) -> Result<(), Error> {
        if let (Some(expected), Some(total)) = (self.job.artifact.size, started.total) {
            if expected != total {
                return Err(Error::SizeMismatch {
                    url: self.job.artifact.url.clone(),
                    expected,
                    actual: total,
                });
            }
        }
        if let Some(total) = started.total {
            // The download itself lands in the cache's tmp/ first.
            self.bounds
                .check_space(total.saturating_sub(self.received))
                .map_err(|e| self.format_error(e))?;
        }
        let resume = Resume {
            url: self.job.artifact.url.clone(),
            validator: started.validator.clone(),
            total: started.total,
        };
        let json = serde_json::to_vec(&resume).expect("serialising resume data");
        fs::write(self.job.sidecar(), json).map_err(|e| Error::io(self.job.sidecar(), "writing", e))
    }

    fn chunk(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.spool.is_cancelled() {
            return Err(Error::Cancelled);
        }
        self.hasher.update(data);
        self.received += data.len() as u64;
        if self.head.len() < SNIFF_LEN {
            let want = (SNIFF_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..want]);
        }
        let io = |e| Error::io(self.job.spool_path.clone(), "writing", e);
        match &mut self.mode {
            Mode::Raw(writer) => {
                if self.job.kind == Kind::Disk {
                    let received = self.received;
                    self.bounds
                        .check_size(received, || "the raw disk image".into())
                        .map_err(|e| Error::Format {
                            label: self.job.label.to_string(),
                            url: self.job.artifact.url.clone(),
                            detail: e,
                        })?;
                }
                writer.write_all(data).map_err(io)?
            }
            Mode::Undecided | Mode::Convert(_) => self.spool.append(data).map_err(io)?,
        }
        if matches!(self.mode, Mode::Undecided) && self.head.len() >= SNIFF_LEN {
            self.decide()?;
        }
        Ok(())
    }
}

/// The converted disk, removed unless it became the entry.
struct OutputFile {
    path: PathBuf,
    file: File,
    keep: std::cell::Cell<bool>,
}

impl OutputFile {
    fn create(scratch: &ScratchDir) -> Result<OutputFile, Error> {
        let path = scratch
            .dir
            .join(crate::spool::unique_name(&scratch.prefix, "disk"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "creating temporary file", e))?;
        Ok(OutputFile {
            path,
            file,
            keep: std::cell::Cell::new(false),
        })
    }

    fn keep_if(&self, keep: bool) {
        self.keep.set(keep);
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.keep.get() {
            let _ = fs::remove_file(&self.path);
        }
    }
}
