//! `hvbox logs [-f]`: the machine's serial console log. Every boot appends to the
//! same file, so following it across `halt`/`up` just keeps reading; a file that is
//! replaced (rotated at 8 MiB) or truncated is read again from its start. The part
//! rotated out, `serial.log.1`, is shown first. The guest wrote the log, so
//! its control characters are shown, not obeyed ([`crate::guest_text`]).

use super::select::{Need, Selection};
use crate::guest_text::StreamSanitizer;
use anyhow::{bail, Context, Result};
use hvbox_vmm::log_rotation::rotated_path;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How often a follower looks for more output; a person reading does not notice.
const POLL: Duration = Duration::from_millis(200);

pub fn run(name: Option<&str>, follow: bool) -> Result<ExitCode> {
    let target = Selection::load(Need::Names)?.one(name, "logs")?;
    let path = target.machine.serial_log();
    if !follow && !path.exists() {
        bail!(
            "no serial log at {}: {} has not booted yet ({})",
            path.display(),
            target.subject(),
            target.hint("up")
        );
    }
    let mut stdout = std::io::stdout().lock();
    let mut log = Follower::new(path);
    match log.previous(&mut stdout) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other.with_context(|| format!("reading {}", log.path.display()))?,
    }
    // Until Ctrl-C (SIGINT's default action ends us), or the reader goes away.
    loop {
        match log.pump(&mut stdout) {
            Ok(true) => {}
            Ok(false) if follow => std::thread::sleep(POLL),
            Ok(false) => {
                log.finish(&mut stdout)
                    .with_context(|| format!("reading {}", log.path.display()))?;
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e).with_context(|| format!("reading {}", log.path.display())),
        }
    }
}

/// Reads a file's new bytes as it grows, the way `tail -F` does.
struct Follower {
    path: PathBuf,
    file: Option<File>,
    pos: u64,
    sanitizer: StreamSanitizer,
}

impl Follower {
    fn new(path: PathBuf) -> Follower {
        Follower {
            path,
            file: None,
            pos: 0,
            sanitizer: StreamSanitizer::default(),
        }
    }

    /// Copy the log's rotated-out older part (`NAME.1`), if any, to `out`.
    fn previous(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let mut old = match File::open(rotated_path(&self.path)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = old.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(self.sanitizer.push(&buf[..n]).as_bytes())?;
        }
    }

    /// Copy what is new to `out`; false when there was nothing. A missing file (not
    /// booted yet, or destroyed) is nothing, until it appears.
    fn pump(&mut self, out: &mut impl Write) -> std::io::Result<bool> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => {
                    self.file = Some(f);
                    self.pos = 0;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        let file = self.file.as_mut().expect("opened above");
        let len = file.metadata()?.len();
        if len < self.pos {
            // Rotated in place (NAME copied to NAME.1, then emptied: its rest is
            // there), or truncated. What is there now is all new.
            if let Ok(mut old) = File::open(rotated_path(&self.path)) {
                old.seek(SeekFrom::Start(self.pos))?;
                let mut rest = Vec::new();
                old.read_to_end(&mut rest)?;
                out.write_all(self.sanitizer.push(&rest).as_bytes())?;
            }
            self.pos = 0;
        }
        let mut copied = false;
        if len > self.pos {
            file.seek(SeekFrom::Start(self.pos))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(self.sanitizer.push(&buf[..n]).as_bytes())?;
                self.pos += n as u64;
                copied = true;
            }
            out.flush()?;
        }
        // Drained the file we have; if the path now names another file (or none),
        // that one is next.
        if !copied && !names(&self.path, file) {
            self.finish(out)?;
            self.file = None;
            return self.pump(out);
        }
        Ok(copied)
    }

    /// Write what the sanitizer held back for the next bytes: there are none.
    fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(self.sanitizer.finish().as_bytes())?;
        out.flush()
    }
}

/// True while `path` is the file `file` has open.
fn names(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::Follower;
    use std::io::Write;

    fn append(path: &std::path::Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn pump(f: &mut Follower) -> String {
        let mut out = Vec::new();
        while f.pump(&mut out).unwrap() {}
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn follows_appends_truncation_replacement_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut f = Follower::new(path.clone());
        assert_eq!(pump(&mut f), "");
        append(&path, "boot 1\n");
        assert_eq!(pump(&mut f), "boot 1\n");
        assert_eq!(pump(&mut f), "");
        append(&path, "boot 2\n");
        assert_eq!(pump(&mut f), "boot 2\n");
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(pump(&mut f), "new\n");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(pump(&mut f), "");
        append(&path, "after destroy and up\n");
        assert_eq!(pump(&mut f), "after destroy and up\n");
        // Replaced by rename: the old file's tail first, then the new one whole.
        append(&path, "tail\n");
        let other = dir.path().join("other");
        std::fs::write(&other, "replacement\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_eq!(pump(&mut f), "tail\nreplacement\n");
    }

    #[test]
    fn history_shows_the_rotated_part_first_and_follows_rotations() {
        use hvbox_vmm::log_rotation::RotatingLog;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut log = RotatingLog::open(&path, 11).unwrap();
        log.write_all(b"old line 1\n").unwrap();
        log.write_all(b"new line 2\n").unwrap();
        assert!(super::rotated_path(&path).exists());
        let mut f = Follower::new(path.clone());
        let mut out = Vec::new();
        f.previous(&mut out).unwrap();
        while f.pump(&mut out).unwrap() {}
        assert_eq!(String::from_utf8(out).unwrap(), "old line 1\nnew line 2\n");
        // A rotation while following: the rest of the old file, then the new one.
        log.write_all(b"3\n").unwrap();
        assert_eq!(pump(&mut f), "3\n");
    }

    #[test]
    fn following_goes_on_across_a_rotation_in_place() {
        use hvbox_vmm::log_rotation::RotatingLog;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut log = RotatingLog::open_in_place(&path, 12).unwrap();
        log.write_all(b"line one\n").unwrap();
        let mut f = Follower::new(path.clone());
        assert_eq!(pump(&mut f), "line one\n");
        // "two" fills the file; it is copied to NAME.1 and emptied for "three".
        log.write_all(b"two\nthree\n").unwrap();
        assert_eq!(pump(&mut f), "two\nthree\n");
    }
}
