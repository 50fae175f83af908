//! Bounds on an ext2/3/4 superblock, checked before ext4-view loads it. Root in
//! the guest writes it, and the crate sizes its first allocation by it: the
//! block group descriptors, one per `blocks_count / blocks_per_group`, all read
//! and kept (a fuzzed superblock asked for 8 GiB).

use std::os::unix::fs::FileExt;

use crate::fs_reader::PartitionReader;

const SUPERBLOCK: u64 = 1024;
/// mke2fs refuses fewer blocks per group.
const MIN_BLOCKS_PER_GROUP: u32 = 256;
/// 64 KiB, the largest block size ext4 has.
const MAX_LOG_BLOCK_SIZE: u32 = 6;

/// `Ok` when the filesystem fits its partition and its block groups are of a
/// size mke2fs makes; else what is wrong.
pub(crate) fn check(part: &PartitionReader) -> Result<(), String> {
    let mut sb = [0u8; 0x154];
    part.file()
        .read_exact_at(&mut sb, part.offset() + SUPERBLOCK)
        .map_err(|e| format!("reading its superblock: {e}"))?;
    let u32_at = |off: usize| u32::from_le_bytes(sb[off..off + 4].try_into().unwrap());
    let log_block_size = u32_at(0x18);
    if log_block_size > MAX_LOG_BLOCK_SIZE {
        // ext4-view says so itself.
        return Ok(());
    }
    let block_size = 1024u64 << log_block_size;
    // ext4-view takes the high half whether or not the 64bit feature is on.
    let blocks = u64::from(u32_at(0x150)) << 32 | u64::from(u32_at(0x4));
    let bytes = u128::from(blocks) * u128::from(block_size);
    if bytes > u128::from(part.len()) {
        return Err(format!(
            "its superblock declares {blocks} blocks of {block_size} bytes, more than the \
             partition's {} bytes",
            part.len()
        ));
    }
    let per_group = u32_at(0x20);
    if per_group < MIN_BLOCKS_PER_GROUP {
        return Err(format!(
            "its superblock declares {per_group} blocks per group (mke2fs makes at least \
             {MIN_BLOCKS_PER_GROUP})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A 1 MiB partition whose superblock declares `blocks` 1 KiB blocks,
    /// `per_group` to a group.
    fn partition(blocks: u32, per_group: u32, blocks_hi: Option<u32>) -> PartitionReader {
        let file = tempfile::tempfile().unwrap();
        file.set_len(1 << 20).unwrap();
        let mut sb = [0u8; 0x154];
        sb[0x4..0x8].copy_from_slice(&blocks.to_le_bytes());
        sb[0x20..0x24].copy_from_slice(&per_group.to_le_bytes());
        sb[0x38..0x3a].copy_from_slice(&[0x53, 0xef]);
        if let Some(hi) = blocks_hi {
            sb[0x150..0x154].copy_from_slice(&hi.to_le_bytes());
        }
        file.write_all_at(&sb, SUPERBLOCK).unwrap();
        PartitionReader::new(Rc::new(file), 0, 1 << 20)
    }

    #[test]
    fn accepts_what_mke2fs_makes() {
        assert_eq!(check(&partition(1024, 8192, None)), Ok(()));
        assert_eq!(check(&partition(1024, 256, Some(0))), Ok(()));
    }

    /// Found by the disk_boot fuzz target: ext4-view allocated 8 GiB of block
    /// group descriptors for a 1 MiB filesystem.
    #[test]
    fn a_filesystem_larger_than_its_partition_is_refused() {
        assert_eq!(
            check(&partition(u32::MAX, 8192, None)),
            Err(
                "its superblock declares 4294967295 blocks of 1024 bytes, more than the \
                 partition's 1048576 bytes"
                    .into()
            )
        );
        // The high half counts even without the 64bit feature (the fuzzer's case).
        assert!(check(&partition(1024, 8192, Some(1)))
            .unwrap_err()
            .contains("declares 4294968320 blocks"));
        assert_eq!(
            check(&partition(1024, 1, None)),
            Err("its superblock declares 1 blocks per group (mke2fs makes at least 256)".into())
        );
    }
}
