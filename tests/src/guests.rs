//! Small static programs kept as assembly in tests/guests/, built with the same
//! helper as the VMM's tiny guests.

use std::path::{Path, PathBuf};

#[path = "../../vmm/tests/guests/support.rs"]
mod support;

pub use support::{newest_cloud_kernel, virtiofsd_binary};

/// Assemble and link `tests/guests/NAME.S` into a static x86-64 Linux program in `dir`.
pub fn build_static_program(name: &str, dir: &Path) -> PathBuf {
    let src = support::guests_dir(env!("CARGO_MANIFEST_DIR"), "guests");
    support::build(&src, name, support::Link::Program, dir)
}
