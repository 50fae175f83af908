//! Sparse writes: all-zero blocks are skipped, so they stay holes in a
//! destination that already reads as zeros there (a fresh or `set_len`
//! file). Clones of mostly empty disks and boot files with zero padding
//! then take only the space their data needs.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Zero runs this large (and aligned) are left as holes.
const ZERO_BLOCK: usize = 4096;

/// Write the blocks of `data` that are not all zero at `offset`.
pub(crate) fn write_nonzero(output: &File, data: &[u8], offset: u64) -> io::Result<()> {
    for (i, block) in data.chunks(ZERO_BLOCK).enumerate() {
        if block.iter().any(|&b| b != 0) {
            output.write_all_at(block, offset + (i * ZERO_BLOCK) as u64)?;
        }
    }
    Ok(())
}
