//! The serial console socket: every client sees the guest's COM1 output from the
//! moment it connects, and what it types goes to the guest's COM1 input.
//!
//! Output to clients never blocks a vCPU: a client that cannot keep up is dropped.

use crate::confine::ThreadKind;
use crate::devices::platform::Platform;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Clients attached to the console, written to by the UART.
pub type Clients = Arc<Mutex<Vec<UnixStream>>>;

/// The UART's output: the log (file or stdout) plus every attached client.
pub struct ConsoleOutput {
    pub log: Box<dyn Write + Send>,
    pub clients: Clients,
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut clients = self.clients.lock().expect("console clients lock");
        clients.retain(|c| send_without_blocking(c, buf));
        self.log.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }
}

/// Send all of `buf` or give up at once: false when the client is gone or cannot keep
/// up. (MSG_DONTWAIT rather than O_NONBLOCK, which would also make the same
/// connection's input reads non-blocking: the two handles share one file description.)
fn send_without_blocking(client: &UnixStream, mut buf: &[u8]) -> bool {
    use std::os::fd::AsRawFd;
    while !buf.is_empty() {
        // SAFETY: the fd is a live socket owned by `client`; `buf` is valid for its
        // length.
        let sent = unsafe {
            libc::send(
                client.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent <= 0 {
            return false;
        }
        buf = &buf[sent as usize..];
    }
    true
}

/// Listen on `path` and attach clients until the process ends.
pub fn serve(path: &Path, clients: Clients, platform: Arc<Mutex<Platform>>) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            crate::confine::enter_or_exit(ThreadKind::Console);
            for stream in listener.incoming().flatten() {
                if let Err(e) = attach(stream, &clients, &platform) {
                    eprintln!("vmm: console client: {e}");
                }
            }
        })?;
    Ok(())
}

fn attach(
    stream: UnixStream,
    clients: &Clients,
    platform: &Arc<Mutex<Platform>>,
) -> io::Result<()> {
    let writer = stream.try_clone()?;
    clients.lock().expect("console clients lock").push(writer);
    let platform = Arc::clone(platform);
    std::thread::Builder::new()
        .name("console-input".into())
        .spawn(move || {
            // Already under the console's list, inherited.
            crate::confine::name_thread(ThreadKind::Console);
            pump_input(stream, &platform)
        })?;
    Ok(())
}

/// Keystrokes from a client into the UART's receive FIFO.
fn pump_input(mut stream: UnixStream, platform: &Mutex<Platform>) {
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        let mut pending = &buf[..n];
        let mut waits = 0;
        while !pending.is_empty() {
            let taken = platform
                .lock()
                .expect("platform lock")
                .serial
                .enqueue_input(pending);
            pending = &pending[taken..];
            if taken == 0 {
                // A guest that does not read its UART for a second loses the input,
                // as a real one would overrun.
                waits += 1;
                if waits > 200 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}
