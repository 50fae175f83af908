//! cloud-init NoCloud seed images for hvbox machines.
//!
//! hvbox configures a guest on first boot by attaching an ISO labelled
//! `cidata` that holds `meta-data`, `user-data` and `network-config`;
//! cloud-init's NoCloud datasource picks it up without any network service.

pub mod iso;
mod seed;

pub use seed::{meta_data, network_config, user_data, write_seed, HostKey, SeedConfig};

use std::path::PathBuf;

/// Errors from building or writing a seed image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field would produce a seed cloud-init rejects or misreads.
    #[error("invalid seed config: {0}")]
    InvalidConfig(String),
    /// Writing the image (or its temporary file) failed.
    #[error("failed to write cloud-init seed {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
