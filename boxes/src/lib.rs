//! Box images for hvbox: digests, verified downloads, a content-addressed
//! cache and the catalog of known boxes.
//!
//! The API is blocking on purpose: callers (the CLI) are synchronous, so each
//! network operation spins up a small tokio runtime internally.

pub mod apt_sources;
pub mod build;
pub mod catalog;
mod digest;
mod download;
mod error;
mod lock;
mod progress;
mod sparse_writer;
mod store;

pub use digest::{Algorithm, Digest, Hasher};
pub use download::fetch_text;
pub use error::Error;
pub use progress::Progress;
pub use store::Store;

/// A remote (or `file://`) artifact and the digest it must have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    pub url: String,
    pub digest: Digest,
}

/// Everything needed to boot a box: a disk image and, for direct kernel
/// boot, optionally a kernel and initrd.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoxArtifacts {
    pub name: String,
    pub disk: Artifact,
    pub kernel: Option<Artifact>,
    pub initrd: Option<Artifact>,
}
