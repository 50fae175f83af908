//! A tiny HTTP/1.1 server on 127.0.0.1 for integration tests: serves
//! configured bodies or error statuses and counts requests per path.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Clone)]
pub enum Route {
    Body(Vec<u8>),
    /// Body sent in `chunk`-sized pieces with `delay` between them, so
    /// concurrent clients overlap.
    Slow {
        body: Vec<u8>,
        chunk: usize,
        delay: Duration,
    },
    Status(u16),
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<HashMap<String, usize>>,
    user_agents: Mutex<Vec<String>>,
}

pub struct TestServer {
    port: u16,
    state: Arc<State>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        // The accept thread lives until the test process exits.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                thread::spawn(move || {
                    let _ = handle(stream, &state);
                });
            }
        });
        TestServer { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn set(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_string(), route);
    }

    pub fn hits(&self, path: &str) -> usize {
        *self.state.hits.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub fn user_agents(&self) -> Vec<String> {
        self.state.user_agents.lock().unwrap().clone()
    }
}

fn handle(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("user-agent") {
                state
                    .user_agents
                    .lock()
                    .unwrap()
                    .push(value.trim().to_string());
            }
        }
    }
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let route = state.routes.lock().unwrap().get(&path).cloned();
    let mut out = stream;
    match route {
        Some(Route::Body(body)) => {
            write_head(&mut out, 200, body.len())?;
            out.write_all(&body)?;
        }
        Some(Route::Slow { body, chunk, delay }) => {
            write_head(&mut out, 200, body.len())?;
            for piece in body.chunks(chunk) {
                out.write_all(piece)?;
                out.flush()?;
                thread::sleep(delay);
            }
        }
        Some(Route::Status(code)) => {
            let body = format!("status {code}\n");
            write_head(&mut out, code, body.len())?;
            out.write_all(body.as_bytes())?;
        }
        None => {
            write_head(&mut out, 404, 10)?;
            out.write_all(b"not found\n")?;
        }
    }
    out.flush()
}

fn write_head(out: &mut TcpStream, code: u16, len: usize) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )
}

/// Deterministic, non-repeating-looking test content of `len` bytes.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn digest_of(algorithm: hvbox_boxes::Algorithm, data: &[u8]) -> hvbox_boxes::Digest {
    let mut h = hvbox_boxes::Hasher::new(algorithm);
    h.update(data);
    h.finish()
}

/// Files directly inside `dir` (empty when it does not exist).
pub fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}
