//! An image layer: an uncompressed tar of a few files, produced as a stream whose
//! length is known before it is read, so a multi-GiB disk goes through it (once to
//! hash it, once into the archive) without being held in memory or copied to a
//! temporary file. Headers are fixed (mtime 0, no user or group names), so the same
//! files always give the same bytes.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::PathBuf;

const BLOCK: u64 = 512;

/// One entry of a layer; entries are written in the order given.
pub enum Item {
    Dir {
        path: String,
        mode: u32,
        owner: u64,
    },
    File {
        path: String,
        mode: u32,
        owner: u64,
        source: PathBuf,
        /// The file's length when the layer was planned; a file that has
        /// changed since is an error, not a damaged layer.
        len: u64,
    },
}

pub struct Layer {
    items: Vec<Item>,
}

impl Layer {
    pub fn new(items: Vec<Item>) -> Layer {
        Layer { items }
    }

    /// A file entry for `source`, with its length now.
    pub fn file(path: &str, mode: u32, owner: u64, source: PathBuf) -> io::Result<Item> {
        let len = std::fs::metadata(&source)?.len();
        Ok(Item::File {
            path: path.to_string(),
            mode,
            owner,
            source,
            len,
        })
    }

    /// The layer's length in bytes: per entry a header and the data padded to a
    /// block, then the two zero blocks that end a tar.
    pub fn len(&self) -> u64 {
        let data: u64 = self
            .items
            .iter()
            .map(|item| match item {
                Item::Dir { .. } => BLOCK,
                Item::File { len, .. } => BLOCK + len.div_ceil(BLOCK) * BLOCK,
            })
            .sum();
        data + 2 * BLOCK
    }

    /// The layer's bytes.
    pub fn reader(&self) -> io::Result<impl Read> {
        let mut parts: Vec<Box<dyn Read>> = Vec::new();
        for item in &self.items {
            parts.push(Box::new(Cursor::new(header(item)?.as_bytes().to_vec())));
            if let Item::File { source, len, .. } = item {
                let file = File::open(source)?;
                parts.push(Box::new(Exact {
                    inner: file.take(*len),
                    left: *len,
                    source: source.clone(),
                }));
                let pad = (len.div_ceil(BLOCK) * BLOCK - len) as usize;
                parts.push(Box::new(Cursor::new(vec![0u8; pad])));
            }
        }
        parts.push(Box::new(Cursor::new(vec![0u8; 2 * BLOCK as usize])));
        Ok(Concat { parts, at: 0 })
    }
}

fn header(item: &Item) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    let (path, mode, owner) = match item {
        Item::Dir { path, mode, owner } => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            (format!("{}/", path.trim_end_matches('/')), *mode, *owner)
        }
        Item::File {
            path,
            mode,
            owner,
            len,
            ..
        } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(*len);
            (path.clone(), *mode, *owner)
        }
    };
    h.set_path(&path)?;
    h.set_mode(mode);
    h.set_uid(owner);
    h.set_gid(owner);
    h.set_mtime(0);
    h.set_cksum();
    Ok(h)
}

/// Exactly `left` bytes of a file, or an error naming it.
struct Exact<R> {
    inner: R,
    left: u64,
    source: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::other(format!(
                "{} became shorter while it was read",
                self.source.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The parts one after another.
struct Concat {
    parts: Vec<Box<dyn Read>>,
    at: usize,
}

impl Read for Concat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(part) = self.parts.get_mut(self.at) {
            let n = part.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.at += 1;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_a_tar_of_its_length_that_tar_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("disk.img");
        let data: Vec<u8> = (0..1300u32).map(|i| i as u8).collect();
        std::fs::write(&source, &data).unwrap();
        let layer = Layer::new(vec![
            Item::Dir {
                path: "disk".into(),
                mode: 0o755,
                owner: 0,
            },
            Layer::file("disk/disk.img", 0o440, 107, source).unwrap(),
        ]);
        let mut bytes = Vec::new();
        layer.reader().unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, layer.len());
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            seen.push((
                entry.path().unwrap().display().to_string(),
                h.uid().unwrap(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
                content,
            ));
        }
        assert_eq!(
            seen,
            [
                ("disk/".to_string(), 0, 0o755, 0, vec![]),
                ("disk/disk.img".to_string(), 107, 0o440, 0, data),
            ]
        );
    }
}
