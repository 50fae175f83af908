//! Serving the control socket: a thread accepts, a thread per client reads its lines.
//!
//! Whoever can reach the socket can stop the VM anyway, but a confused or stuck
//! client must not take the VMM down with it: a line is read only up to
//! [`Limits::max_line`], only [`Limits::max_clients`] clients are served at once
//! (others are told so and closed), and a client that says nothing for
//! [`Limits::idle_timeout`] is closed, freeing its place.

use super::{parse, Envelope, Request, StateFile};
use crate::confine::ThreadKind;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// How long a client waits for the VMM's main loop to answer (it wakes for each request).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `save` may take to answer: writing memory runs at disk speed.
const SAVE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest request line, in bytes, without its newline.
    pub max_line: usize,
    /// Clients served at once; one more is refused.
    pub max_clients: usize,
    /// How long a client may stay silent (or not read its reply) before it is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 4096,
            max_clients: 8,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Listen on `path` with the default [`Limits`]; requests reach the VMM's main loop
/// through `requests`.
/// `T` is whatever the main loop waits on: requests arrive as `T::from(envelope)`.
pub fn serve<T: From<Envelope> + Send + 'static>(
    path: &Path,
    requests: Sender<T>,
) -> io::Result<()> {
    serve_with(path, requests, Limits::default())
}

pub fn serve_with<T: From<Envelope> + Send + 'static>(
    path: &Path,
    requests: Sender<T>,
    limits: Limits,
) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            crate::confine::enter_or_exit(ThreadKind::Control);
            accept_loop(&listener, &requests, limits)
        })?;
    Ok(())
}

fn accept_loop<T: From<Envelope> + Send + 'static>(
    listener: &UnixListener,
    requests: &Sender<T>,
    limits: Limits,
) {
    let clients = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            // Out of file descriptors, say: let a client finish before trying again.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let Some(slot) = Slot::take(&clients, limits.max_clients) else {
            // A fresh socket's send buffer is empty, so this cannot block the loop.
            let _ = writeln!(
                stream,
                "error: busy: {} clients are connected already; try again",
                limits.max_clients
            );
            continue;
        };
        // A thread per client: one that connects and says nothing must not keep a
        // `stop` from the next one waiting. If the thread cannot start, the slot
        // and the stream drop with its closure.
        let requests = requests.clone();
        let _ = std::thread::Builder::new()
            .name("control-client".into())
            .spawn(move || {
                // Already under the control thread's list, inherited.
                crate::confine::name_thread(ThreadKind::Control);
                serve_client(&stream, &requests, limits);
                // The place is free before the client sees the connection close, so
                // a client that waits for the close can take it at once.
                drop(slot);
                drop(stream);
            });
    }
}

/// One place among the clients being served, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(clients: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(clients)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serve one connected client until it hangs up, goes silent past the idle timeout
/// or sends a line that is too long. Public for the fuzz target.
#[doc(hidden)]
pub fn serve_client<T: From<Envelope>>(stream: &UnixStream, requests: &Sender<T>, limits: Limits) {
    let timeouts = [
        stream.set_read_timeout(Some(limits.idle_timeout)),
        stream.set_write_timeout(Some(limits.idle_timeout)),
    ];
    if timeouts.iter().any(Result::is_err) {
        return;
    }
    let mut reader = BufReader::new(FdReader {
        stream,
        received: None,
    });
    let mut writer = stream;
    loop {
        let reply = match read_line(&mut reader, limits.max_line) {
            Ok(Some(line)) => answer(&line, reader.get_mut().received.take(), requests),
            // End of stream, or silent past the idle timeout.
            Ok(None) | Err(LineError::Unreadable) => return,
            Err(LineError::TooLong) => {
                // What follows is the rest of that line, not a request: close.
                let _ = writeln!(
                    writer,
                    "error: request longer than {} bytes",
                    limits.max_line
                );
                return;
            }
        };
        let Some(reply) = reply else { return };
        if writeln!(writer, "{reply}").is_err() {
            return;
        }
    }
}

/// Reads the stream with recvmsg, keeping the last file descriptor a message
/// carried (a `save`'s state file); others are closed as they arrive.
struct FdReader<'a> {
    stream: &'a UnixStream,
    received: Option<std::fs::File>,
}

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, file) = self.stream.recv_with_fd(buf).map_err(io::Error::from)?;
        if file.is_some() {
            self.received = file;
        }
        Ok(n)
    }
}

/// The reply to one request line (with the descriptor that came with it); None once
/// the VMM's main loop has gone.
fn answer<T: From<Envelope>>(
    line: &str,
    file: Option<std::fs::File>,
    requests: &Sender<T>,
) -> Option<String> {
    let request = match parse(line) {
        Ok(Request::Save { then, .. }) => match file {
            Some(file) => Request::Save {
                then,
                to: Some(StateFile(Arc::new(file))),
            },
            None => return Some(
                "error: save needs the state file's descriptor in the same message (SCM_RIGHTS)"
                    .into(),
            ),
        },
        Ok(request) => request,
        Err(e) => return Some(format!("error: {e}")),
    };
    // Saving writes all of guest memory: seconds per GiB, not the usual instant.
    let timeout = match request {
        Request::Save { .. } => SAVE_TIMEOUT,
        _ => ANSWER_TIMEOUT,
    };
    let (tx, rx) = mpsc::channel();
    requests.send(T::from((request, tx))).ok()?;
    Some(
        rx.recv_timeout(timeout)
            .unwrap_or_else(|_| "error: the VMM did not answer".into()),
    )
}

#[derive(Debug)]
enum LineError {
    TooLong,
    /// A read failed: the idle timeout passed, or the client reset the connection.
    Unreadable,
}

/// One line without its newline, reading at most `max` bytes and the newline;
/// None at the end of the stream. A last line without a newline still counts.
fn read_line(reader: &mut impl BufRead, max: usize) -> Result<Option<String>, LineError> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(|_| LineError::Unreadable)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(LineError::TooLong);
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

#[cfg(test)]
mod tests;
