//! How far a guest's boot got, read from its serial log as it grows: the stages a
//! Debian cloud guest passes on its way to ssh, each known by a line it prints. A
//! stage is only ever reached forward, so a late or missing line (a quiet kernel,
//! cloud-init's early pre-network run) neither moves the stage back nor blocks it.

/// The stages of a boot, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Kernel,
    Systemd,
    Network,
    Sshd,
    CloudInit,
    Provisioning,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Kernel => "kernel",
            Stage::Systemd => "systemd",
            Stage::Network => "network",
            Stage::Sshd => "sshd",
            Stage::CloudInit => "cloud-init",
            Stage::Provisioning => "provisioning",
        }
    }
}

/// The stage one serial line (escape sequences already stripped) shows reached.
pub fn stage_of(line: &str) -> Option<Stage> {
    if line.contains("Linux version ") {
        return Some(Stage::Kernel);
    }
    if line.contains("systemd[1]:") || line.starts_with("Welcome to ") {
        return Some(Stage::Systemd);
    }
    // `network.target - Network.` (systemd 252), `Reached target Network.` (older);
    // not `network-pre.target`, which comes before any interface is up.
    if line.contains("Reached target")
        && (line.contains("network.target") || line.contains("target Network."))
    {
        return Some(Stage::Network);
    }
    // Ubuntu 24.04 starts sshd on the first connection, through ssh.socket.
    if line.contains("Started ssh.service")
        || line.contains("Started OpenBSD Secure Shell")
        || line.contains("Started sshd.service")
        || line.contains("Listening on ssh.socket")
    {
        return Some(Stage::Sshd);
    }
    // cloud-init also runs before the network (`init-local`, `init`); only its
    // later modules run once sshd is up, which is where its part of the wait is.
    if line.contains("cloud-init[") && line.contains("running 'modules:") {
        return Some(Stage::CloudInit);
    }
    None
}

/// `line` without terminal escape sequences (systemd colours its `[  OK  ]`), nor
/// the carriage returns and erase-line codes its progress lines redraw with.
pub fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            if c != '\r' {
                out.push(c);
            }
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // A CSI sequence ends with its first byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// Most bytes of one line looked at: the guest chooses what it writes to its serial
/// port, and a line that never ends must not grow hvbox's memory or the time each
/// look takes. A stage's mark is at a line's start, well within it.
const MAX_LINE: usize = 4096;

/// Most characters of the last line kept: more than any terminal line shows.
const MAX_LAST_LINE: usize = 400;

/// Follows the serial log's bytes: the stage reached and the last line printed.
#[derive(Debug, Default)]
pub struct Tracker {
    stage: Option<Stage>,
    /// Bytes of a line not yet ended (at most [`MAX_LINE`]).
    partial: Vec<u8>,
    /// The line being read was longer than [`MAX_LINE`]: its first bytes were
    /// taken as the line, the rest is dropped up to its end.
    overlong: bool,
    last_line: String,
}

impl Tracker {
    /// Take the bytes the log grew by; returns the stages newly reached, in order
    /// of the lines that showed them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Stage> {
        let mut reached = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            // Only the new bytes are searched: what `partial` holds has no newline.
            let (piece, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            rest = &rest[piece.len() + usize::from(ended)..];
            if self.overlong {
                self.overlong = !ended;
                continue;
            }
            let room = MAX_LINE - self.partial.len();
            self.partial
                .extend_from_slice(&piece[..piece.len().min(room)]);
            if ended || self.partial.len() == MAX_LINE {
                let raw = std::mem::take(&mut self.partial);
                if let Some(stage) = self.line(&raw) {
                    reached.push(stage);
                }
                // Keep the buffer (its capacity), emptied.
                self.partial = raw;
                self.partial.clear();
                self.overlong = !ended;
            }
        }
        reached
    }

    /// One line of the log (without its newline); the stage it newly shows.
    fn line(&mut self, raw: &[u8]) -> Option<Stage> {
        let line = strip_escapes(String::from_utf8_lossy(raw).trim_end());
        let line = line.trim();
        if !line.is_empty() {
            self.last_line = line.chars().take(MAX_LAST_LINE).collect();
        }
        stage_of(line).filter(|&stage| self.reach(stage))
    }

    /// Record `stage` as reached (known otherwise: ssh answered); whether it is new.
    pub fn reach(&mut self, stage: Stage) -> bool {
        if self.stage.is_some_and(|s| s >= stage) {
            return false;
        }
        self.stage = Some(stage);
        true
    }

    pub fn stage(&self) -> Option<Stage> {
        self.stage
    }

    /// The last non-empty line, escape sequences stripped (still guest text: show
    /// it through [`crate::guest_text::sanitize`]).
    pub fn last_line(&self) -> &str {
        &self.last_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of a Debian 12 cloud guest's serial log (hvbox's qemu engine, this
    /// host), in the order they came, with what lies between them left out.
    const DEBIAN_BOOT: &str = "\
[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1
[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-57-cloud-amd64 root=PARTUUID=4bd1e0a2 ro console=ttyS0
[   10.907820] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT +SELINUX)
\x1b[0m
Welcome to \x1b[1mDebian GNU/Linux 12 (bookworm)\x1b[0m!

[   45.025141] cloud-init[325]: Cloud-init v. 22.4.2 running 'init-local' at Sun, 06 Dec 2026 19:00:02 +0000. Up 44.66 seconds.
[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mnetwork-pre…get\x1b[0m - Preparation for Network.
\x1b[K[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mnetwork.target\x1b[0m - Network.
[   63.465337] cloud-init[415]: Cloud-init v. 22.4.2 running 'init' at Sun, 06 Dec 2026 19:00:20 +0000. Up 63.12 seconds.
[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mnetwork-online.target\x1b[0m - Network is Online.
         Starting \x1b[0;1;39mssh.service\x1b[0m - OpenBSD Secure Shell server...
[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m - OpenBSD Secure Shell server.
[   35.900473] cloud-init[509]: Cloud-init v. 22.4.2 running 'modules:config' at Sun, 06 Dec 2026 02:30:29 +0000. Up 35.58 seconds.
project login: [   45.439541] cloud-init[509]:   en_US.UTF-8...
";

    #[test]
    fn a_debian_boot_passes_each_stage_once_in_order() {
        let mut t = Tracker::default();
        let reached = t.feed(DEBIAN_BOOT.as_bytes());
        assert_eq!(
            reached,
            [
                Stage::Kernel,
                Stage::Systemd,
                Stage::Network,
                Stage::Sshd,
                Stage::CloudInit
            ]
        );
        assert_eq!(t.stage(), Some(Stage::CloudInit));
        assert_eq!(
            t.last_line(),
            "project login: [   45.439541] cloud-init[509]:   en_US.UTF-8..."
        );
    }

    #[test]
    fn the_stage_follows_the_lines_as_they_arrive() {
        let mut t = Tracker::default();
        let mut seen = Vec::new();
        for line in DEBIAN_BOOT.split_inclusive('\n') {
            // Each line arrives in two pieces, split mid-line.
            let (a, b) = line.split_at(line.len() / 2);
            assert_eq!(t.feed(a.as_bytes()), []);
            seen.push((t.feed(b.as_bytes()), t.stage()));
        }
        assert_eq!(seen[0], (vec![Stage::Kernel], Some(Stage::Kernel)));
        // The pre-network cloud-init run and `network-pre` leave the stage at systemd.
        let systemd_until = seen
            .iter()
            .rposition(|(_, s)| *s == Some(Stage::Systemd))
            .unwrap();
        assert!(DEBIAN_BOOT
            .lines()
            .nth(systemd_until)
            .unwrap()
            .contains("network-pre"));
    }

    #[test]
    fn escape_sequences_are_stripped_from_the_last_line() {
        let mut t = Tracker::default();
        t.feed(b"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mssh.service\x1b[0m - OpenBSD Secure Shell server.\r\n\n");
        assert_eq!(
            t.last_line(),
            "[  OK  ] Started ssh.service - OpenBSD Secure Shell server."
        );
        assert_eq!(t.stage(), Some(Stage::Sshd));
    }

    /// A guest that writes without newlines: hvbox keeps a bounded part of the
    /// line, and still follows the boot once lines end again.
    #[test]
    fn a_line_that_never_ends_keeps_memory_bounded() {
        let mut t = Tracker::default();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            assert_eq!(t.feed(&chunk), []);
            assert!(t.partial.len() <= MAX_LINE, "{}", t.partial.len());
            assert!(t.partial.capacity() <= 2 * MAX_LINE);
        }
        // Its first bytes were taken as a line, cut to what a terminal could show.
        assert_eq!(t.last_line(), "x".repeat(MAX_LAST_LINE));
        // A stage's mark in the overlong line's dropped part is not a line of its own.
        assert_eq!(t.feed(b"[    0.000000] Linux version 6.1.0"), []);
        assert_eq!(
            t.feed(b"\n[   10.9] systemd[1]: systemd 252\n"),
            [Stage::Systemd]
        );
        assert_eq!(t.last_line(), "[   10.9] systemd[1]: systemd 252");
        assert!(t.partial.is_empty());
        assert!(!t.overlong);
    }

    /// A line cut at [`MAX_LINE`] still shows the stage marked at its start, and
    /// a line exactly that long is taken whole.
    #[test]
    fn a_long_line_still_marks_its_stage() {
        let mut t = Tracker::default();
        let mut long = b"[    0.000000] Linux version 6.1.0 ".to_vec();
        long.resize(3 * MAX_LINE, b'y');
        assert_eq!(t.feed(&long), [Stage::Kernel]);
        assert!(t.overlong);
        let mut exact = b"[ 1.0] systemd[1]: x".to_vec();
        exact.resize(MAX_LINE, b'z');
        exact.extend_from_slice(b"\n");
        // The rest of the overlong line, up to its newline, is dropped.
        assert_eq!(t.feed(&exact), []);
        assert!(!t.overlong);
        assert_eq!(t.feed(&exact), [Stage::Systemd]);
        assert!(!t.overlong);
        assert!(t.partial.is_empty());
    }

    #[test]
    fn stages_never_go_back_and_may_be_skipped() {
        let mut t = Tracker::default();
        assert!(t.reach(Stage::Sshd));
        assert!(!t.reach(Stage::Sshd));
        assert_eq!(
            t.feed(b"[    0.000000] Linux version 6.1.0\n"),
            Vec::<Stage>::new()
        );
        assert_eq!(t.stage(), Some(Stage::Sshd));
        assert!(t.reach(Stage::Provisioning));
    }

    #[test]
    fn lines_that_mark_no_stage() {
        for line in [
            "[   45.0] cloud-init[325]: Cloud-init v. 22.4.2 running 'init-local' at Sun",
            "[  OK  ] Reached target network-pre.target - Preparation for Network.",
            "         Starting ssh.service - OpenBSD Secure Shell server...",
            "",
        ] {
            assert_eq!(stage_of(line), None, "{line}");
        }
        assert_eq!(
            stage_of("[  OK  ] Reached target Network."),
            Some(Stage::Network)
        );
        assert_eq!(
            stage_of("[  OK  ] Listening on ssh.socket - OpenBSD Secure Shell server socket."),
            Some(Stage::Sshd)
        );
    }
}
