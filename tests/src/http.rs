//! A real HTTP/1.1 file server on 127.0.0.1 for download tests: GET of files in one
//! folder, with a request count per path so tests can prove what was (not) fetched.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct HttpServer {
    pub port: u16,
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl HttpServer {
    /// Serve the files in `root` until the test process ends.
    pub fn serve(root: PathBuf) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let counts = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                let counts = Arc::clone(&counts);
                std::thread::spawn(move || {
                    let _ = handle(stream, &root, &counts);
                });
            }
        });
        HttpServer { port, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn requests_for(&self, path: &str) -> usize {
        *self
            .requests
            .lock()
            .unwrap()
            .get(&format!("/{path}"))
            .unwrap_or(&0)
    }
}

fn handle(
    stream: TcpStream,
    root: &std::path::Path,
    counts: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
    let mut out = stream;
    let name = path.trim_start_matches('/');
    let file = (!name.contains("..") && !name.is_empty())
        .then(|| std::fs::File::open(root.join(name)).ok())
        .flatten();
    let Some(mut file) = file else {
        return out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    let len = file.metadata()?.len();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}
