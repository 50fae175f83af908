use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while cloning a disk or extracting its boot
/// files. Each message names the file, partition or guest path involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read disk image {path}: {source}")]
    ReadDisk {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "requested disk size {requested} bytes is smaller than the disk {path} \
         ({actual} bytes); shrinking would destroy data, pick a size of at least {actual} bytes"
    )]
    SizeTooSmall {
        path: PathBuf,
        requested: u64,
        actual: u64,
    },

    #[error("cannot move the backup GPT of {path} to the new end of disk: {reason}")]
    GptGrow { path: PathBuf, reason: String },

    #[error("the partition table of {path} is damaged or unsupported: {reason}")]
    PartitionTable { path: PathBuf, reason: String },

    #[error(
        "the root filesystem on {partition} of {path} is {fs}, which hvbox cannot read \
         (only ext2/3/4 is supported); use a box that provides a kernel and initrd"
    )]
    UnsupportedRootFs {
        path: PathBuf,
        partition: String,
        fs: &'static str,
    },

    #[error(
        "no ext2/3/4 filesystem found on {path} (looked at: {looked_at}); \
         use a box that provides a kernel and initrd"
    )]
    NoLinuxFilesystem { path: PathBuf, looked_at: String },

    #[error(
        "no kernel found on {path}: no usable vmlinuz in /boot of any ext2/3/4 \
         filesystem (looked at: {looked_at}{skipped}); is a kernel package installed in the box?"
    )]
    NoKernel {
        path: PathBuf,
        looked_at: String,
        /// Empty, or "; skipped: <candidate>: <why>; …".
        skipped: String,
    },

    #[error("kernel {wanted} is not installed on {path}; installed kernels: {available}")]
    KernelVersionNotFound {
        path: PathBuf,
        wanted: String,
        available: String,
    },

    #[error(
        "kernel {kernel} (release {version}) of {path} has no matching initrd (looked for \
         {looked_for}), but the disk has initrds for other kernels ({others}); another \
         kernel's initrd cannot load this kernel's modules. Boot another kernel, or \
         regenerate this one's initrd inside the guest (update-initramfs -c -k {version}, \
         or dracut --kver {version})"
    )]
    NoMatchingInitrd {
        path: PathBuf,
        kernel: String,
        version: String,
        looked_for: String,
        others: String,
    },

    #[error(
        "the boot entry for {kernel} in {entry} of {path} names {count} initrds; hvbox loads \
         at most {max}. Remove the extra initrd lines from the guest's bootloader \
         configuration"
    )]
    TooManyInitrds {
        path: PathBuf,
        kernel: String,
        /// The bootloader file, as `/boot/grub/grub.cfg on partition 1`.
        entry: String,
        count: usize,
        max: usize,
    },

    #[error(
        "the kernel and initrd of {path} are too large to boot: {files} come to {total} \
         bytes, more than the {limit} bytes {why}"
    )]
    BootFilesTooLarge {
        path: PathBuf,
        /// Each file with its size, as `/boot/vmlinuz-… (8 MiB) + … on partition 1`.
        files: String,
        total: u64,
        limit: u64,
        /// What sets the limit, and what to do about it.
        why: String,
    },

    #[error("cannot open the ext filesystem on {partition} of {path}: {source}")]
    OpenFs {
        path: PathBuf,
        partition: String,
        #[source]
        source: ext4_view::Ext4Error,
    },

    #[error("cannot open the ext filesystem on {partition} of {path}: {reason}")]
    DamagedFs {
        path: PathBuf,
        partition: String,
        reason: String,
    },

    #[error("cannot read {guest_path} in the filesystem on {partition} of {path}: {source}")]
    ReadGuestFile {
        path: PathBuf,
        partition: String,
        guest_path: String,
        #[source]
        source: ext4_view::Ext4Error,
    },

    #[error(
        "cannot tell the root device of {path}: no grub.cfg entry with root=, no / entry in \
         /etc/fstab and no partition UUID for {partition}"
    )]
    NoRootDevice { path: PathBuf, partition: String },
}

#[cfg(test)]
mod tests {
    /// Callers (the CLI) wrap this in anyhow, which needs Send + Sync.
    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<super::Error>();
    }
}
