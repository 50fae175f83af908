//! Recognise a filesystem by its magic bytes, so a non-ext root can be
//! named in the error instead of failing with a generic parse error.

use std::os::unix::fs::FileExt;

use crate::fs_reader::PartitionReader;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsKind {
    Ext,
    Btrfs,
    Xfs,
    Vfat,
    Luks,
    LvmPv,
    Swap,
    Unknown,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext => "ext2/3/4",
            FsKind::Btrfs => "btrfs",
            FsKind::Xfs => "xfs",
            FsKind::Vfat => "vfat",
            FsKind::Luks => "LUKS-encrypted",
            FsKind::LvmPv => "an LVM physical volume",
            FsKind::Swap => "swap",
            FsKind::Unknown => "unknown",
        }
    }

    /// Could this be a Linux root filesystem we just cannot read?
    pub fn may_be_root(self) -> bool {
        matches!(
            self,
            FsKind::Btrfs | FsKind::Xfs | FsKind::Luks | FsKind::LvmPv
        )
    }
}

pub(crate) fn probe(part: &PartitionReader) -> FsKind {
    let at = |offset: u64, magic: &[u8]| {
        let mut buf = vec![0u8; magic.len()];
        offset + magic.len() as u64 <= part.len()
            && part
                .file()
                .read_exact_at(&mut buf, part.offset() + offset)
                .is_ok()
            && buf == magic
    };
    if at(1024 + 0x38, &[0x53, 0xEF]) {
        FsKind::Ext
    } else if at(0x1_0040, b"_BHRfS_M") {
        FsKind::Btrfs
    } else if at(0, b"XFSB") {
        FsKind::Xfs
    } else if at(0, b"LUKS\xba\xbe") {
        FsKind::Luks
    } else if at(0x218, b"LVM2 001") {
        FsKind::LvmPv
    } else if at(4096 - 10, b"SWAPSPACE2") {
        FsKind::Swap
    } else if at(0x52, b"FAT32   ") || at(0x36, b"FAT16   ") || at(0x36, b"FAT12   ") {
        FsKind::Vfat
    } else {
        FsKind::Unknown
    }
}
