//! Error type for the boxes crate. Every variant carries the URL or path it
//! concerns so messages stand on their own in CLI output.

use std::io;
use std::path::PathBuf;

use crate::formats::FormatError;
use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    #[error(
        "cannot determine the cache directory: none of HVBOX_CACHE_DIR, XDG_CACHE_HOME or HOME is set"
    )]
    NoCacheDir,

    #[error("{action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("unsupported URL {url:?}: only http://, https:// and file:// URLs are supported")]
    UnsupportedUrl { url: String },

    #[error("cannot fetch {url}: local file {} does not exist", path.display())]
    LocalFileMissing { url: String, path: PathBuf },

    #[error("downloading {url} failed: HTTP status {status} {reason}")]
    HttpStatus {
        url: String,
        status: u16,
        reason: &'static str,
    },

    #[error("downloading {url} failed: {detail}")]
    Http { url: String, detail: String },

    #[error(
        "downloading {url} failed: no data for {secs:.0} s (set HVBOX_HTTP_TIMEOUT to wait longer)"
    )]
    Timeout { url: String, secs: f64 },

    #[error("downloading {url} failed: the body ended after {received} of {expected} bytes")]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
    },

    #[error("downloading {url} failed: the server sent an HTML page (Content-Type text/html), not a disk image")]
    HtmlPage { url: String },

    #[error("downloading {url} failed: response exceeds the {limit}-byte limit")]
    TooLarge { url: String, limit: u64 },

    #[error("{url} is not valid UTF-8 text")]
    NotText { url: String },

    #[error(
        "digest mismatch for {url}: expected {expected}, got {actual} ({size} bytes received)"
    )]
    DigestMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
        size: u64,
    },

    #[error("{url} is {actual} bytes, but hvbox.lock records {expected} bytes for it")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },

    #[error("cannot use {label} from {url}: {detail}")]
    Format {
        label: String,
        url: String,
        #[source]
        detail: FormatError,
    },

    /// The converter gave up; its own error is reported instead.
    #[error("the download was stopped")]
    Cancelled,

    #[error("{sums_url} has no valid {algorithm} entry for {file}")]
    DigestNotInSums {
        sums_url: String,
        file: String,
        algorithm: crate::Algorithm,
    },

    #[error(
        "invalid box name {name:?}: use letters, digits, '.', '_' and '-', not starting with '.'"
    )]
    InvalidBoxName { name: String },

    #[error("local box {}: {reason}", dir.display())]
    LocalBox { dir: PathBuf, reason: String },

    #[error("unknown box {name:?}; {known}")]
    UnknownBox { name: String, known: String },

    #[error("box {name} has no version {version:?}; known versions: {known}")]
    UnknownVersion {
        name: String,
        version: String,
        known: String,
    },

    #[error("box {name}: the spec pins {pinned}, but {source_name} gives {listed}; update the digest or the version")]
    PinnedDigestDiffers {
        name: String,
        pinned: Digest,
        listed: Digest,
        source_name: String,
    },

    #[error("{}:{line}:{column}: {message}", path.display())]
    CatalogFile {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{}: {message}", path.display())]
    CatalogEntry { path: PathBuf, message: String },

    #[error("cannot find the versions of {name} at {url}: {detail}")]
    NoVersions {
        name: String,
        url: String,
        detail: String,
    },

    #[error("{0} is being downloaded by another hvbox process; try again when it is done")]
    Busy(String),

    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// Whether the network broke off a transfer that may be resumed later (as
    /// opposed to bytes that were wrong).
    pub(crate) fn is_interruption(&self) -> bool {
        match self {
            Error::Http { .. } | Error::Timeout { .. } | Error::Truncated { .. } => true,
            Error::HttpStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }
}

/// Render an error with its whole `source()` chain; reqwest's top-level
/// message alone ("error sending request") hides the actual cause.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let msg = e.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = e.source();
    }
    out
}
