//! The thread that stands between a vhost-user backend and the guest while the
//! device runs. It passes the backend's used-buffer signals on as the queues'
//! interrupts, through the transport as every device's are, so MSI-X masking and the
//! pending bits keep their meaning (a backend writing KVM's irqfds itself would
//! bypass both: masking is done in msix.rs, not in KVM). And it watches the socket:
//! a backend that hangs up is reported in the VMM's log at once.

use crate::virtio::device::VirtioInterrupt;
use crate::virtio::worker::{self, add_fd, clear_kick, epoll_with_stop, ErrorLog, Worker};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

const TOKEN_BACKEND: u64 = 1;
const TOKEN_FIRST_CALL: u64 = 2;

/// What the relay serves: the device's name for the log, the socket to watch (and
/// the flag that says the connection is gone), and each queue's call eventfd.
pub struct Relay {
    pub name: String,
    pub backend: UnixStream,
    pub lost: Arc<AtomicBool>,
    /// (queue index, the eventfd the backend signals for it).
    pub calls: Vec<(u16, EventFd)>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
}

impl Relay {
    pub fn spawn(self) -> io::Result<Worker<()>> {
        Worker::spawn(crate::confine::ThreadKind::VhostUserRelay, move |stop| {
            if let Err(e) = self.run(&stop) {
                eprintln!("vmm: {}: interrupt relay stopped: {e}", self.name);
            }
        })
    }

    fn run(&self, stop: &EventFd) -> io::Result<()> {
        let epoll = epoll_with_stop(stop)?;
        // Hang-ups only: the socket's data belongs to whoever sends requests.
        add_fd(&epoll, &self.backend, TOKEN_BACKEND, EventSet::READ_HANG_UP)?;
        for (i, (_, call)) in self.calls.iter().enumerate() {
            add_fd(&epoll, call, TOKEN_FIRST_CALL + i as u64, EventSet::IN)?;
        }
        let mut log = ErrorLog::new("vhost-user relay");
        let mut events = vec![EpollEvent::default(); self.calls.len() + 2];
        loop {
            let n = worker::wait(&epoll, &mut events)?;
            for event in &events[..n] {
                match event.data() {
                    worker::TOKEN_STOP => return Ok(()),
                    TOKEN_BACKEND => {
                        // Level-triggered: once seen, stop watching.
                        epoll.ctl(
                            ControlOperation::Delete,
                            self.backend.as_raw_fd(),
                            EpollEvent::default(),
                        )?;
                        // A connection already lost was cut here on purpose (and said so).
                        if !self.lost.swap(true, Ordering::AcqRel) {
                            eprintln!(
                                "vmm: {}: the backend hung up (did virtiofsd exit?); the guest's \
                                 requests to this filesystem will not be answered",
                                self.name
                            );
                        }
                    }
                    token => {
                        let (queue, call) = &self.calls[(token - TOKEN_FIRST_CALL) as usize];
                        clear_kick(call);
                        worker::notify(&*self.interrupt, *queue, &mut log);
                    }
                }
            }
        }
    }
}
