//! Machine logs that stay bounded: each grows to [`LOG_LIMIT`], then becomes
//! `NAME.1` (replacing the one before) and a new `NAME` starts. The newest bytes are
//! kept, at most twice the limit in all, however long a machine runs or however much
//! a guest prints. hvbox writes every machine log through this: the VMM its serial
//! log, the supervisor what passt, virtiofsd and the VM print (through pipes, see
//! [`copy_rotating`]) and qemu's serial output.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Size at which a machine log rotates.
pub const LOG_LIMIT: u64 = 8 << 20;

/// Where the previous part of the log at `path` is kept: `NAME.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".1");
    PathBuf::from(p)
}

/// An append-only log file that rotates at a size.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    limit: u64,
    /// `NAME.1`, open from the start when the log rotates in place.
    in_place: Option<File>,
}

impl RotatingLog {
    /// Append to the log at `path` (created if missing), continuing from its
    /// current size.
    pub fn open(path: &Path, limit: u64) -> io::Result<RotatingLog> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
            limit: limit.max(1),
            in_place: None,
        })
    }

    /// The same log for a writer that may open and rename nothing once it runs (the
    /// confined VMM, see `crate::confine`): `NAME.1` is opened now, and a rotation
    /// copies `NAME` into it and empties `NAME` — the same two files, the file of
    /// `NAME` kept (readers see it shrink).
    pub fn open_in_place(path: &Path, limit: u64) -> io::Result<RotatingLog> {
        let mut log = RotatingLog::open(path, limit)?;
        log.file = OpenOptions::new().read(true).append(true).open(path)?;
        log.in_place = Some(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(rotated_path(path))?,
        );
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(old) = &self.in_place {
            // pread/pwrite and ftruncate only: no open, rename or stat.
            old.set_len(0)?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut at = 0u64;
            while at < self.size {
                let n = self.file.read_at(&mut buf, at)?;
                if n == 0 {
                    break;
                }
                old.write_all_at(&buf[..n], at)?;
                at += n as u64;
            }
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for RotatingLog {
    /// Writes up to the limit of the current file; a full file is rotated first. A
    /// failed rotation (the folder is gone, say) keeps appending rather than losing
    /// the output.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.size >= self.limit && self.rotate().is_err() {
            self.size = 0;
        }
        let room = (self.limit - self.size).min(buf.len() as u64) as usize;
        let n = self.file.write(&buf[..room])?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Copy everything `from` yields (a child's stdout and stderr, through a pipe) into
/// `log`, until end of file; returns the bytes copied.
pub fn copy_rotating(mut from: impl Read, mut log: RotatingLog) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        log.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbered lines, so which bytes survived can be told.
    fn lines(from: usize, count: usize) -> Vec<u8> {
        (from..from + count)
            .flat_map(|i| format!("line {i:09}\n").into_bytes())
            .collect()
    }

    #[test]
    fn twenty_mib_keep_the_newest_in_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        // 15 bytes a line: 1.4 M lines are ~20 MiB.
        let count = (20 << 20) / 15;
        let all = lines(0, count);
        let mut log = RotatingLog::open(&path, LOG_LIMIT).unwrap();
        for chunk in all.chunks(100_000) {
            log.write_all(chunk).unwrap();
        }
        let current = std::fs::read(&path).unwrap();
        let old = std::fs::read(rotated_path(&path)).unwrap();
        assert!(current.len() as u64 <= LOG_LIMIT);
        assert_eq!(old.len() as u64, LOG_LIMIT);
        // Together they are the tail of what was written: the oldest bytes dropped.
        let kept = [old, current].concat();
        // 8 MiB went to the file dropped at the second rotation.
        assert_eq!(kept.len(), all.len() - LOG_LIMIT as usize);
        assert!(all.ends_with(&kept));
        assert!(!kept.starts_with(b"line 000000000"));
        assert!(!dir.path().join("serial.log.2").exists());
    }

    #[test]
    fn a_reopened_log_continues_its_size_and_one_write_never_overshoots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.log");
        std::fs::write(&path, vec![b'a'; 900]).unwrap();
        let mut log = RotatingLog::open(&path, 1000).unwrap();
        log.write_all(&[b'b'; 250]).unwrap();
        assert_eq!(std::fs::read(rotated_path(&path)).unwrap().len(), 1000);
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'b'; 150]);
    }

    #[test]
    fn a_log_rotated_in_place_keeps_the_same_newest_bytes_and_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let all = lines(0, 1000);
        let mut log = RotatingLog::open_in_place(&path, 4000).unwrap();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let first = inode(&path);
        for chunk in all.chunks(333) {
            log.write_all(chunk).unwrap();
        }
        let current = std::fs::read(&path).unwrap();
        let old = std::fs::read(rotated_path(&path)).unwrap();
        assert_eq!(old.len(), 4000);
        assert!(current.len() <= 4000);
        let kept = [old, current].concat();
        assert!(all.ends_with(&kept));
        assert_eq!(inode(&path), first, "the log's file is kept");
    }

    #[test]
    fn a_pipe_is_copied_with_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passt.log");
        let data = lines(0, 10_000);
        let log = RotatingLog::open(&path, 64 << 10).unwrap();
        let n = copy_rotating(&data[..], log).unwrap();
        assert_eq!(n, data.len() as u64);
        let kept = [
            std::fs::read(rotated_path(&path)).unwrap(),
            std::fs::read(&path).unwrap(),
        ]
        .concat();
        assert!(data.ends_with(&kept) && kept.len() > 64 << 10);
    }
}
