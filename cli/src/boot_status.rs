//! What a user sees while hvbox waits for a guest: on a terminal, one status line
//! redrawn in place (spinner, elapsed time, the stage reached, the guest's last
//! serial line); elsewhere a plain line per stage reached, so logs and pipes get
//! no control characters. Machines booting in parallel (`up --jobs`) get the plain
//! lines too: several threads redrawing one terminal line would overwrite each
//! other and cut into the `==> NAME:` lines the others print.

use crate::boot_stage::{Stage, Tracker};
use crate::log_tail::LogTail;
use crate::progress;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// How often the live line is redrawn; the plain lines look at the log as often.
const TICK: Duration = Duration::from_millis(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Plain,
}

impl Mode {
    /// Live only where a terminal shows stdout and can redraw a line: not under
    /// `TERM=dumb`, not with output sent to stderr, not with machines in parallel.
    /// (The live line has no colours, so `NO_COLOR` leaves it as it is.)
    pub fn detect() -> Mode {
        Mode::choose(
            std::io::stdout().is_terminal(),
            std::env::var("TERM").ok().as_deref(),
            progress::to_stderr_set() || progress::in_parallel(),
        )
    }

    /// `shared`: other output shares the terminal line by line (progress on
    /// stderr, machines in parallel).
    fn choose(terminal: bool, term: Option<&str>, shared: bool) -> Mode {
        match terminal && term != Some("dumb") && !shared {
            true => Mode::Live,
            false => Mode::Plain,
        }
    }
}

struct State {
    tracker: Tracker,
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Watches a serial log from a thread of its own until [`BootWatch::finish`] or drop.
pub struct BootWatch {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    mode: Mode,
    machine: Option<String>,
    started: Instant,
    _interrupt: Option<ClearOnInterrupt>,
}

/// Ctrl-C ends hvbox where it is (its default action), as do `kill`, a closed
/// terminal and `Ctrl-\`; while the live line shows, the line is cleared first, so
/// the shell's prompt does not land on a stale one.
struct ClearOnInterrupt {
    /// Each signal handled, with the handler it had before.
    previous: Vec<(libc::c_int, libc::sighandler_t)>,
}

const ENDING_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn clear_and_end(signal: libc::c_int) {
    const CLEAR: &[u8] = b"\r\x1b[2K";
    // SAFETY: tcgetpgrp, getpgrp, write, signal and raise are async-signal-safe;
    // the signal's default action then ends the process as it would have without
    // this handler, so the shell sees 128 + the signal.
    unsafe {
        if in_foreground() {
            libc::write(libc::STDOUT_FILENO, CLEAR.as_ptr().cast(), CLEAR.len());
        }
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

impl ClearOnInterrupt {
    fn install() -> ClearOnInterrupt {
        let handler = clear_and_end as extern "C" fn(libc::c_int);
        let mut previous = Vec::new();
        for signal in ENDING_SIGNALS {
            // SAFETY: the handler only makes async-signal-safe calls.
            let before = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
            if before == libc::SIG_DFL {
                previous.push((signal, before));
            } else {
                // Ignored (`nohup`, Ctrl-C for a background job) or handled
                // elsewhere: leave it so.
                // SAFETY: puts back what was there.
                unsafe { libc::signal(signal, before) };
            }
        }
        ClearOnInterrupt { previous }
    }
}

impl Drop for ClearOnInterrupt {
    fn drop(&mut self) {
        for &(signal, before) in &self.previous {
            // SAFETY: puts back the handler that was there before (the default one).
            unsafe { libc::signal(signal, before) };
        }
    }
}

/// Whether hvbox is the terminal's foreground job. Sent to the background
/// (`hvbox up &`, Ctrl-Z then `bg`) its stdout is still the terminal, but the
/// shell's prompt and what the user types are on the line it would redraw.
/// Async-signal-safe.
fn in_foreground() -> bool {
    // SAFETY: both only read process groups; on a descriptor that is no terminal
    // tcgetpgrp fails with -1, which no process group is.
    unsafe { libc::tcgetpgrp(libc::STDOUT_FILENO) == libc::getpgrp() }
}

impl BootWatch {
    /// Watch `serial_log` from byte `start`, in the mode [`Mode::detect`] picks;
    /// `idle` names the wait until a stage is reached (`booting`, `resuming`).
    pub fn start(serial_log: &Path, start: u64, idle: &'static str) -> BootWatch {
        BootWatch::start_in(Mode::detect(), serial_log, start, idle)
    }

    pub fn start_in(mode: Mode, serial_log: &Path, start: u64, idle: &'static str) -> BootWatch {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tracker: Tracker::default(),
                stopped: false,
            }),
            wake: Condvar::new(),
        });
        let machine = progress::machine();
        let started = Instant::now();
        let interrupt = (mode == Mode::Live).then(ClearOnInterrupt::install);
        let thread = {
            let shared = shared.clone();
            let machine = machine.clone();
            let tail = LogTail::new(serial_log, start);
            std::thread::spawn(move || watch(mode, &shared, tail, machine, started, idle))
        };
        BootWatch {
            shared,
            thread: Some(thread),
            mode,
            machine,
            started,
            _interrupt: interrupt,
        }
    }

    /// A stage learnt otherwise than from the log (ssh answered).
    pub fn reach(&self, stage: Stage) {
        let new = lock(&self.shared).tracker.reach(stage);
        if new && self.mode == Mode::Plain {
            progress::emit(stage_line(self.machine.as_deref(), stage, self.started));
        }
        self.shared.wake.notify_all();
    }

    /// The wait is over: the live line goes, and one line says how long it took.
    pub fn finish(mut self) {
        let stage = self.stop();
        let stage = stage.map_or(String::new(), |s| format!(" (last stage: {})", s.label()));
        progress::emit(progress::line_for(
            self.machine.as_deref(),
            format_args!(
                "guest ready after {}{stage}",
                elapsed(self.started.elapsed())
            ),
        ));
    }

    /// End the thread (which clears its line); the stage reached.
    fn stop(&mut self) -> Option<Stage> {
        lock(&self.shared).stopped = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        lock(&self.shared).tracker.stage()
    }
}

impl Drop for BootWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn watch(
    mode: Mode,
    shared: &Shared,
    mut tail: LogTail,
    machine: Option<String>,
    started: Instant,
    idle: &'static str,
) {
    let mut frame = 0usize;
    let mut state = lock(shared);
    loop {
        let reached = state.tracker.feed(&tail.read_new());
        match mode {
            Mode::Plain => {
                for stage in reached {
                    progress::emit(stage_line(machine.as_deref(), stage, started));
                }
            }
            // Asked each time: the user may move hvbox to the background and back.
            Mode::Live if in_foreground() => {
                let line = live_line(
                    SPINNER[frame % SPINNER.len()],
                    started.elapsed(),
                    state.tracker.stage().map_or(idle, Stage::label),
                    state.tracker.last_line(),
                    terminal_width(),
                );
                draw(&format!("\r\x1b[2K{line}"));
                frame += 1;
            }
            Mode::Live => {}
        }
        if state.stopped {
            break;
        }
        state = shared
            .wake
            .wait_timeout(state, TICK)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    if mode == Mode::Live && in_foreground() {
        draw("\r\x1b[2K");
    }
}

fn draw(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn stage_line(machine: Option<&str>, stage: Stage, started: Instant) -> String {
    progress::line_for(
        machine,
        format_args!(
            "boot stage: {} ({})",
            stage.label(),
            elapsed(started.elapsed())
        ),
    )
}

/// `⠋ 1m05s  systemd  [  OK  ] Started …`, at most `width - 1` characters, each one
/// terminal column (a line reaching the last column makes some terminals wrap).
pub fn live_line(
    spinner: char,
    elapsed_time: Duration,
    stage: &str,
    last: &str,
    width: usize,
) -> String {
    let head = format!("{spinner} {:>5}  {stage:<12}", elapsed(elapsed_time));
    let last = one_column_each(&crate::guest_text::sanitize(last));
    let line = format!("{head} {last}");
    let max = width.saturating_sub(1).max(1);
    match line.chars().count() > max {
        true => {
            let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
        false => line,
    }
}

/// `text` with every character one terminal column wide, so counting characters
/// counts columns: a wide one (CJK, emoji) or one of no width (a combining mark)
/// from the guest would make the line wrap or fall short, and each redraw would
/// leave a stale row. Telling widths apart takes Unicode's tables, so anything
/// not ASCII is shown as `?`; systemd's `…` (it shortens unit names) as `...`.
fn one_column_each(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            '…' => out.push_str("..."),
            c if c.is_ascii() => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// `42s`, `2m05s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        _ => format!("{}m{:02}s", s / 60, s % 60),
    }
}

fn terminal_width() -> usize {
    // SAFETY: winsize is plain integers, for which all zeros is valid.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ only fills the winsize it is given; on a descriptor that
    // is no terminal it fails, and the width falls back.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    match ok && size.ws_col > 0 {
        true => usize::from(size.ws_col),
        false => 80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_live_line_fits_the_terminal_and_shows_no_guest_controls() {
        let last = "[  OK  ] Started ssh.service - OpenBSD Secure Shell server.\x07";
        let line = live_line('⠋', Duration::from_secs(65), "sshd", last, 200);
        assert_eq!(
            line,
            "⠋ 1m05s  sshd         [  OK  ] Started ssh.service - OpenBSD Secure Shell server.\\x07"
        );
        let narrow = live_line('⠋', Duration::from_secs(3), "booting", last, 40);
        assert_eq!(narrow.chars().count(), 39);
        assert_eq!(narrow, "⠋    3s  booting      [  OK  ] Started…");
    }

    /// Guest text of other widths than one column (wide CJK and emoji, a
    /// combining accent) is shown one column a character, so the line fits.
    #[test]
    fn the_live_line_counts_terminal_columns() {
        let last = "[  OK  ] Reached target network-pre…get 网络已就绪 🚀 e\u{301}\tdone";
        let line = live_line('⠋', Duration::from_secs(5), "network", last, 200);
        assert_eq!(
            line,
            "⠋    5s  network      [  OK  ] Reached target network-pre...get ????? ? e? done"
        );
        // 40 columns: 39 characters, each one column (the spinner and the `…`
        // hvbox cuts with are one column wide too).
        let wide = "网".repeat(100);
        let narrow = live_line('⠋', Duration::from_secs(5), "network", &wide, 40);
        assert_eq!(narrow.chars().count(), 39);
        assert!(narrow.ends_with("???…"), "{narrow}");
    }

    #[test]
    fn live_only_on_a_terminal_of_its_own_that_can_redraw() {
        assert_eq!(
            Mode::choose(true, Some("xterm-256color"), false),
            Mode::Live
        );
        assert_eq!(Mode::choose(true, None, false), Mode::Live);
        assert_eq!(Mode::choose(false, Some("xterm"), false), Mode::Plain);
        assert_eq!(Mode::choose(true, Some("dumb"), false), Mode::Plain);
        // `up --jobs`: each machine's thread prints its own lines.
        assert_eq!(Mode::choose(true, Some("xterm"), true), Mode::Plain);
    }

    /// Plain mode prints one line per stage as the log grows, none twice.
    #[test]
    fn plain_lines_name_each_stage_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        std::fs::write(&log, "an earlier boot: Linux version 5\n").unwrap();
        let start = std::fs::metadata(&log).unwrap().len();
        let watch = BootWatch::start_in(Mode::Plain, &log, start, "booting");
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"[    0.0] Linux version 6.1.0\n[ 1.0] systemd[1]: systemd 252\n")
            .unwrap();
        std::thread::sleep(TICK * 4);
        watch.reach(Stage::Sshd);
        let stage = lock(&watch.shared).tracker.stage();
        assert_eq!(stage, Some(Stage::Sshd));
        watch.finish();
    }
}
