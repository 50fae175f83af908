//! Turns a box disk into a machine disk: a sparse, growable clone
//! ([`clone_disk`]) and the guest's own kernel, initrd and command line
//! for direct kernel boot ([`extract_boot_files`]).
//!
//! Everything here reads the guest disk as plain bytes; nothing is mounted
//! and guest paths (including symlinks) are resolved inside the guest
//! filesystem, never on the host.

mod atomic_file;
mod boot_files;
mod clone;
mod error;
mod fs_probe;
mod fs_reader;
mod fstab;
mod gpt_grow;
mod grub;
mod partitions;
mod version_order;

pub use boot_files::{extract_boot_files, BootFiles};
pub use clone::clone_disk;
pub use error::Error;
