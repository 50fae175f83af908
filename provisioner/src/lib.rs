//! Turns a box disk into a machine disk: a reflinked or sparse, growable clone
//! ([`clone_disk`]) and the guest's own kernel, initrd and command line
//! for direct kernel boot ([`extract_boot_files`], [`installed_kernels`]).
//!
//! Everything here reads the guest disk as plain bytes; nothing is mounted
//! and guest paths (including symlinks) are resolved inside the guest
//! filesystem, never on the host.

mod atomic_file;
mod bls;
mod boot_files;
mod boot_size;
mod bzimage_version;
mod clone;
mod cmdline;
mod error;
mod ext4_bounds;
mod fs_probe;
mod fs_reader;
mod fstab;
#[doc(hidden)]
pub mod fuzzing;
mod gpt_grow;
mod gpt_header;
mod grub;
mod grubenv;
mod guest_fs;
mod initrd;
mod kernels;
mod mbr_bounds;
mod partitions;
mod reflink;
mod sparse;
mod version_order;
mod volumes;

pub use boot_files::{
    boot_menu, extract_boot_files, installed_kernels, BootFiles, BootMenu, InstalledKernel,
    KernelSelection,
};
pub use boot_size::MAX_BOOT_BYTES;
pub use clone::{clone_disk, grow_disk};

/// Order two kernel releases (`6.1.0-9-amd64` < `6.1.0-10-amd64`) as dpkg orders
/// versions.
pub fn compare_kernel_versions(a: &str, b: &str) -> std::cmp::Ordering {
    version_order::compare(a, b)
}
pub use error::Error;
