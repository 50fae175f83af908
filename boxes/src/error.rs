//! Error type for the boxes crate. Every variant carries the URL or path it
//! concerns so messages stand on their own in CLI output.

use std::io;
use std::path::PathBuf;

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

    #[error("downloading {url} failed: response exceeds the {limit}-byte limit")]
    TooLarge { url: String, limit: u64 },

    #[error("{url} is not valid UTF-8 text")]
    NotText { url: String },

    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    DigestMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },

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

    #[error(
        "unknown box {name:?}; built-in boxes: {builtin}; local boxes in {}: {local}",
        dir.display()
    )]
    UnknownBox {
        name: String,
        builtin: String,
        local: String,
        dir: PathBuf,
    },

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
