//! The per-machine lock: one command at a time changes a machine.
//!
//! An flock on `machine.lock` in the machine's folder, taken without waiting, so a
//! second `up` (or `halt`, `destroy`, …) fails at once instead of racing the first.
//! The kernel drops an flock when its holder dies, so a killed command never leaves
//! the machine locked; the pid and command written into the file are only for the
//! error message, never trusted for liveness. (The supervisor's `supervisor.lock`
//! is a different thing: it says a machine is running, for as long as it runs.)

use super::Machine;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

pub const LOCK_FILE: &str = "machine.lock";

/// Held while alive; dropping it releases the lock.
#[derive(Debug)]
pub struct MachineLock {
    file: File,
    path: PathBuf,
    machine: Machine,
}

/// Why the lock could not be taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy {
    pub machine: String,
    /// What the holder wrote: its pid and command, when it got that far.
    pub holder: Option<(u32, String)>,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let starting = matches!(&self.holder, Some((_, c)) if c == "up" || c == "reload");
        let what = if starting { "already starting" } else { "busy" };
        write!(f, "the machine `{}` is {what}: ", self.machine)?;
        match &self.holder {
            Some((pid, command)) => write!(f, "another `hvbox {command}` (pid {pid}) holds it")?,
            None => f.write_str("another hvbox command holds it")?,
        }
        f.write_str("; try again when it has finished")
    }
}

impl std::error::Error for Busy {}

impl MachineLock {
    /// Take the machine's lock for `command` (`up`, `halt`, …). Creates the
    /// machine's folder when `create_dir` is set; otherwise a missing folder (a
    /// machine not created) gives `Ok(None)`: there is nothing to lock.
    pub fn acquire(machine: &Machine, command: &str, create_dir: bool) -> Result<Option<Self>> {
        let path = machine.file(LOCK_FILE);
        // The holder may delete the folder (destroy, a failed create) and another
        // command make it anew: a lock on a file no longer at `path` locks nothing,
        // so take it again on the file that is there now.
        loop {
            if create_dir {
                super::private::create_machine_dir(&machine.dir)?;
            }
            let file = match File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(super::private::FILE_MODE)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !create_dir {
                        return Ok(None);
                    }
                    // Removed between our mkdir and open by a holder leaving.
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
            };
            // SAFETY: flock on a file descriptor we own; released when `file` closes.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(err).with_context(|| format!("locking {}", path.display()));
                }
                return Err(Busy {
                    machine: machine.name.clone(),
                    holder: wait_for_holder(&file),
                }
                .into());
            }
            if !same_file(&file, &path) {
                continue;
            }
            let mut lock = MachineLock {
                file,
                path,
                machine: machine.clone(),
            };
            lock.record(command)
                .with_context(|| format!("writing {}", lock.path.display()))?;
            return Ok(Some(lock));
        }
    }

    /// Replace whatever an earlier (maybe killed) holder wrote with our own pid.
    fn record(&mut self, command: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        writeln!(self.file, "{} {command}", std::process::id())
    }
}

impl Drop for MachineLock {
    /// An `up` that failed before creating anything leaves no folder behind; the
    /// lock file goes while still held, and anyone who opened it sees it moved.
    fn drop(&mut self) {
        if !self.machine.is_created() && same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
            if std::fs::remove_dir(&self.machine.dir).is_ok() {
                if let Some(machines) = self.machine.dir.parent() {
                    let _ = std::fs::remove_dir(machines);
                    if let Some(state_dir) = machines.parent() {
                        let _ = std::fs::remove_dir(state_dir);
                    }
                }
            }
        }
    }
}

fn same_file(file: &File, path: &std::path::Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The holder writes its record just after taking the lock, so a command that
/// lost the race by microseconds may find the file still empty: give the record
/// a moment to appear before saying who holds the machine.
fn wait_for_holder(file: &File) -> Option<(u32, String)> {
    for _ in 0..50 {
        if let Some(holder) = read_holder(file) {
            return Some(holder);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

fn read_holder(mut file: &File) -> Option<(u32, String)> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    parse_holder(&text)
}

fn parse_holder(text: &str) -> Option<(u32, String)> {
    let (pid, command) = text.trim().split_once(' ')?;
    Some((pid.parse().ok()?, command.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(dir: &std::path::Path) -> Machine {
        Machine::new("default", dir.join(".hvbox/machines/default"))
    }

    #[test]
    fn second_holder_is_refused_with_the_first_ones_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let m = machine(tmp.path());
        let first = MachineLock::acquire(&m, "up", true).unwrap().unwrap();
        // flock is per open file, so a second open in the same process contends.
        let err = MachineLock::acquire(&m, "halt", true).unwrap_err();
        let busy = err.downcast_ref::<Busy>().expect("a Busy error");
        assert_eq!(busy.holder, Some((std::process::id(), "up".to_string())));
        assert!(err.to_string().contains("is already starting"), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("another `hvbox up` (pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(MachineLock::acquire(&m, "halt", true).unwrap().is_some());
    }

    #[test]
    fn a_loser_by_microseconds_still_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let m = machine(tmp.path());
        let first = MachineLock::acquire(&m, "up", true).unwrap().unwrap();
        // The moment between the winner's flock and its record.
        first.file.set_len(0).unwrap();
        let path = m.file(LOCK_FILE);
        let late_record = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::fs::write(path, "4242 up\n").unwrap();
        });
        let err = MachineLock::acquire(&m, "up", true).unwrap_err();
        late_record.join().unwrap();
        let busy = err.downcast_ref::<Busy>().expect("a Busy error");
        assert_eq!(busy.holder, Some((4242, "up".to_string())));
        drop(first);
    }

    #[test]
    fn a_dead_holders_record_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        let m = machine(tmp.path());
        std::fs::create_dir_all(&m.dir).unwrap();
        std::fs::write(m.file(LOCK_FILE), "999999999 up\n").unwrap();
        let lock = MachineLock::acquire(&m, "destroy", false).unwrap().unwrap();
        let text = std::fs::read_to_string(m.file(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{} destroy\n", std::process::id()));
        drop(lock);
    }

    #[test]
    fn nothing_to_lock_without_a_folder_unless_asked_to_make_it() {
        let tmp = tempfile::tempdir().unwrap();
        let m = machine(tmp.path());
        assert!(MachineLock::acquire(&m, "halt", false).unwrap().is_none());
        assert!(!m.dir.exists());
        // An `up` that created nothing leaves nothing behind.
        drop(MachineLock::acquire(&m, "up", true).unwrap().unwrap());
        assert!(!tmp.path().join(".hvbox").exists());
    }

    #[test]
    fn a_lock_on_a_deleted_file_is_taken_again_on_the_new_one() {
        let tmp = tempfile::tempdir().unwrap();
        let m = machine(tmp.path());
        std::fs::create_dir_all(&m.dir).unwrap();
        std::fs::write(m.state_path(), "{}").unwrap();
        let first = MachineLock::acquire(&m, "destroy", false).unwrap().unwrap();
        // destroy removes the folder while holding the lock; an `up` then makes it
        // anew and must get a lock of its own, not wait on the old file.
        std::fs::remove_dir_all(&m.dir).unwrap();
        let second = MachineLock::acquire(&m, "up", true).unwrap().unwrap();
        assert!(same_file(&second.file, &m.file(LOCK_FILE)));
        drop(first);
        drop(second);
    }

    #[test]
    fn holder_records_parse() {
        assert_eq!(parse_holder("12 up\n"), Some((12, "up".into())));
        assert_eq!(
            parse_holder("7 upgrade-kernel"),
            Some((7, "upgrade-kernel".into()))
        );
        assert_eq!(parse_holder(""), None);
        assert_eq!(parse_holder("x up"), None);
    }
}
