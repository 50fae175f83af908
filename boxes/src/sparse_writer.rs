//! Writes a byte stream to a file, leaving runs of zero blocks as holes.
//!
//! Disk images are mostly empty: a 2 GiB box may hold 500 MiB of data. Seeking over
//! zero blocks instead of writing them keeps the cache, and every sparse clone made
//! from it, at the size of the data.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const BLOCK: usize = 64 * 1024;

pub struct SparseWriter<'a> {
    file: &'a File,
    block: Vec<u8>,
    /// Bytes of the stream handled so far (written or skipped).
    position: u64,
}

impl<'a> SparseWriter<'a> {
    pub fn new(file: &'a File) -> SparseWriter<'a> {
        SparseWriter::at(file, 0)
    }

    /// Continue a stream whose first `position` bytes are already in the file.
    pub fn at(file: &'a File, position: u64) -> SparseWriter<'a> {
        SparseWriter {
            file,
            block: Vec::with_capacity(BLOCK),
            position,
        }
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if !crate::formats::qcow2::is_zero(&self.block) {
            self.file.write_all_at(&self.block, self.position)?;
        }
        self.position += self.block.len() as u64;
        self.block.clear();
        Ok(())
    }

    /// Write what is buffered and give the file its full length (a trailing hole
    /// would otherwise be missing); returns that length.
    pub fn finish(mut self) -> io::Result<u64> {
        self.flush_block()?;
        self.file.set_len(self.position)?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_runs_become_holes_and_bytes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let file = File::create(&path).unwrap();
        let mut data = vec![0u8; 8 << 20];
        data[100] = 1;
        data[(8 << 20) - 1] = 2;
        let mut w = SparseWriter::new(&file);
        for chunk in data.chunks(10_000) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        // Two 64 KiB blocks hold data; the rest is holes.
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 <= 4 * BLOCK as u64);
    }

    #[test]
    fn trailing_zeros_keep_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let file = File::create(&path).unwrap();
        let mut w = SparseWriter::new(&file);
        w.write_all(&[0u8; 100_000]).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100_000);
    }
}
