//! The control socket: whatever bytes a client sends, as the VMM serves them (line
//! framing and its length bound, request parsing, replies). The VMM's main loop is
//! played by a thread that answers every request.
//!
//! Checks: nothing panics; every reply is one line the protocol allows; there are
//! no more replies than lines sent (plus one for a line that is too long).
#![no_main]

use hvbox_vmm::control::{self, serve_client, Envelope, Limits, Request};
use hvbox_vmm_fuzz::ignore_sigpipe;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

const LIMITS: Limits = Limits {
    max_line: 256,
    max_clients: 1,
    idle_timeout: Duration::from_secs(2),
};

fuzz_target!(|input: &[u8]| {
    ignore_sigpipe();
    // The parser alone, on every line.
    for line in String::from_utf8_lossy(input).lines() {
        if let Ok(Request::Stop { grace }) = control::parse(line) {
            assert!(grace <= control::MAX_STOP_GRACE);
        }
    }

    let (vmm_side, mut client) = UnixStream::pair().unwrap();
    let (requests, main_loop) = mpsc::channel::<Envelope>();
    std::thread::scope(|s| {
        s.spawn(move || {
            for (request, reply) in main_loop {
                let _ = reply.send(match request {
                    Request::Status => "running".to_string(),
                    Request::Stats => "exits 0".to_string(),
                    Request::Stop { .. }
                    | Request::Kill
                    | Request::Resume
                    | Request::Save { .. }
                    | Request::Continue => "ok".to_string(),
                });
            }
        });
        // Read while writing: replies to many short lines outgrow the socket buffer.
        let mut reading = client.try_clone().unwrap();
        let reader = s.spawn(move || {
            let mut replies = String::new();
            let _ = reading.read_to_string(&mut replies);
            replies
        });
        s.spawn(move || {
            let _ = client.write_all(input);
            let _ = client.shutdown(Shutdown::Write);
        });
        serve_client(&vmm_side, &requests, LIMITS);
        drop(requests);
        drop(vmm_side);
        let replies = reader.join().unwrap();
        let lines = input.split(|&b| b == b'\n').count();
        let mut count = 0;
        for reply in replies.lines() {
            count += 1;
            assert!(
                reply == "running"
                    || reply == "ok"
                    || reply == "exits 0"
                    || reply.starts_with("error: "),
                "{reply:?}"
            );
        }
        assert!(count <= lines + 1, "{count} replies to {lines} lines");
        assert!(replies.is_empty() || replies.ends_with('\n'));
    });
});
