//! The served socket's bounds, through a real UNIX socket and a stand-in for the
//! VMM's main loop.

use super::*;
use crate::control::Request;
use std::path::PathBuf;
use std::time::Instant;

/// A control socket in `dir` whose main loop answers `status` with `running` and
/// any other request with `ok`.
fn serving(dir: &Path, limits: Limits) -> PathBuf {
    let path = dir.join("control.sock");
    let (tx, rx) = mpsc::channel::<Envelope>();
    serve_with(&path, tx, limits).unwrap();
    std::thread::spawn(move || {
        for (request, reply) in rx {
            let answer = match request {
                Request::Status => "running",
                _ => "ok",
            };
            let _ = reply.send(answer.into());
        }
    });
    path
}

fn connect(path: &Path) -> BufReader<UnixStream> {
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    BufReader::new(stream)
}

fn ask(client: &mut BufReader<UnixStream>, line: &[u8]) -> String {
    // A server that refuses may close before all of it is written; its reply says why.
    let _ = client.get_mut().write_all(&[line, b"\n"].concat());
    reply(client)
}

fn reply(client: &mut BufReader<UnixStream>) -> String {
    let mut reply = String::new();
    if let Err(e) = client.read_line(&mut reply) {
        return format!("(read failed: {e})");
    }
    reply.trim_end().to_string()
}

/// The server closed its end: end of stream, or a reset for what it left unread.
fn closed(client: &mut BufReader<UnixStream>) -> bool {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn a_line_up_to_the_limit_is_served_and_a_longer_one_is_refused_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = serving(dir.path(), Limits::default());
    let mut client = connect(&path);
    let longest = format!("{:<4096}", "status");
    assert_eq!(ask(&mut client, longest.as_bytes()), "running");
    assert_eq!(
        ask(&mut client, &[b'x'; 64 << 10]),
        "error: request longer than 4096 bytes"
    );
    assert!(closed(&mut client), "the connection stayed open");
    // The VMM serves the next client as before.
    assert_eq!(ask(&mut connect(&path), b"status"), "running");
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout_and_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_clients: 1,
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let path = serving(dir.path(), limits);
    let connected = Instant::now();
    let mut silent = connect(&path);
    // Accepted in order: the silent client holds the only place.
    let mut refused = connect(&path);
    assert_eq!(
        reply(&mut refused),
        "error: busy: 1 clients are connected already; try again"
    );
    assert!(closed(&mut refused));
    assert!(closed(&mut silent), "the silent client was kept");
    assert!(connected.elapsed() >= limits.idle_timeout);
    assert_eq!(ask(&mut connect(&path), b"status"), "running");
}

#[test]
fn clients_past_the_limit_are_refused_until_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_clients: 2,
        ..Limits::default()
    };
    let path = serving(dir.path(), limits);
    let mut first = connect(&path);
    let mut second = connect(&path);
    assert_eq!(ask(&mut first, b"status"), "running");
    assert_eq!(ask(&mut second, b"stop 5"), "ok");
    let mut third = connect(&path);
    assert!(reply(&mut third).starts_with("error: busy: 2 clients"));
    assert!(closed(&mut third));
    drop(first);
    // Its thread sees the end of stream and gives the place back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = connect(&path);
        let answer = ask(&mut next, b"status");
        if answer == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "no place came free: {answer}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The second client is still served all along.
    assert_eq!(ask(&mut second, b"status"), "running");
}

#[test]
fn a_huge_stop_is_an_error_reply_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = serving(dir.path(), Limits::default());
    let mut client = connect(&path);
    assert_eq!(
        ask(&mut client, b"stop 18446744073709551615"),
        "error: stop takes at most 86400 seconds (a day), not 18446744073709551615"
    );
    assert_eq!(ask(&mut client, b"status"), "running");
}
