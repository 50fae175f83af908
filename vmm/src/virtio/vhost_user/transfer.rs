//! Moving a backend's state through a pipe (vhost-user SET_DEVICE_STATE_FD), bounded
//! in size and time: the backend writes or reads its end on a thread of its own, and
//! one that stops doing so must not hang the VMM.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// (read end, write end), close-on-exec. Blocking: the backend's end must be (it
/// takes a would-block for the end of the transfer); ours is made non-blocking
/// when used, its waits going through poll.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two ints it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits until `fd` is ready for `events`, or fails once `deadline` passes.
fn wait(fd: &OwnedFd, events: libc::c_short, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the backend stopped transferring",
            ));
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return Ok(()),
            0 => continue,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Sets O_NONBLOCK (a pipe the backend handed back may be blocking).
fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, integer arguments only.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Everything until end-of-file, at most `max` bytes, all within `limit`.
pub fn read_all(fd: OwnedFd, max: usize, limit: Duration) -> io::Result<Vec<u8>> {
    nonblocking(&fd)?;
    let deadline = Instant::now() + limit;
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        // SAFETY: `chunk` is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        match n {
            0 => return Ok(data),
            n if n > 0 => {
                data.extend_from_slice(&chunk[..n as usize]);
                if data.len() > max {
                    return Err(io::Error::other(format!("more than {max} bytes")));
                }
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => wait(&fd, libc::POLLIN, deadline)?,
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(e),
                }
            }
        }
    }
}

/// Writes all of `data`, then closes `fd` (end-of-file tells the backend it has
/// everything), within `limit`.
pub fn write_all(fd: OwnedFd, mut data: &[u8], limit: Duration) -> io::Result<()> {
    nonblocking(&fd)?;
    let deadline = Instant::now() + limit;
    while !data.is_empty() {
        // SAFETY: `data` is valid for reads of its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => wait(&fd, libc::POLLOUT, deadline)?,
            io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};

    #[test]
    fn a_state_is_read_to_its_end_and_written_whole() {
        let (r, w) = pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let mut w = File::from(w);
            w.write_all(&[7u8; 200_000]).unwrap();
        });
        let got = read_all(r, 1 << 20, Duration::from_secs(5)).unwrap();
        writer.join().unwrap();
        assert_eq!(got, vec![7u8; 200_000]);

        let (r, w) = pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            File::from(r).read_to_end(&mut all).unwrap();
            all
        });
        write_all(w, &[9u8; 300_000], Duration::from_secs(5)).unwrap();
        assert_eq!(reader.join().unwrap(), vec![9u8; 300_000]);
    }

    #[test]
    fn a_silent_or_overlong_backend_is_cut_off() {
        let (r, _w) = pipe().unwrap();
        let started = Instant::now();
        let err = read_all(r, 1 << 20, Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));

        let (r, w) = pipe().unwrap();
        File::from(w).write_all(&[1u8; 5000]).unwrap();
        let err = read_all(r, 4096, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.to_string(), "more than 4096 bytes");

        // Nobody reads: the pipe fills, then the limit passes.
        let (_r, w) = pipe().unwrap();
        let err = write_all(w, &[0u8; 1 << 20], Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
