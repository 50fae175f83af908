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
