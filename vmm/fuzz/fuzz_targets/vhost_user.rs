//! The vhost-user frontend reading a backend's replies: feature and protocol
//! feature negotiation, the queue count, REPLY_ACK acknowledgements, GET_VRING_BASE,
//! through a whole connection's life (connect, share memory, start and stop the
//! queues). The backend is a thread on the other end of a socketpair that reads
//! each request and answers with the input's next reply — any code, flags, size
//! and body, or silence, or a hang-up; once the input runs out it answers as a
//! well-behaved backend would.
//!
//! Checks: nothing panics or hangs (a silent backend is cut off at the reply
//! limit); what the frontend accepts adds up.
#![no_main]

use hvbox_vmm::memory::{create_guest_memory_in, Backing};
use hvbox_vmm::virtio::vhost_user::{Connection, Ring};
use hvbox_vmm_fuzz::ignore_sigpipe;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;

const QUEUES: usize = 2;
const LIMIT: Duration = Duration::from_millis(50);
const VERSION: u32 = 0x1;
const REPLY: u32 = 0x4;
const NEED_REPLY: u32 = 0x8;
const GET_FEATURES: u32 = 1;
const GET_VRING_BASE: u32 = 11;
const GET_PROTOCOL_FEATURES: u32 = 15;
const GET_QUEUE_NUM: u32 = 17;
const VERSION_1: u64 = 1 << 32;
const PROTOCOL_FEATURES: u64 = 1 << 30;

#[derive(Debug, Arbitrary)]
enum Body {
    Value(u64),
    State { index: u32, num: u32 },
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Answer {
    Reply {
        /// None: the request's own code.
        code: Option<u32>,
        /// None: VERSION | REPLY.
        flags: Option<u32>,
        /// None: the body's length.
        size: Option<u32>,
        body: Body,
    },
    Silence,
    HangUp,
}

#[derive(Debug, Arbitrary)]
struct Input {
    answers: Vec<Answer>,
    driver_features: u64,
    ring_size: u16,
    base: u16,
}

/// What a good backend answers to `code`.
fn good_reply(code: u32) -> Vec<u8> {
    let value: u64 = match code {
        GET_FEATURES => VERSION_1 | PROTOCOL_FEATURES | 1 << 28 | 1 << 29,
        GET_PROTOCOL_FEATURES => u64::MAX,
        GET_QUEUE_NUM => QUEUES as u64,
        _ => 0,
    };
    let body = if code == GET_VRING_BASE {
        [0u8; 8].to_vec()
    } else {
        value.to_le_bytes().to_vec()
    };
    message(code, VERSION | REPLY, body.len() as u32, &body)
}

fn message(code: u32, flags: u32, size: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(12 + body.len());
    m.extend_from_slice(&code.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// Reads requests and answers those that want an answer, until the socket closes.
fn backend(mut socket: UnixStream, answers: &[Answer]) {
    let mut answers = answers.iter().take(64);
    loop {
        let mut header = [0u8; 12];
        if socket.read_exact(&mut header).is_err() {
            return;
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        let (code, flags, size) = (word(0), word(4), word(8));
        let mut body = vec![0u8; size.min(4096) as usize];
        if socket.read_exact(&mut body).is_err() {
            return;
        }
        let wants = matches!(
            code,
            GET_FEATURES | GET_PROTOCOL_FEATURES | GET_QUEUE_NUM | GET_VRING_BASE
        ) || flags & NEED_REPLY != 0;
        if !wants {
            continue;
        }
        let reply = match answers.next() {
            None => good_reply(code),
            Some(Answer::Reply {
                code: c,
                flags: f,
                size: s,
                body,
            }) => {
                let body = match body {
                    Body::Value(v) => v.to_le_bytes().to_vec(),
                    Body::State { index, num } => [index.to_le_bytes(), num.to_le_bytes()].concat(),
                    Body::Raw(raw) => raw.iter().copied().take(512).collect(),
                };
                message(
                    c.unwrap_or(code),
                    f.unwrap_or(VERSION | REPLY),
                    s.unwrap_or(body.len() as u32),
                    &body,
                )
            }
            // The frontend's watchdog shuts the socket down: the next read ends.
            Some(Answer::Silence) => continue,
            Some(Answer::HangUp) => {
                let _ = socket.shutdown(Shutdown::Both);
                return;
            }
        };
        if socket.write_all(&reply).is_err() {
            return;
        }
    }
}

fuzz_target!(|input: Input| {
    ignore_sigpipe();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let memory = create_guest_memory_in(2 << 20, Backing::SharedMemfd).unwrap();
    let kicks: Vec<EventFd> = (0..QUEUES).map(|_| EventFd::new(0).unwrap()).collect();
    let calls: Vec<EventFd> = (0..QUEUES).map(|_| EventFd::new(0).unwrap()).collect();
    std::thread::scope(|s| {
        let answers = &input.answers;
        s.spawn(move || backend(theirs, answers));
        let Ok(mut connection) = Connection::over(ours, QUEUES, LIMIT) else {
            return;
        };
        assert_ne!(connection.features() & VERSION_1, 0);
        if connection.set_mem_table(&memory).is_err() {
            return;
        }
        let rings: Vec<Ring> = (0..QUEUES)
            .map(|index| Ring {
                index,
                size: input.ring_size,
                base: input.base,
                desc: 0x1000 * index as u64,
                avail: 0x1000 * index as u64 + 0x400,
                used: 0x1000 * index as u64 + 0x800,
                kick: &kicks[index],
                call: &calls[index],
            })
            .collect();
        if connection.start(input.driver_features, &rings).is_err() {
            return;
        }
        if let Ok(bases) = connection.stop(&[0, 1]) {
            assert_eq!(bases.len(), 2);
        }
        // Dropping the connection closes the socket; the backend thread ends.
    });
});
