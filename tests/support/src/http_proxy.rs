//! A small HTTP forward proxy on 127.0.0.1, for tests of what honours
//! `http_proxy`: it takes plain-HTTP requests in absolute form (`GET
//! http://host:port/path HTTP/1.1`), passes each to its server in origin form, the
//! answer back, and records the URLs it was asked for. One request per connection;
//! no CONNECT (https), no request bodies.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct HttpProxy {
    port: u16,
    requested: Arc<Mutex<Vec<String>>>,
}

impl HttpProxy {
    pub fn start() -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("bound").port();
        let requested = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requested);
        // The accept thread lives until the test process exits.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let _ = forward(client, &log);
                });
            }
        });
        HttpProxy { port, requested }
    }

    /// What to set `http_proxy` to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The absolute URLs requested through the proxy, in order.
    pub fn requested(&self) -> Vec<String> {
        self.requested.lock().expect("not poisoned").clone()
    }
}

fn forward(client: TcpStream, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let (method, target, version) = (
        words.next().unwrap_or_default().to_string(),
        words.next().unwrap_or_default().to_string(),
        words.next().unwrap_or("HTTP/1.1").to_string(),
    );
    let mut headers = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let name = h.split(':').next().unwrap_or_default().to_ascii_lowercase();
        // Hop-by-hop headers are the proxy's, not the server's.
        if !matches!(
            name.as_str(),
            "connection" | "proxy-connection" | "proxy-authorization" | "keep-alive"
        ) {
            headers.push_str(&h);
        }
    }
    let mut out = client;
    let Some(rest) = target.strip_prefix("http://") else {
        return out.write_all(
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    };
    log.lock().expect("not poisoned").push(target.clone());
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut server = match TcpStream::connect(authority) {
        Ok(s) => s,
        Err(_) => {
            return out.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
        }
    };
    write!(
        server,
        "{method} {path} {version}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    std::io::copy(&mut server, &mut out)?;
    Ok(())
}
