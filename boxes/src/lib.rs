//! Box images for hvbox: the catalog of known boxes, verified and resumable
//! downloads, conversion of every common image format to sparse raw, and a
//! content-addressed cache safe to share between processes.
//!
//! The API is blocking on purpose: callers (the CLI) are synchronous, so each
//! network operation spins up a small tokio runtime internally.

pub mod apt_sources;
pub mod boot_profile;
mod bounds;
pub mod build;
pub mod build_user;
pub mod catalog;
mod digest;
mod error;
mod fetch;
pub mod formats;
#[doc(hidden)]
pub mod fuzzing;
mod lock;
mod pipeline;
mod progress;
mod proxy_text;
mod sparse_writer;
mod spool;
mod store;

pub use bounds::DEFAULT_MAX_DISK_SIZE;
pub use digest::{Algorithm, Digest, Hasher};
pub use error::Error;
pub use fetch::{check_url, fetch_text, FetchOptions};
pub use formats::Format;
pub use pipeline::Kind;
pub use progress::{format_bytes, Progress};
pub use proxy_text::masked_proxy;
pub use store::{Entry, EntryMeta, FetchRequest, FetchedBox, Store};

/// A remote (or `file://`) artifact and the digest its bytes must have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    pub url: String,
    pub digest: Digest,
    /// The format the download must be; `None`: whatever its bytes say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The size the download must have (recorded in lock files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The size of the disk it converts to (recorded in lock files): the cap on
    /// what converting it may write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
}

impl Artifact {
    pub fn new(url: impl Into<String>, digest: Digest) -> Artifact {
        Artifact {
            url: url.into(),
            digest,
            format: None,
            size: None,
            disk_size: None,
        }
    }
}

/// Everything needed to boot a box: a disk image and, for direct kernel
/// boot, optionally a kernel and initrd.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoxArtifacts {
    pub name: String,
    /// The catalog version the artifacts are, when the catalog knows one.
    #[serde(default)]
    pub version: Option<String>,
    pub disk: Artifact,
    pub kernel: Option<Artifact>,
    pub initrd: Option<Artifact>,
}
