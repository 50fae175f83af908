//! Automatic port forwarding: each TCP port the guest starts listening on is
//! offered on the host's 127.0.0.1 (at the same port when it is free there) for as
//! long as the guest listens, through the machine's own ssh: nothing listens beyond
//! 127.0.0.1, and the guest needs no agent. [`watcher`] does it for the supervisor;
//! the live forwards are recorded in the run's runtime folder for `hvbox port`,
//! `status` and `list`.

pub mod listening;
pub mod watcher;

use crate::machine::write_atomic;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;

/// The live automatic forwards, in the run's runtime folder (gone with the run).
pub const RECORD_FILE: &str = "auto-forwards.json";

/// One automatic forward: 127.0.0.1:`host` on the host to `guest` in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoForward {
    pub host: u16,
    pub guest: u16,
    /// Where the guest's sshd connects: 127.0.0.1 or ::1 for a listener on any
    /// address or loopback, else the address the listener is bound to.
    pub guest_address: IpAddr,
}

/// The automatic forwards of the run whose runtime folder is `runtime_dir`; none
/// when there is no record (forwarding off, or nothing forwarded yet).
pub fn load(runtime_dir: &Path) -> Vec<AutoForward> {
    std::fs::read_to_string(runtime_dir.join(RECORD_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

pub(crate) fn save(runtime_dir: &Path, forwards: &[AutoForward]) -> anyhow::Result<()> {
    write_atomic(
        &runtime_dir.join(RECORD_FILE),
        serde_json::to_string_pretty(forwards)?.as_bytes(),
    )
}
