//! Sparse writes: all-zero blocks are skipped, so they stay holes in a
//! destination that already reads as zeros there (a fresh or `set_len`
//! file). Clones of mostly empty disks and boot files with zero padding
//! then take only the space their data needs.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Zero runs this large (and aligned) are left as holes.
const ZERO_BLOCK: usize = 4096;

/// Write the blocks of `data` that are not all zero at `offset`, each run of
/// such blocks in one write (a block per write costs a system call per 4 KiB).
pub(crate) fn write_nonzero(output: &File, data: &[u8], offset: u64) -> io::Result<()> {
    for (start, end) in nonzero_runs(data) {
        output.write_all_at(&data[start..end], offset + start as u64)?;
    }
    Ok(())
}

/// The byte ranges of `data` made of blocks that are not all zero, adjacent
/// blocks joined.
fn nonzero_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, block) in data.chunks(ZERO_BLOCK).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        let (start, end) = (i * ZERO_BLOCK, i * ZERO_BLOCK + block.len());
        match runs.last_mut() {
            Some(run) if run.1 == start => run.1 = end,
            _ => runs.push((start, end)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn adjacent_data_blocks_are_one_write_and_zero_blocks_are_skipped() {
        let mut data = vec![0u8; 6 * ZERO_BLOCK + 100];
        data[1] = 1; // block 0
        data[ZERO_BLOCK + 7] = 2; // block 1, joined to 0
        data[4 * ZERO_BLOCK] = 3; // block 4 alone
        data[6 * ZERO_BLOCK + 99] = 4; // the short tail
        assert_eq!(
            nonzero_runs(&data),
            [
                (0, 2 * ZERO_BLOCK),
                (4 * ZERO_BLOCK, 5 * ZERO_BLOCK),
                (6 * ZERO_BLOCK, 6 * ZERO_BLOCK + 100)
            ]
        );
        assert!(nonzero_runs(&vec![0u8; 3 * ZERO_BLOCK]).is_empty());
    }

    #[test]
    fn the_written_file_reads_back_as_the_data_with_holes_for_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let mut data = vec![0u8; 64 * ZERO_BLOCK];
        data[..ZERO_BLOCK].fill(0xaa);
        data[63 * ZERO_BLOCK..].fill(0x55);
        write_nonzero(&file, &data, 2 * ZERO_BLOCK as u64).unwrap();
        file.set_len(66 * ZERO_BLOCK as u64).unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[2 * ZERO_BLOCK..], &data[..]);
        assert!(back[..2 * ZERO_BLOCK].iter().all(|&b| b == 0));
        // Two data blocks on disk, the 62 zero blocks between them holes.
        assert!(file.metadata().unwrap().blocks() * 512 < 16 * ZERO_BLOCK as u64);
    }
}
