//! cloud-init NoCloud seed images for hvbox machines.
//!
//! hvbox configures a guest on first boot by attaching an ISO labelled
//! `cidata` that holds `meta-data`, `user-data` and `network-config`;
//! cloud-init's NoCloud datasource picks it up without any network service.
//!
//! The user-data is hvbox's own cloud-config (login user, pinned host key,
//! disk growth, readiness beacon), the spec's convenience keys, and the
//! user's own cloud-config, merged by the rule in [`merge`].

pub mod iso;
pub mod merge;

mod cloud_config;
mod config;
mod mounts;
mod network;
mod proxy;
mod render;
mod seed;
mod user_data;
mod validate;
mod yaml11;

#[cfg(test)]
mod fixtures;

pub use cloud_config::{ready_line, user_data, READY_BEACON};
pub use config::{HostKey, NetworkSettings, SeedConfig, WriteFile};
pub use mounts::{boot_script, VirtiofsMount};
pub use network::network_config;
pub use proxy::{GuestProxy, ENVIRONMENT_FILE};
pub use seed::{meta_data, seed_bytes, write_seed};
pub use user_data::UserData;

use std::path::PathBuf;

/// Errors from building or writing a seed image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field would produce a seed cloud-init rejects or misreads.
    #[error("invalid seed config: {0}")]
    InvalidConfig(String),
    /// The user's cloud-config cannot be read, or conflicts with what hvbox
    /// must control. `origin` is the `source` given to [`UserData::parse`];
    /// `line` counts from the document's first line.
    #[error("{origin}, line {line}{}: {message}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
    UserData {
        origin: String,
        line: usize,
        column: Option<usize>,
        message: String,
    },
    /// Writing the image (or its temporary file) failed.
    #[error("failed to write cloud-init seed {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
