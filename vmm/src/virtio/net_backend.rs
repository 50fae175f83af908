//! Where a virtio-net device's frames go: passt over its UNIX stream socket (each
//! frame prefixed by its length, 4 bytes big-endian: QEMU's "stream" protocol), or a
//! TAP interface opened with a virtio-net header in front of each frame.
//!
//! Both are used without blocking: the device's worker polls the file descriptor.

use crate::config::NetBackend;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The virtio_net_hdr_v1 in front of every frame (virtio 1.x always has num_buffers).
pub const VNET_HDR_LEN: usize = 12;
/// The largest Ethernet frame carried: a 64 KiB IP packet under a VLAN-tagged header.
pub const MAX_FRAME_LEN: usize = 65535 + 14 + 4;
const LEN_PREFIX: usize = 4;
/// How much one read from the passt socket asks for.
const READ_CHUNK: usize = 64 << 10;

pub enum Backend {
    Passt(Passt),
    Tap(Tap),
}

impl Backend {
    pub fn open(config: &NetBackend) -> io::Result<Backend> {
        match config {
            NetBackend::Passt(path) => Passt::connect(path).map(Backend::Passt),
            NetBackend::Tap(name) => Tap::open(name).map(Backend::Tap),
        }
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Backend::Passt(p) => p.sock.as_raw_fd(),
            Backend::Tap(t) => t.file.as_raw_fd(),
        }
    }

    /// The next received frame, behind 12 zero bytes where the virtio header goes;
    /// `None` when no whole frame can be read now.
    pub fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            Backend::Passt(p) => p.recv(),
            Backend::Tap(t) => t.recv(),
        }
    }

    /// Sends one frame given with its virtio header in front.
    pub fn send(&mut self, frame: &mut [u8]) -> io::Result<()> {
        match self {
            Backend::Passt(p) => p.send(&frame[VNET_HDR_LEN..]),
            Backend::Tap(t) => t.send(frame),
        }
    }

    /// Pushes out bytes that an earlier [`Backend::send`] could not.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Backend::Passt(p) => p.flush(),
            Backend::Tap(_) => Ok(()),
        }
    }

    /// Bytes are waiting for the socket to take them (wait until it is writable).
    pub fn has_unsent(&self) -> bool {
        match self {
            Backend::Passt(p) => p.out_start < p.out.len(),
            Backend::Tap(_) => false,
        }
    }
}

/// A connection to passt. Frames can arrive split anywhere, even inside the length
/// prefix, so received bytes collect in `inbuf` until a whole frame is there.
pub struct Passt {
    sock: UnixStream,
    /// Room for a partial frame plus one read.
    inbuf: Box<[u8]>,
    /// `inbuf[in_start..in_end]` is received and not yet taken.
    in_start: usize,
    in_end: usize,
    /// Bytes still to throw away of a frame too large to deliver.
    skip: usize,
    out: Vec<u8>,
    out_start: usize,
}

impl Passt {
    pub fn connect(path: &Path) -> io::Result<Passt> {
        let sock = UnixStream::connect(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting to passt at {}: {e}", path.display()),
            )
        })?;
        Ok(Passt::from_stream(sock))
    }

    pub fn from_stream(sock: UnixStream) -> Passt {
        Passt {
            sock,
            inbuf: vec![0; LEN_PREFIX + MAX_FRAME_LEN + READ_CHUNK].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            skip: 0,
            out: Vec::new(),
            out_start: 0,
        }
    }

    fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Ok(Some(frame));
            }
            // What is left is less than a whole frame, so at least READ_CHUNK is free
            // after moving it to the front.
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
            let got = socket_io(&self.sock, |fd| {
                let buf = &mut self.inbuf[self.in_end..];
                // SAFETY: `buf` is valid for writes of its length; `fd` is our socket.
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) }
            });
            match got {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "passt closed the connection",
                    ))
                }
                Ok(n) => self.in_end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the next whole frame out of `inbuf`.
    fn take_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            let avail = &self.inbuf[self.in_start..self.in_end];
            if self.skip > 0 {
                let n = self.skip.min(avail.len());
                self.in_start += n;
                self.skip -= n;
                if self.skip > 0 {
                    return None;
                }
                continue;
            }
            let prefix: [u8; LEN_PREFIX] = avail.get(..LEN_PREFIX)?.try_into().unwrap();
            let len = u32::from_be_bytes(prefix) as usize;
            if len == 0 || len > MAX_FRAME_LEN {
                // Not a frame a guest could take; skipping it keeps the stream in step.
                self.in_start += LEN_PREFIX;
                self.skip = len;
                continue;
            }
            let payload = avail.get(LEN_PREFIX..LEN_PREFIX + len)?;
            let mut frame = Vec::with_capacity(VNET_HDR_LEN + len);
            frame.resize(VNET_HDR_LEN, 0);
            frame.extend_from_slice(payload);
            self.in_start += LEN_PREFIX + len;
            return Some(frame);
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.out
            .extend_from_slice(&(frame.len() as u32).to_be_bytes());
        self.out.extend_from_slice(frame);
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.out_start < self.out.len() {
            let sent = socket_io(&self.sock, |fd| {
                let buf = &self.out[self.out_start..];
                // SAFETY: `buf` is valid for reads of its length; `fd` is our socket.
                unsafe {
                    libc::send(
                        fd,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                }
            });
            match sent {
                Ok(n) => self.out_start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_start = 0;
        Ok(())
    }
}

/// Runs a send/recv call, retrying when a signal interrupts it.
fn socket_io(sock: &UnixStream, mut call: impl FnMut(RawFd) -> isize) -> io::Result<usize> {
    loop {
        let n = call(sock.as_raw_fd());
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A TAP interface. Each read(2) gives one frame and each write(2) takes one, both
/// behind a 12-byte virtio-net header.
pub struct Tap {
    file: File,
    name: String,
    buf: Vec<u8>,
}

impl Tap {
    pub fn open(name: &str) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TAP name {name:?} must be 1 to 15 bytes"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| tap_error(name, "opening /dev/net/tun", e))?;
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which `ifr` is.
        ioctl_result(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) })
            .map_err(|e| tap_error(name, "attaching to the TAP interface", e))?;
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int.
        ioctl_result(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) })
            .map_err(|e| tap_error(name, "setting the virtio header size", e))?;
        // No offloads: we offer the guest none, so every frame is whole and checksummed.
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        ioctl_result(unsafe {
            libc::ioctl(file.as_raw_fd(), libc::TUNSETOFFLOAD, 0 as libc::c_ulong)
        })
        .map_err(|e| tap_error(name, "turning offloads off", e))?;
        let actual: Vec<u8> = ifr
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(Tap {
            file,
            name: String::from_utf8_lossy(&actual).into_owned(),
            buf: vec![0; VNET_HDR_LEN + MAX_FRAME_LEN],
        })
    }

    /// The interface's name (the kernel fills in a `%d` pattern).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            match self.file.read(&mut self.buf) {
                Ok(n) if n > VNET_HDR_LEN => {
                    let mut frame = self.buf[..n].to_vec();
                    // With no offloads negotiated the guest expects flags and GSO type 0.
                    frame[..VNET_HDR_LEN].fill(0);
                    return Ok(Some(frame));
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, frame: &mut [u8]) -> io::Result<()> {
        // The guest may not ask for checksum or segmentation offloads it did not
        // negotiate; a zero header makes the kernel take the frame as it is.
        frame[..VNET_HDR_LEN].fill(0);
        match self.file.write(frame) {
            Ok(_) => Ok(()),
            // A full TAP queue drops the frame, as a busy NIC would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn ioctl_result(rc: libc::c_int) -> io::Result<()> {
    match rc {
        rc if rc < 0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// Explains a failure to open TAP `name`, saying what to do about missing rights.
pub fn tap_error(name: &str, step: &str, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            ": this needs CAP_NET_ADMIN, or a TAP interface created beforehand for this \
             user with `sudo ip tuntap add {name} mode tap user $USER`"
        ),
        Some(libc::ENOENT) if step.contains("/dev/net/tun") => {
            ": the tun module is not loaded (`sudo modprobe tun`)".into()
        }
        Some(libc::EBUSY) => ": the interface is in use by another process".into(),
        _ => String::new(),
    };
    io::Error::new(e.kind(), format!("TAP {name}: {step}: {e}{hint}"))
}
