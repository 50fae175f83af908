//! The `==> ` lines commands print as they go. When a command works through several
//! machines, each line names the machine it is about (`==> web: booting …`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

thread_local! {
    /// Per thread: `up` brings machines up on threads of their own.
    static MACHINE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Set while a command writes its own output to stdout (`export kubevirt -o -`).
static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Send the progress lines that follow to stderr, keeping stdout for the output.
pub fn to_stderr() {
    TO_STDERR.store(true, Ordering::Relaxed);
}

/// Whether progress lines go to stderr.
pub fn to_stderr_set() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

/// How many runs are acting on machines in parallel, each on a thread of its own.
static PARALLEL: AtomicUsize = AtomicUsize::new(0);

/// A parallel run starts (`true`) or ends (`false`).
pub fn set_parallel(on: bool) {
    match on {
        true => PARALLEL.fetch_add(1, Ordering::Relaxed),
        false => PARALLEL.fetch_sub(1, Ordering::Relaxed),
    };
}

/// Whether other threads may print progress lines now.
pub fn in_parallel() -> bool {
    PARALLEL.load(Ordering::Relaxed) > 0
}

/// Print one progress line where they go.
pub fn emit(line: String) {
    if TO_STDERR.load(Ordering::Relaxed) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Name `machine` in the lines this thread prints next (`None`: name none).
pub fn set_machine(machine: Option<&str>) {
    MACHINE.with(|m| *m.borrow_mut() = machine.map(str::to_string));
}

/// The machine this thread's lines name, if any.
pub fn machine() -> Option<String> {
    MACHINE.with(|m| m.borrow().clone())
}

/// `==> MESSAGE`, or `==> NAME: MESSAGE` while a machine is named.
pub fn line(message: std::fmt::Arguments) -> String {
    MACHINE.with(|m| line_for(m.borrow().as_deref(), message))
}

/// [`line`] naming `machine`, for a thread that is not the machine's own.
pub fn line_for(machine: Option<&str>, message: std::fmt::Arguments) -> String {
    match machine {
        Some(name) => format!("==> {name}: {message}"),
        None => format!("==> {message}"),
    }
}

/// Print a progress line: `step!("booting on {engine}")`.
macro_rules! step {
    ($($arg:tt)*) => {
        $crate::progress::emit($crate::progress::line(format_args!($($arg)*)))
    };
}
pub(crate) use step;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_machine_when_set() {
        set_machine(Some("web"));
        assert_eq!(line(format_args!("booting {}", 1)), "==> web: booting 1");
        set_machine(None);
        assert_eq!(line(format_args!("booting")), "==> booting");
    }
}
