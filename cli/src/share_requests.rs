//! What `hvbox` tells a running machine's supervisor about its shares' virtiofsd
//! while a save unplugs them, through files in the run's runtime folder (gone with
//! the run): `shares-unplugged` lists the shares whose virtiofsd is to end (not a
//! crash), `shares-restart` asks for fresh ones, answered in `shares-restarted`.

use crate::machine::write_atomic;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

const UNPLUGGED: &str = "shares-unplugged";
const RESTART: &str = "shares-restart";
const RESTARTED: &str = "shares-restarted";
/// Each virtiofsd gets up to 10 s to listen, and an old one 5 s to end.
const RESTART_WAIT: Duration = Duration::from_secs(60);

fn read_list(path: &Path) -> Option<Vec<usize>> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// hvbox: the virtiofsd of `indexes` will end; it is no loss.
pub fn mark_unplugged(runtime_dir: &Path, indexes: &[usize]) -> Result<()> {
    write_atomic(
        &runtime_dir.join(UNPLUGGED),
        serde_json::to_string(indexes)?.as_bytes(),
    )
}

/// Supervisor: whether share `index` was unplugged on purpose.
pub fn is_unplugged(runtime_dir: &Path, index: usize) -> bool {
    read_list(&runtime_dir.join(UNPLUGGED)).is_some_and(|l| l.contains(&index))
}

/// hvbox: whether a save marked shares unplugged and nothing took the mark back
/// (the save was cut short).
pub fn any_unplugged(runtime_dir: &Path) -> bool {
    read_list(&runtime_dir.join(UNPLUGGED)).is_some_and(|l| !l.is_empty())
}

/// hvbox: the shares are back as they were without a restart.
pub fn clear_unplugged(runtime_dir: &Path) {
    let _ = std::fs::remove_file(runtime_dir.join(UNPLUGGED));
}

/// hvbox: ask the supervisor (pid `supervisor`) for fresh virtiofsd for `indexes`
/// and wait until they listen.
pub fn restart(runtime_dir: &Path, supervisor: u32, indexes: &[usize]) -> Result<()> {
    let answer = runtime_dir.join(RESTARTED);
    let _ = std::fs::remove_file(&answer);
    write_atomic(
        &runtime_dir.join(RESTART),
        serde_json::to_string(indexes)?.as_bytes(),
    )?;
    let deadline = Instant::now() + RESTART_WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&answer) {
            let _ = std::fs::remove_file(&answer);
            return match text.trim() {
                "" => Ok(()),
                why => bail!("{why}"),
            };
        }
        if !crate::process::pid_alive(supervisor) {
            bail!("the machine's supervisor ended");
        }
        if Instant::now() > deadline {
            bail!(
                "the machine's supervisor did not start virtiofsd within {} s",
                RESTART_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Supervisor: a pending restart request, taken (removed) from the folder.
pub fn take_restart(runtime_dir: &Path) -> Option<Vec<usize>> {
    let path = runtime_dir.join(RESTART);
    let list = read_list(&path)?;
    let _ = std::fs::remove_file(&path);
    Some(list)
}

/// Supervisor: answer a restart request (`Ok` or why not); the shares are no longer
/// unplugged either way.
pub fn answer_restart(runtime_dir: &Path, result: &Result<()>) -> Result<()> {
    let _ = std::fs::remove_file(runtime_dir.join(UNPLUGGED));
    let text = match result {
        Ok(()) => String::new(),
        Err(e) => format!("{e:#}"),
    };
    write_atomic(&runtime_dir.join(RESTARTED), text.as_bytes())
        .context("answering hvbox's request for virtiofsd")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides of the files, the supervisor's in a thread as its loop would run.
    #[test]
    fn a_restart_is_asked_for_answered_and_the_unplugged_mark_goes() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().to_path_buf();
        mark_unplugged(&runtime, &[0, 2]).unwrap();
        assert!(is_unplugged(&runtime, 2) && !is_unplugged(&runtime, 1));
        assert_eq!(take_restart(&runtime), None);
        let supervisor = {
            let runtime = runtime.clone();
            std::thread::spawn(move || loop {
                if let Some(list) = take_restart(&runtime) {
                    answer_restart(&runtime, &Ok(())).unwrap();
                    return list;
                }
                std::thread::sleep(Duration::from_millis(20));
            })
        };
        restart(&runtime, std::process::id(), &[0, 2]).unwrap();
        assert_eq!(supervisor.join().unwrap(), vec![0, 2]);
        assert!(!is_unplugged(&runtime, 0), "the mark outlived the restart");
        assert!(!runtime.join(RESTART).exists() && !runtime.join(RESTARTED).exists());

        // A failed restart comes back as the supervisor's reason.
        let failing = {
            let runtime = runtime.clone();
            std::thread::spawn(move || loop {
                if take_restart(&runtime).is_some() {
                    let e = Err(anyhow::anyhow!("virtiofsd for /p -> /g exited"));
                    answer_restart(&runtime, &e).unwrap();
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            })
        };
        let err = restart(&runtime, std::process::id(), &[1]).unwrap_err();
        failing.join().unwrap();
        assert_eq!(err.to_string(), "virtiofsd for /p -> /g exited");
    }

    #[test]
    fn a_supervisor_gone_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let err = restart(dir.path(), pid, &[0]).unwrap_err();
        assert_eq!(err.to_string(), "the machine's supervisor ended");
    }
}
