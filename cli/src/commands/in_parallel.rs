//! Acting on several machines at once (`up`): each on a thread of its own, at most
//! `jobs` at a time, every line naming its machine as [`for_each`] does.

use super::select::{for_each, Target};
use crate::progress;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many machines to bring up at once: `--jobs` when given, else one per core,
/// since each boot keeps a core busy (under emulation, all of it).
pub fn jobs(requested: Option<u16>) -> usize {
    match requested {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// `act` on each target, up to `jobs` at once, in the targets' order of starting.
/// After a failure no further machine starts; those under way finish. The error is
/// the first failure (in the targets' order), naming the machines that failed too
/// and those not reached.
pub fn for_each_parallel(
    targets: &[Target],
    jobs: usize,
    act: impl Fn(&Target) -> Result<()> + Sync,
) -> Result<()> {
    if jobs <= 1 || targets.len() <= 1 {
        return for_each(targets, act);
    }
    progress::set_parallel(true);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<()>>>> =
        Mutex::new(targets.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(targets.len()) {
            scope.spawn(|| loop {
                if failed.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(target) = targets.get(i) else {
                    return;
                };
                progress::set_machine(target.named.then_some(target.name()));
                let result = act(target);
                progress::set_machine(None);
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
            });
        }
    });
    progress::set_parallel(false);
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut errors = Vec::new();
    let mut not_reached = Vec::new();
    for (target, result) in targets.iter().zip(results) {
        match result {
            Some(Ok(())) => {}
            Some(Err(e)) => errors.push((target.name(), e)),
            None => not_reached.push(target.name()),
        }
    }
    let mut errors = errors.into_iter();
    let Some((name, first)) = errors.next() else {
        return Ok(());
    };
    let mut context = format!("machine `{name}`");
    let also: Vec<String> = errors
        .map(|(name, e)| format!("`{name}` failed too: {e:#}"))
        .collect();
    if !also.is_empty() {
        context.push_str(&format!(" ({})", also.join("; ")));
    }
    if !not_reached.is_empty() {
        context.push_str(&format!(" (not reached: {})", not_reached.join(", ")));
    }
    Err(first.context(context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::select::{Need, Selection};
    use crate::project::Project;
    use std::time::{Duration, Instant};

    /// The machines `a`, `b`, `c` of a project in a temporary folder.
    fn targets() -> (tempfile::TempDir, Vec<Target>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(
            root.join("hvbox.yaml"),
            "box: debian-12\nmachines:\n  a:\n  b:\n  c:\n",
        )
        .unwrap();
        let project = Project {
            spec_path: root.join("hvbox.yaml"),
            root,
        };
        let selection = Selection::of(project, Need::Names).unwrap();
        let targets = selection.many(&[], false).unwrap();
        (dir, targets)
    }

    /// Each waits until all have started: one after another, none would.
    #[test]
    fn machines_run_at_the_same_time_each_line_naming_its_own() {
        let (_dir, targets) = targets();
        let started = AtomicUsize::new(0);
        let lines = Mutex::new(Vec::new());
        for_each_parallel(&targets, 3, |target| {
            started.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while started.load(Ordering::SeqCst) < 3 {
                anyhow::ensure!(Instant::now() < deadline, "{} ran alone", target.name());
                std::thread::sleep(Duration::from_millis(5));
            }
            // No live status line while others print (see boot_status).
            anyhow::ensure!(progress::in_parallel(), "not marked parallel");
            lines
                .lock()
                .unwrap()
                .push(progress::line(format_args!("booting {}", target.name())));
            Ok(())
        })
        .unwrap();
        let mut lines = lines.into_inner().unwrap();
        lines.sort();
        assert_eq!(
            lines,
            ["==> a: booting a", "==> b: booting b", "==> c: booting c"]
        );
    }

    /// `a` fails while `b` is under way: `b` finishes, `c` never starts, and the
    /// error says so.
    #[test]
    fn a_failure_lets_the_running_finish_and_starts_no_more() {
        let (_dir, targets) = targets();
        let ran = Mutex::new(Vec::new());
        let err = for_each_parallel(&targets, 2, |target| {
            ran.lock().unwrap().push(target.name().to_string());
            match target.name() {
                "a" => {
                    // Fails once `b` is under way.
                    while !ran.lock().unwrap().iter().any(|n| n == "b") {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    anyhow::bail!("the box is gone")
                }
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
            Ok(())
        })
        .unwrap_err();
        let mut ran = ran.into_inner().unwrap();
        ran.sort();
        assert_eq!(ran, ["a", "b"]);
        assert_eq!(
            format!("{err:#}"),
            "machine `a` (not reached: c): the box is gone"
        );
    }

    /// Every failure is named, the first (in the spec's order) leading.
    #[test]
    fn several_failures_are_all_named() {
        let (_dir, targets) = targets();
        let started = AtomicUsize::new(0);
        let err = for_each_parallel(&targets, 3, |target| {
            // All under way before any ends.
            started.fetch_add(1, Ordering::SeqCst);
            while started.load(Ordering::SeqCst) < 3 {
                std::thread::sleep(Duration::from_millis(5));
            }
            match target.name() {
                "a" => Ok(()),
                name => anyhow::bail!("{name} broke"),
            }
        })
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "machine `b` (`c` failed too: c broke): b broke"
        );
    }
}
