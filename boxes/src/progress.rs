//! Download progress reporting on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a download reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A progress bar when stderr is a terminal, periodic plain lines
    /// otherwise (logs and CI output stay readable).
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
    started: Instant,
    last_print: Instant,
}

impl Reporter {
    pub(crate) fn new(progress: Progress, label: &str) -> Reporter {
        let inner = match progress {
            Progress::Quiet => Inner::Quiet,
            Progress::Auto if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
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
            Inner::Bar(bar) => bar.println(msg),
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
        let rate = if secs > 0.0 {
            (self.done as f64 / secs) as u64
        } else {
            0
        };
        match self.total {
            Some(total) if total > 0 => format!(
                "{}: {}% {}/{} {}/s",
                self.label,
                self.done.saturating_mul(100) / total,
                format_bytes(self.done),
                format_bytes(total),
                format_bytes(rate)
            ),
            _ => format!(
                "{}: {} {}/s",
                self.label,
                format_bytes(self.done),
                format_bytes(rate)
            ),
        }
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
pub(crate) fn format_bytes(n: u64) -> String {
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
            started: now,
            last_print: now,
        };
        let s = state.status();
        assert!(s.starts_with("box disk: 40% 120 MiB/300 MiB "), "{s}");
        assert!(s.ends_with("/s"), "{s}");
    }
}
