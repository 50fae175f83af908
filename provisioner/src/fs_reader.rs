//! `Ext4Read` over one partition's byte range of a disk image file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use ext4_view::Ext4Read;

/// Reads `[offset, offset + len)` of a shared image file. Positional reads
/// (pread) mean several partitions can share one open file.
#[derive(Clone)]
pub(crate) struct PartitionReader {
    file: Rc<File>,
    offset: u64,
    len: u64,
}

impl PartitionReader {
    pub fn new(file: Rc<File>, offset: u64, len: u64) -> Self {
        Self { file, offset, len }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn len(&self) -> u64 {
        self.len
    }
}

impl Ext4Read for PartitionReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        // Never read past the partition: a corrupt filesystem must not make
        // us interpret the next partition's bytes as its own.
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(Box::new(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {start_byte} runs past the end of the partition ({} bytes)",
                    dst.len(),
                    self.len
                ),
            )));
        }
        self.file.read_exact_at(dst, self.offset + start_byte)?;
        Ok(())
    }
}
