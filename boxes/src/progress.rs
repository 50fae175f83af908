//! Download progress reporting on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a download reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A progress bar when stderr is a terminal and hvbox its foreground job,
    /// periodic plain lines otherwise (logs and CI output stay readable, and a
    /// shell's prompt is not redrawn over by a job in the background).
    #[default]
    Auto,
    /// No output.
    Quiet,
}

/// How often plain-line mode prints; often enough to show liveness, rare
/// enough not to flood logs.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) struct Reporter {
    inner: Inner,
}

enum Inner {
    Quiet,
    Bar(ProgressBar),
    Lines(LineState),
}

struct LineState {
    label: String,
    total: Option<u64>,
    done: u64,
    /// Bytes a resumed download started with (not counted in the rate).
    resumed: u64,
    started: Instant,
    last_print: Instant,
}

impl Reporter {
    pub(crate) fn new(progress: Progress, label: &str) -> Reporter {
        let inner = match progress {
            Progress::Quiet => Inner::Quiet,
            Progress::Auto if std::io::stderr().is_terminal() && in_foreground() => {
                // One set of bars for the process: the artifacts of a box download
                // in parallel, each on its own line.
                let bar = bars().add(ProgressBar::with_draw_target(
                    None,
                    ProgressDrawTarget::hidden(),
                ));
                bar.set_style(spinner_style());
                bar.set_message(format!("downloading {label}"));
                Inner::Bar(bar)
            }
            Progress::Auto => {
                let now = Instant::now();
                Inner::Lines(LineState {
                    label: label.to_string(),
                    total: None,
                    done: 0,
                    resumed: 0,
                    started: now,
                    last_print: now,
                })
            }
        };
        Reporter { inner }
    }

    /// Announce where the data comes from; a no-op for the bar, which
    /// already shows the label.
    pub(crate) fn note(&self, msg: &str) {
        match &self.inner {
            Inner::Quiet => {}
            Inner::Bar(_) => {
                let _ = bars().println(msg);
            }
            Inner::Lines(_) => eprintln!("{msg}"),
        }
    }

    pub(crate) fn set_total(&mut self, total: Option<u64>) {
        match &mut self.inner {
            Inner::Quiet => {}
            Inner::Bar(bar) => {
                if let Some(total) = total {
                    bar.set_length(total);
                    bar.set_style(bar_style());
                }
            }
            Inner::Lines(state) => state.total = total,
        }
    }

    /// Bytes already there before this transfer (a resumed download).
    pub(crate) fn set_position(&mut self, pos: u64) {
        match &mut self.inner {
            Inner::Quiet => {}
            Inner::Bar(bar) => {
                bar.set_position(pos);
                bar.reset_eta();
            }
            Inner::Lines(state) => {
                state.done = pos;
                state.resumed = pos;
            }
        }
    }

    /// The download is in; what remains (conversion) is said in the message.
    pub(crate) fn phase(&mut self, msg: &str) {
        match &mut self.inner {
            Inner::Quiet => {}
            Inner::Bar(bar) => bar.set_message(msg.to_string()),
            Inner::Lines(_) => eprintln!("{msg}"),
        }
    }

    pub(crate) fn advance(&mut self, n: u64) {
        match &mut self.inner {
            Inner::Quiet => {}
            Inner::Bar(bar) => bar.inc(n),
            Inner::Lines(state) => {
                state.done += n;
                if state.last_print.elapsed() >= LINE_INTERVAL {
                    state.last_print = Instant::now();
                    eprintln!("downloading {}", state.status());
                }
            }
        }
    }

    /// The transfer completed (verification may still fail; the caller
    /// reports that error itself).
    pub(crate) fn finish(mut self) {
        // Take the state out: `Drop` would otherwise abandon the bar.
        match std::mem::replace(&mut self.inner, Inner::Quiet) {
            Inner::Quiet => {}
            Inner::Bar(bar) => bar.finish_and_clear(),
            Inner::Lines(state) => {
                let secs = state.started.elapsed().as_secs_f64();
                eprintln!(
                    "downloaded {}: {} in {:.1}s",
                    state.label,
                    format_bytes(state.done),
                    secs
                );
            }
        }
        let _ = std::io::stderr().flush();
    }
}

impl Drop for Reporter {
    // Clear the bar if the transfer failed so the error message that follows
    // is not glued to a half-drawn bar.
    fn drop(&mut self) {
        if let Inner::Bar(bar) = &self.inner {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

impl LineState {
    fn status(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let fresh = self.done.saturating_sub(self.resumed);
        let rate = if secs > 0.0 {
            (fresh as f64 / secs) as u64
        } else {
            0
        };
        match self.total {
            Some(total) if total > 0 => {
                let eta = match total.saturating_sub(self.done).checked_div(rate) {
                    Some(s) => format!(", ETA {}", format_duration(s)),
                    None => String::new(),
                };
                format!(
                    "{}: {}% {}/{} {}/s{eta}",
                    self.label,
                    self.done.saturating_mul(100) / total,
                    format_bytes(self.done),
                    format_bytes(total),
                    format_bytes(rate)
                )
            }
            _ => format!(
                "{}: {} {}/s",
                self.label,
                format_bytes(self.done),
                format_bytes(rate)
            ),
        }
    }
}

/// Whether hvbox is the foreground job of the terminal on stderr. Started with
/// `&`, its stderr is still the terminal, but the shell's prompt is on the line a
/// bar would redraw.
fn in_foreground() -> bool {
    // SAFETY: both only read process groups; tcgetpgrp fails with -1 on a
    // descriptor that is no terminal, which no process group is.
    unsafe { libc::tcgetpgrp(libc::STDERR_FILENO) == libc::getpgrp() }
}

fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

fn format_duration(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs / 60 % 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("static template is valid")
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}")
        .expect("static template is valid")
}

/// Human-readable binary size: "512 B", "12 KiB", "120 MiB", "1.5 GiB".
pub fn format_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = KIB * 1024;
    const GIB: u64 = MIB * 1024;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else if n >= MIB {
        format!("{} MiB", n / MIB)
    } else if n >= KIB {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes() {
        assert_eq!(format_bytes(10), "10 B");
        assert_eq!(format_bytes(2048), "2 KiB");
        assert_eq!(format_bytes(120 * 1024 * 1024), "120 MiB");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }

    #[test]
    fn line_status_shows_percentage() {
        let now = Instant::now();
        let state = LineState {
            label: "box disk".into(),
            total: Some(300 * 1024 * 1024),
            done: 120 * 1024 * 1024,
            resumed: 0,
            started: now - Duration::from_secs(10),
            last_print: now,
        };
        let s = state.status();
        assert!(s.starts_with("box disk: 40% 120 MiB/300 MiB 1"), "{s}");
        assert!(s.contains(" MiB/s, ETA 1"), "{s}");
    }
}
