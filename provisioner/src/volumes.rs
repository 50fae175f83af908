//! The filesystems of a disk image that hvbox can read (ext2/3/4), and
//! enough about the others to explain why a kernel was not found.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ext4_view::{Ext4, Ext4Error};

use crate::fs_probe::{self, FsKind};
use crate::fs_reader::PartitionReader;
use crate::partitions::{self, Partition};
use crate::Error;

/// An ext2/3/4 filesystem found on the disk.
pub(crate) struct Volume {
    pub part: Partition,
    pub fs: Ext4,
}

impl Volume {
    /// "partition 16 (BOOT)": the label helps tell a boot partition apart.
    pub fn describe(&self) -> String {
        match self.fs.label().to_str() {
            Ok(label) if !label.is_empty() => format!("{} ({label})", self.part.describe()),
            _ => self.part.describe(),
        }
    }
}

pub(crate) struct Disk {
    pub path: PathBuf,
    pub volumes: Vec<Volume>,
    /// Partitions that look like a Linux root we cannot read (btrfs, xfs…).
    foreign: Vec<(Partition, FsKind)>,
    /// ext partitions whose superblock ext4-view rejected.
    unreadable: Vec<Error>,
    /// Every partition looked at, for messages.
    looked_at: Vec<String>,
}

impl Disk {
    /// Open every ext partition of the image. A damaged one is remembered
    /// rather than fatal: the kernel may live on another partition.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let mut file = File::open(path).map_err(|source| Error::ReadDisk {
            path: path.to_path_buf(),
            source,
        })?;
        let parts = partitions::list(path, &mut file)?;
        let file = Rc::new(file);
        let mut disk = Disk {
            path: path.to_path_buf(),
            volumes: Vec::new(),
            foreign: Vec::new(),
            unreadable: Vec::new(),
            looked_at: Vec::new(),
        };
        for part in parts {
            let reader = PartitionReader::new(Rc::clone(&file), part.start, part.len);
            let kind = fs_probe::probe(&reader);
            let what = match kind {
                FsKind::Unknown => "no recognised filesystem",
                kind => kind.name(),
            };
            disk.looked_at.push(format!("{}: {what}", part.describe()));
            match kind {
                FsKind::Ext => match crate::ext4_bounds::check(&reader) {
                    Err(reason) => disk.unreadable.push(Error::DamagedFs {
                        path: path.to_path_buf(),
                        partition: part.describe(),
                        reason,
                    }),
                    Ok(()) => match Ext4::load(Box::new(reader)) {
                        Ok(fs) => disk.volumes.push(Volume { part, fs }),
                        Err(source) => disk.unreadable.push(Error::OpenFs {
                            path: path.to_path_buf(),
                            partition: part.describe(),
                            source,
                        }),
                    },
                },
                kind if kind.may_be_root() => disk.foreign.push((part, kind)),
                // BIOS boot, ESP, swap, empty: nothing for us there.
                _ => {}
            }
        }
        Ok(disk)
    }

    pub fn guest_err(&self, volume: usize, guest_path: &str, source: Ext4Error) -> Error {
        Error::ReadGuestFile {
            path: self.path.clone(),
            partition: self.volumes[volume].describe(),
            guest_path: guest_path.to_string(),
            source,
        }
    }

    /// A root filesystem we cannot read, if the disk has one.
    pub fn unsupported_root(&self) -> Option<Error> {
        self.foreign
            .first()
            .map(|(part, kind)| Error::UnsupportedRootFs {
                path: self.path.clone(),
                partition: part.describe(),
                fs: kind.name(),
            })
    }

    /// Why no kernel was found, most specific cause first: a damaged ext
    /// filesystem, a root we cannot read, no ext filesystem, or none of the
    /// readable ones holds a kernel (`skipped` lists candidates rejected).
    pub fn into_no_kernel_error(mut self, skipped: &[String]) -> Error {
        if !self.unreadable.is_empty() {
            return self.unreadable.swap_remove(0);
        }
        if let Some(err) = self.unsupported_root() {
            return err;
        }
        let looked_at = if self.looked_at.is_empty() {
            "no partitions".to_string()
        } else {
            self.looked_at.join(", ")
        };
        if self.volumes.is_empty() {
            return Error::NoLinuxFilesystem {
                path: self.path,
                looked_at,
            };
        }
        let skipped = if skipped.is_empty() {
            String::new()
        } else {
            format!("; skipped: {}", skipped.join("; "))
        };
        Error::NoKernel {
            path: self.path,
            looked_at,
            skipped,
        }
    }
}
