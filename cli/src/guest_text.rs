//! Guest text made safe to print. hvbox shows what guests wrote — serial lines
//! when a boot fails, `hvbox logs`, provisioning output, cloud-init's report — and
//! a guest (or anything running in it) chooses those bytes. A terminal obeys the
//! escape sequences among them: they can retitle the window, move the cursor and
//! overwrite what hvbox printed, hide lines, or on some terminals type back into
//! the shell. So every control character but newline and tab is shown instead, as
//! `\xNN` (C1 controls as `\u{NN}`), which keeps it visible for a bug report.
//! A carriage return right before a newline is an ordinary line end and passes.
//! Unicode's bidirectional controls are shown the same way: they reorder what the
//! terminal draws, so a line could read differently from the bytes it holds.
//!
//! Not for `hvbox console` and `hvbox ssh`: those hand the terminal to the guest
//! on purpose.

use std::fmt::Write as _;
use std::io::{self, Read};

/// `text` with its control characters shown rather than obeyed.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_sanitized(text, false, &mut out);
    out
}

/// Append `text`, sanitized, to `out`. `more` says text follows (a stream), so a
/// `\r` at the very end is no lone `\r` yet: the caller keeps it back.
fn push_sanitized(text: &str, more: bool, out: &mut String) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' if chars.peek() == Some(&'\n') => out.push(c),
            '\r' if more && chars.peek().is_none() => {}
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// The embeddings, overrides and isolates of Unicode's bidirectional algorithm,
/// and its marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{61c}')
}

/// Sanitizes a byte stream that arrives in pieces (a log being followed): a UTF-8
/// sequence or a `\r\n` split between pieces is judged whole. Bytes that are not
/// UTF-8 are shown as `\xNN`, so a lone 0x9b (an 8-bit CSI) is shown too.
#[derive(Debug, Default)]
pub struct StreamSanitizer {
    /// The end of the last piece, held until what follows says what it is.
    pending: Vec<u8>,
}

impl StreamSanitizer {
    /// The printable text for `bytes`, less what waits for the next piece.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let input = std::mem::take(&mut self.pending);
        let mut out = String::with_capacity(input.len());
        let mut rest = &input[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    push_sanitized(text, true, &mut out);
                    if text.ends_with('\r') {
                        self.pending.push(b'\r');
                    }
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    let valid = std::str::from_utf8(valid).expect("checked valid");
                    // A `\r` before invalid bytes is a lone one.
                    push_sanitized(valid, false, &mut out);
                    match e.error_len() {
                        Some(n) => {
                            for b in &after[..n] {
                                let _ = write!(out, "\\x{b:02x}");
                            }
                            rest = &after[n..];
                        }
                        // Cut short by the piece's end: wait for the rest.
                        None => {
                            self.pending.extend_from_slice(after);
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// The stream ended (for now): what was held back, as it stands.
    pub fn finish(&mut self) -> String {
        let held = std::mem::take(&mut self.pending);
        let mut out = String::new();
        for &b in &held {
            let _ = write!(out, "\\x{b:02x}");
        }
        out
    }
}

/// Copy `from` to `to` as it comes, sanitized, until `from` ends.
pub fn relay(mut from: impl Read, mut to: impl io::Write) -> io::Result<()> {
    let mut sanitizer = StreamSanitizer::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(sanitizer.push(&buf[..n]).as_bytes())?;
        to.flush()?;
    }
    to.write_all(sanitizer.finish().as_bytes())?;
    to.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_shown_not_obeyed() {
        assert_eq!(
            sanitize("\x1b[2J\x1b]0;owned\x07title\x1bPq\x1b\\ end"),
            r"\x1b[2J\x1b]0;owned\x07title\x1bPq\x1b\ end"
        );
        assert_eq!(sanitize("a\u{9b}31mb\u{85}c"), r"a\u{9b}31mb\u{85}c");
        assert_eq!(
            sanitize("bell\x07 bs\x08 del\x7f nul\0"),
            r"bell\x07 bs\x08 del\x7f nul\x00"
        );
        assert_eq!(sanitize("over\rwrite"), r"over\x0dwrite");
    }

    #[test]
    fn bidirectional_controls_are_shown_so_a_line_reads_as_its_bytes() {
        assert_eq!(
            sanitize("ok \u{202e}gnp.exe\u{202c} \u{2067}x\u{2069}"),
            r"ok \u{202e}gnp.exe\u{202c} \u{2067}x\u{2069}"
        );
        // Right-to-left text itself passes.
        assert_eq!(sanitize("שלום مرحبا"), "שלום مرحبا");
    }

    #[test]
    fn text_newlines_tabs_and_crlf_pass() {
        let text = "Linux version 6.1 — ünïcode\tok\r\nnext\n";
        assert_eq!(sanitize(text), text);
    }

    #[test]
    fn a_stream_judges_sequences_split_between_pieces_whole() {
        let mut s = StreamSanitizer::default();
        // "é" is c3 a9; \r\n split; ESC alone in its piece.
        assert_eq!(s.push(b"caf\xc3"), "caf");
        assert_eq!(s.push(b"\xa9 line\r"), "é line");
        assert_eq!(s.push(b"\nnext \x1b"), "\r\nnext \\x1b");
        assert_eq!(s.push(b"[31m red\r"), "[31m red");
        assert_eq!(s.push(b"x"), r"\x0dx");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn a_relay_copies_a_whole_stream_sanitized() {
        let input: &[u8] = b"apt: \x1b[1mReading\x1b[0m 50%\r\nend\xe2\x82";
        let mut out = Vec::new();
        relay(input, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r"apt: \x1b[1mReading\x1b[0m 50%".to_string() + "\r\nend" + r"\xe2\x82"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_as_bytes() {
        let mut s = StreamSanitizer::default();
        assert_eq!(
            s.push(b"8-bit csi \x9b2J, bad \xff\xfe ok"),
            r"8-bit csi \x9b2J, bad \xff\xfe ok"
        );
        assert_eq!(s.push(b"cut \xe2\x82"), "cut ");
        assert_eq!(s.finish(), r"\xe2\x82");
        assert_eq!(s.push(b"\r"), "");
        assert_eq!(s.finish(), r"\x0d");
    }
}
