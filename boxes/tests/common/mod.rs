//! A small HTTP/1.1 server on 127.0.0.1 for integration tests: serves configured
//! bodies (with Range requests), error statuses, and scripted faults — dropped
//! connections, short and long bodies, HTML pages, stalls — and records requests.

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
    /// `body`, answering the n-th request with `replies[n]` (the last one repeats),
    /// honouring `Range: bytes=N-` unless a reply says otherwise.
    Script {
        body: Vec<u8>,
        replies: Vec<Reply>,
    },
}

/// How one request of a [`Route::Script`] is answered.
#[derive(Clone, Debug)]
pub enum Reply {
    /// The body, or the requested range of it (206).
    Full,
    Status(u16),
    /// Headers for the whole (range of the) body, `n` bytes of it, then the
    /// connection closes: fewer bytes than Content-Length.
    DropAfter(usize),
    /// Content-Length of the body, but the body and then these bytes.
    Extra(Vec<u8>),
    /// Content-Length of `n` bytes, the first `n` of the body: a server that
    /// announces and sends less than the file.
    Prefix(usize),
    /// Content-Length of `n` bytes (less than the body), then the whole body.
    Overlong(usize),
    /// 200 with the whole body's Content-Length, its first `n` bytes, then the
    /// connection closes; Range is ignored.
    Truncate(usize),
    /// A 200 text/html error page.
    Html,
    /// The same page sent as application/octet-stream.
    HtmlAsBinary,
    /// The whole body with 200, ignoring Range.
    IgnoreRange,
    /// Headers, then silence for this long, then close.
    Stall(Duration),
    /// The body in `chunk`-sized pieces with `delay` between them.
    Slow {
        chunk: usize,
        delay: Duration,
    },
}

pub const HTML_PAGE: &[u8] =
    b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head><body>Try later</body></html>\n";

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<HashMap<String, usize>>,
    ranges: Mutex<HashMap<String, Vec<Option<String>>>>,
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

    /// Total requests to any path.
    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    /// The Range header of each request to `path`, in order.
    pub fn ranges(&self, path: &str) -> Vec<Option<String>> {
        self.state
            .ranges
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
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
    let mut range = None;
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
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let n = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n - 1
    };
    state
        .ranges
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(range.clone());
    let route = state.routes.lock().unwrap().get(&path).cloned();
    let mut out = stream;
    match route {
        Some(Route::Body(body)) => {
            write_head(&mut out, 200, body.len(), "application/octet-stream", None)?;
            out.write_all(&body)?;
        }
        Some(Route::Slow { body, chunk, delay }) => {
            write_head(&mut out, 200, body.len(), "application/octet-stream", None)?;
            for piece in body.chunks(chunk) {
                out.write_all(piece)?;
                out.flush()?;
                thread::sleep(delay);
            }
        }
        Some(Route::Status(code)) => {
            let body = format!("status {code}\n");
            write_head(&mut out, code, body.len(), "text/plain", None)?;
            out.write_all(body.as_bytes())?;
        }
        Some(Route::Script { body, replies }) => {
            let reply = replies
                .get(n)
                .or(replies.last())
                .cloned()
                .unwrap_or(Reply::Full);
            scripted(&mut out, &body, range.as_deref(), reply)?;
        }
        None => {
            write_head(&mut out, 404, 10, "text/plain", None)?;
            out.write_all(b"not found\n")?;
        }
    }
    out.flush()
}

/// The start of a `bytes=N-` range.
fn range_start(range: Option<&str>) -> Option<usize> {
    range?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

fn scripted(
    out: &mut TcpStream,
    body: &[u8],
    range: Option<&str>,
    reply: Reply,
) -> std::io::Result<()> {
    let start = range_start(range).filter(|&s| s <= body.len());
    // The part a Range-honouring reply sends, and its head.
    let send_part = |out: &mut TcpStream, limit: Option<usize>| -> std::io::Result<()> {
        let from = start.unwrap_or(0);
        let part = &body[from..];
        match start {
            Some(s) => write_head(
                out,
                206,
                part.len(),
                "application/octet-stream",
                Some(format!(
                    "bytes {s}-{}/{}",
                    body.len().saturating_sub(1),
                    body.len()
                )),
            )?,
            None => write_head(out, 200, part.len(), "application/octet-stream", None)?,
        }
        let n = limit.unwrap_or(part.len()).min(part.len());
        out.write_all(&part[..n])?;
        out.flush()
    };
    match reply {
        Reply::Full => send_part(out, None),
        Reply::DropAfter(n) => send_part(out, Some(n)),
        Reply::Status(code) => {
            let text = format!("status {code}\n");
            write_head(out, code, text.len(), "text/plain", None)?;
            out.write_all(text.as_bytes())
        }
        Reply::Extra(extra) => {
            write_head(out, 200, body.len(), "application/octet-stream", None)?;
            out.write_all(body)?;
            out.write_all(&extra)
        }
        Reply::Prefix(n) => {
            write_head(out, 200, n, "application/octet-stream", None)?;
            out.write_all(&body[..n.min(body.len())])
        }
        Reply::Overlong(n) => {
            write_head(out, 200, n, "application/octet-stream", None)?;
            out.write_all(body)
        }
        Reply::Truncate(n) => {
            write_head(out, 200, body.len(), "application/octet-stream", None)?;
            out.write_all(&body[..n.min(body.len())])
        }
        Reply::Html => {
            write_head(out, 200, HTML_PAGE.len(), "text/html; charset=utf-8", None)?;
            out.write_all(HTML_PAGE)
        }
        Reply::HtmlAsBinary => {
            write_head(out, 200, HTML_PAGE.len(), "application/octet-stream", None)?;
            out.write_all(HTML_PAGE)
        }
        Reply::IgnoreRange => {
            write_head(out, 200, body.len(), "application/octet-stream", None)?;
            out.write_all(body)
        }
        Reply::Stall(d) => {
            write_head(out, 200, body.len(), "application/octet-stream", None)?;
            out.flush()?;
            thread::sleep(d);
            Ok(())
        }
        Reply::Slow { chunk, delay } => {
            write_head(out, 200, body.len(), "application/octet-stream", None)?;
            for piece in body.chunks(chunk) {
                out.write_all(piece)?;
                out.flush()?;
                thread::sleep(delay);
            }
            Ok(())
        }
    }
}

fn write_head(
    out: &mut TcpStream,
    code: u16,
    len: usize,
    content_type: &str,
    content_range: Option<String>,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let range = content_range
        .map(|r| format!("Content-Range: {r}\r\n"))
        .unwrap_or_default();
    write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {len}\r\nContent-Type: {content_type}\r\nAccept-Ranges: bytes\r\nETag: \"v1\"\r\n{range}Connection: close\r\n\r\n"
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

/// Fast retries and short timeouts for tests.
pub fn quick_options() -> hvbox_boxes::FetchOptions {
    hvbox_boxes::FetchOptions {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        attempts: 4,
        backoff: Duration::from_millis(20),
        ..Default::default()
    }
}

/// A store in `dir` with [`quick_options`].
pub fn quick_store(dir: &std::path::Path) -> hvbox_boxes::Store {
    hvbox_boxes::Store::open(dir.to_path_buf()).with_options(quick_options())
}

/// Whether a host tool is on PATH.
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
