//! A step's output as the user sees it: every line the guest writes, as it arrives,
//! behind the step's label, on the stream it came from; and the last lines, kept
//! for the error when the step fails. The guest's control characters are shown,
//! not obeyed (see [`crate::guest_text`]).

use std::collections::VecDeque;

/// A line longer than this is cut, so output without newlines cannot grow memory.
const MAX_LINE: usize = 16 * 1024;
/// How many of the last lines a failure repeats.
pub const TAIL_LINES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Cuts a byte stream into lines. `\n`, `\r\n` and a lone `\r` (a progress meter
/// redrawing its line) each end one.
#[derive(Debug, Default)]
struct LineSplitter {
    pending: Vec<u8>,
    /// The last byte was a `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8], lines: &mut Vec<String>) {
        for &b in bytes {
            let after_cr = std::mem::take(&mut self.after_cr);
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    lines.push(self.take());
                    self.after_cr = b == b'\r';
                }
                _ => {
                    self.pending.push(b);
                    if self.pending.len() >= MAX_LINE {
                        lines.push(self.take());
                    }
                }
            }
        }
    }

    /// What is left once the stream ended: a last line without its newline.
    fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = crate::guest_text::sanitize(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
        line
    }
}

/// `    [LABEL] line`: what each line of a step's output is printed as.
pub fn prefixed(label: &str, line: &str) -> String {
    if line.is_empty() {
        format!("    [{label}]")
    } else {
        format!("    [{label}] {line}")
    }
}

/// One step's two output streams: complete lines come out prefixed, and the last
/// [`TAIL_LINES`] of both, in the order they arrived, are kept.
#[derive(Debug)]
pub struct StepOutput {
    label: String,
    stdout: LineSplitter,
    stderr: LineSplitter,
    tail: VecDeque<String>,
}

impl StepOutput {
    pub fn new(label: &str) -> StepOutput {
        StepOutput {
            label: label.to_string(),
            stdout: LineSplitter::default(),
            stderr: LineSplitter::default(),
            tail: VecDeque::with_capacity(TAIL_LINES),
        }
    }

    /// Take `bytes` that arrived on `stream`; returns the lines they completed,
    /// prefixed, to print on that stream.
    pub fn feed(&mut self, stream: Stream, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        self.splitter(stream).push(bytes, &mut lines);
        self.keep(lines)
    }

    /// Both streams ended: their unfinished last lines, if any.
    pub fn finish(&mut self) -> Vec<(Stream, String)> {
        let mut out = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(line) = self.splitter(stream).finish() {
                out.extend(self.keep(vec![line]).into_iter().map(|l| (stream, l)));
            }
        }
        out
    }

    /// The last lines of both streams, prefixed, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    fn splitter(&mut self, stream: Stream) -> &mut LineSplitter {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn keep(&mut self, lines: Vec<String>) -> Vec<String> {
        let lines: Vec<String> = lines.iter().map(|l| prefixed(&self.label, l)).collect();
        for line in &lines {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.clone());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_whole_and_prefixed() {
        let mut out = StepOutput::new("2/3 script setup.sh");
        assert!(out.feed(Stream::Stdout, b"hel").is_empty());
        assert_eq!(
            out.feed(Stream::Stdout, b"lo\nworld\n\nlast"),
            [
                "    [2/3 script setup.sh] hello",
                "    [2/3 script setup.sh] world",
                "    [2/3 script setup.sh]",
            ]
        );
        assert_eq!(
            out.finish(),
            [(Stream::Stdout, "    [2/3 script setup.sh] last".to_string())]
        );
        assert!(out.finish().is_empty());
    }

    #[test]
    fn carriage_returns_end_lines_once() {
        let mut out = StepOutput::new("s");
        // \r\n split over two chunks is one line end, not two.
        assert_eq!(out.feed(Stream::Stdout, b"a\r"), ["    [s] a"]);
        assert_eq!(out.feed(Stream::Stdout, b"\nb\r\n"), ["    [s] b"]);
        assert_eq!(
            out.feed(Stream::Stdout, b" 10%\r 20%\r\r"),
            ["    [s]  10%", "    [s]  20%", "    [s]"]
        );
    }

    #[test]
    fn streams_keep_their_own_partial_lines() {
        let mut out = StepOutput::new("s");
        assert!(out.feed(Stream::Stdout, b"out ").is_empty());
        assert_eq!(out.feed(Stream::Stderr, b"err\n"), ["    [s] err"]);
        assert_eq!(out.feed(Stream::Stdout, b"line\n"), ["    [s] out line"]);
        assert_eq!(out.tail(), ["    [s] err", "    [s] out line"]);
    }

    #[test]
    fn the_tail_holds_the_last_lines_of_both_streams_in_order() {
        let mut out = StepOutput::new("s");
        for i in 0..30 {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            out.feed(stream, format!("line {i}\n").as_bytes());
        }
        out.feed(Stream::Stderr, b"no newline");
        out.finish();
        let tail = out.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "    [s] line 11");
        assert_eq!(tail[TAIL_LINES - 2], "    [s] line 29");
        assert_eq!(tail[TAIL_LINES - 1], "    [s] no newline");
    }

    #[test]
    fn the_guests_escape_sequences_are_shown_not_obeyed() {
        let mut out = StepOutput::new("s");
        assert_eq!(
            out.feed(Stream::Stderr, b"\x1b[31mred\x1b[0m \x1b]0;title\x07\tok\n"),
            [r"    [s] \x1b[31mred\x1b[0m \x1b]0;title\x07	ok"]
        );
        assert_eq!(
            out.tail(),
            [r"    [s] \x1b[31mred\x1b[0m \x1b]0;title\x07	ok"]
        );
    }

    #[test]
    fn long_lines_are_cut_and_bad_utf8_is_replaced() {
        let mut out = StepOutput::new("s");
        let lines = out.feed(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), "    [s] ".len() + MAX_LINE);
        assert_eq!(out.finish()[0].1, format!("    [s] {}", "x".repeat(10)));
        assert_eq!(
            out.feed(Stream::Stdout, b"\xff ok\n"),
            ["    [s] \u{fffd} ok"]
        );
    }
}
