//! Small process helpers: liveness, signals, waiting.

use std::time::{Duration, Instant};

pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // A zombie still answers kill(0); look at its state so an exited, unreaped
    // child counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn signal(pid: u32, sig: i32) -> anyhow::Result<()> {
    if pid == 0 {
        return Ok(());
    }
    // SAFETY: kill has no memory-safety preconditions; a stale pid only fails.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            anyhow::bail!("cannot signal process {pid}: {err}");
        }
    }
    Ok(())
}

/// Wait until `pid` is gone or `timeout` passes; true if it is gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The pauses of a wait that polls: 1 ms at first, doubling up to `max`, so what
/// comes at once is seen at once and a long wait wakes up rarely.
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn up_to(max: Duration) -> Backoff {
        Backoff {
            next: Duration::from_millis(1).min(max),
            max,
        }
    }

    pub fn sleep(&mut self) {
        std::thread::sleep(self.step());
    }

    /// The next pause's length.
    fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backoff_starts_short_and_stops_growing_at_its_cap() {
        let mut b = Backoff::up_to(Duration::from_millis(8));
        let steps: Vec<u128> = (0..6).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 8, 8]);
    }
}
