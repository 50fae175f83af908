//! A time limit on a conversation with a backend. vhost-user messages are answered
//! in microseconds by a healthy backend, but a hung one would block the caller for
//! good (the vhost crate retries a timed-out receive forever), and the caller may be
//! a vCPU thread holding the PCI bus. So a watchdog thread shuts the socket down when
//! the limit passes: the blocked receive then returns end-of-file, the caller gets an
//! error, and the connection is treated as lost from then on.

use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

/// Runs `work`, shutting `socket` down if it takes longer than `limit`. Returns what
/// `work` returned and whether the limit passed (then the socket is unusable, and
/// whatever `work` returned came from its being shut down).
pub fn bounded<T>(socket: &UnixStream, limit: Duration, work: impl FnOnce() -> T) -> (T, bool) {
    let (done, finished) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let watchdog = scope.spawn(move || match finished.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Wakes a receive blocked on it, in whichever thread.
                let _ = socket.shutdown(Shutdown::Both);
                true
            }
            _ => false,
        });
        let out = work();
        drop(done);
        let expired = watchdog.join().unwrap_or(true);
        (out, expired)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Instant;

    #[test]
    fn a_quick_answer_leaves_the_socket_alone() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (n, expired) = bounded(&ours, Duration::from_secs(5), || 7);
        assert_eq!((n, expired), (7, false));
        // Still connected: the peer sees no end-of-file.
        theirs.set_nonblocking(true).unwrap();
        let err = theirs.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_receive_that_never_returns_is_cut_off_at_the_limit() {
        let (ours, _silent_peer) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let (read, expired) = bounded(&ours, Duration::from_millis(200), || {
            (&ours).read(&mut [0u8; 16])
        });
        assert!(expired);
        // End-of-file, as if the peer had gone.
        assert_eq!(read.unwrap(), 0);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}
