//! Watching a log for a line while it grows: each look reads only the bytes added
//! since the last one, not the whole file again (the serial log of a chatty guest is
//! megabytes), and follows the log across a rotation (`NAME` became `NAME.1`, see
//! `hvbox_vmm::log_rotation`), by rename or in place: the rest of the old file is
//! read, then the new one.

use hvbox_vmm::log_rotation::rotated_path;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most bytes one look reads; the rest waits for the next look.
const MAX_READ: u64 = 16 << 20;

pub struct LogTail {
    path: PathBuf,
    /// Bytes of the file (identified by `id`) already looked at.
    pos: u64,
    /// (device, inode) of the file `pos` is in; `None` before it existed.
    id: Option<(u64, u64)>,
    /// The end of the bytes looked at, so a needle split between two looks is found.
    overlap: Vec<u8>,
}

impl LogTail {
    /// Watch `path` from byte `start` on (what it held before is not looked at).
    pub fn new(path: &Path, start: u64) -> LogTail {
        let id = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        LogTail {
            path: path.to_path_buf(),
            pos: start,
            id,
            overlap: Vec::new(),
        }
    }

    /// Whether the bytes added since the last look contain `needle`.
    pub fn saw(&mut self, needle: &str) -> bool {
        let needle = needle.as_bytes();
        let mut window = std::mem::take(&mut self.overlap);
        window.extend_from_slice(&self.read_new());
        let found = !needle.is_empty() && window.windows(needle.len()).any(|w| w == needle);
        let keep = needle.len().saturating_sub(1).min(window.len());
        self.overlap = window.split_off(window.len() - keep);
        found
    }

    /// The bytes added since the last call.
    pub fn read_new(&mut self) -> Vec<u8> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Vec::new();
        };
        let id = (meta.dev(), meta.ino());
        let mut out = Vec::new();
        if self.id != Some(id) {
            // Rotated: the file we were reading is NAME.1 now, its rest unread.
            let old = rotated_path(&self.path);
            if let Ok(m) = std::fs::metadata(&old) {
                if self.id == Some((m.dev(), m.ino())) {
                    read_range(&old, self.pos, m.len(), &mut out);
                }
            }
            self.id = Some(id);
            self.pos = 0;
        } else if meta.len() < self.pos {
            // Rotated in place (the VMM's serial log: NAME copied to NAME.1, then
            // emptied), so NAME.1 holds the rest; or truncated. What is there now is
            // all new.
            let old = rotated_path(&self.path);
            if let Ok(m) = std::fs::metadata(&old) {
                read_range(&old, self.pos, m.len(), &mut out);
            }
            self.pos = 0;
        }
        let end = meta.len().min(self.pos + MAX_READ);
        self.pos += read_range(&self.path, self.pos, end, &mut out);
        out
    }
}

/// Append bytes `[from, to)` of `path` to `out`; returns how many were read.
fn read_range(path: &Path, from: u64, to: u64, out: &mut Vec<u8>) -> u64 {
    if to <= from {
        return 0;
    }
    let Ok(mut file) = File::open(path) else {
        return 0;
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return 0;
    }
    let before = out.len();
    let _ = file.take(to - from).read_to_end(out);
    (out.len() - before) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvbox_vmm::log_rotation::RotatingLog;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn each_look_reads_only_what_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        append(&path, "an earlier boot\n");
        let mut tail = LogTail::new(&path, 16);
        assert_eq!(tail.read_new(), b"");
        append(&path, "booting\n");
        assert_eq!(tail.read_new(), b"booting\n");
        assert_eq!(tail.read_new(), b"");
        append(&path, "login:\n");
        assert_eq!(tail.read_new(), b"login:\n");
    }

    #[test]
    fn a_log_that_did_not_exist_yet_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut tail = LogTail::new(&path, 0);
        assert_eq!(tail.read_new(), b"");
        append(&path, "first line\n");
        assert_eq!(tail.read_new(), b"first line\n");
    }

    #[test]
    fn a_needle_split_between_two_looks_is_seen_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut tail = LogTail::new(&path, 0);
        append(&path, "[ 1.0] Kernel pan");
        assert!(!tail.saw("Kernel panic - not syncing"));
        append(&path, "ic - not syncing: VFS\n");
        assert!(tail.saw("Kernel panic - not syncing"));
        append(&path, "more\n");
        assert!(!tail.saw("Kernel panic - not syncing"));
    }

    /// Writes 10 bytes, looks, then writes past the 20-byte limit: the next look
    /// holds everything after the first, whichever way the log rotated.
    fn follow_a_rotation(open: fn(&Path, u64) -> std::io::Result<RotatingLog>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut log = open(&path, 20).unwrap();
        log.write_all(b"0123456789").unwrap();
        let mut tail = LogTail::new(&path, 0);
        assert_eq!(tail.read_new(), b"0123456789");
        // Fills the file to 20 bytes, rotates, and starts a new one.
        log.write_all(b"abcdefghij").unwrap();
        log.write_all(b"NEW").unwrap();
        assert_eq!(tail.read_new(), b"abcdefghijNEW");
    }

    #[test]
    fn a_rotation_is_followed_without_losing_the_old_files_rest() {
        follow_a_rotation(RotatingLog::open);
    }

    #[test]
    fn a_rotation_in_place_is_followed_without_losing_the_old_files_rest() {
        follow_a_rotation(RotatingLog::open_in_place);
    }

    #[test]
    fn a_truncated_log_is_read_again_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        append(&path, "a long first boot\n");
        let mut tail = LogTail::new(&path, 0);
        tail.read_new();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, "new\n");
        assert_eq!(tail.read_new(), b"new\n");
    }
}
