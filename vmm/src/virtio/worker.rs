//! What every device's worker thread shares: starting and stopping the thread, the
//! loop that drains a queue, and quiet logging of guest mistakes.

use crate::confine::ThreadKind;
use crate::memory::GuestMemory;
use crate::virtio::device::{ActivateError, ActiveQueue, VirtioInterrupt};
use std::io;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A device's worker thread and the eventfd that stops it. The thread gives back
/// what it owned (a disk, a NIC backend) when it ends, so the device can start a
/// new worker after a reset.
pub struct Worker<T> {
    stop: EventFd,
    thread: JoinHandle<T>,
}

impl<T: Send + 'static> Worker<T> {
    /// Runs `run` on a new thread; `run` must return once the eventfd it is given
    /// becomes readable.
    /// The thread is named after `kind` and runs under its seccomp list when the run
    /// confines its threads.
    pub fn spawn(
        kind: ThreadKind,
        run: impl FnOnce(EventFd) -> T + Send + 'static,
    ) -> io::Result<Worker<T>> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let stop_for_thread = stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name(kind.name().into())
            .spawn(move || {
                crate::confine::enter_or_exit(kind);
                run(stop_for_thread)
            })?;
        Ok(Worker { stop, thread })
    }

    /// Stops the thread and returns what it owned; `None` if it panicked.
    pub fn stop(self) -> Option<T> {
        self.end(Halt::Now)
    }

    /// Stops the thread once it has served what the driver queued (see [`Halt`]).
    pub fn pause(self) -> Option<T> {
        self.end(Halt::AfterDraining)
    }

    fn end(self, how: Halt) -> Option<T> {
        // Writing to a fresh eventfd cannot fail.
        let _ = self.stop.write(how as u64);
        self.thread.join().ok()
    }
}

/// Why a worker's stop eventfd fired; the value written to it says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// The driver reset the device: leave the rings alone.
    Now = 1,
    /// A pause for a snapshot (the vCPUs are already stopped): first serve every
    /// chain the driver made available, so the used ring and the queue indices are
    /// final, then give back anything taken but not served.
    AfterDraining = 2,
}

/// What the stop eventfd asks (read once it is readable).
pub fn halt_reason(stop: &EventFd) -> Halt {
    match stop.read() {
        Ok(v) if v == Halt::AfterDraining as u64 => Halt::AfterDraining,
        _ => Halt::Now,
    }
}

/// Tokens for the worker's epoll set.
pub const TOKEN_STOP: u64 = 0;

/// An epoll set that starts with the stop eventfd registered as [`TOKEN_STOP`].
pub fn epoll_with_stop(stop: &EventFd) -> io::Result<Epoll> {
    let epoll = Epoll::new()?;
    add_fd(&epoll, stop, TOKEN_STOP, EventSet::IN)?;
    Ok(epoll)
}

pub fn add_fd(epoll: &Epoll, fd: &impl AsRawFd, token: u64, events: EventSet) -> io::Result<()> {
    epoll.ctl(
        ControlOperation::Add,
        fd.as_raw_fd(),
        EpollEvent::new(events, token),
    )
}

/// Waits for events, retrying when a signal interrupts the wait.
pub fn wait(epoll: &Epoll, events: &mut [EpollEvent]) -> io::Result<usize> {
    wait_at_most(epoll, events, -1)
}

/// [`wait`] for at most `timeout_ms` milliseconds (-1: no limit); 0 events when it
/// passes.
pub fn wait_at_most(
    epoll: &Epoll,
    events: &mut [EpollEvent],
    timeout_ms: i32,
) -> io::Result<usize> {
    loop {
        match epoll.wait(timeout_ms, events) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Clears a kick eventfd (non-blocking: a spurious wakeup finds it already clear).
pub fn clear_kick(kick: &EventFd) {
    let _ = kick.read();
}

/// The activation's queues in index order, which must be exactly 0..N.
pub fn take_queues<const N: usize>(
    mut queues: Vec<ActiveQueue>,
) -> Result<[ActiveQueue; N], ActivateError> {
    let got = queues.len();
    queues.sort_by_key(|q| q.index);
    let in_order = queues
        .iter()
        .enumerate()
        .all(|(i, q)| usize::from(q.index) == i);
    match queues.try_into() {
        Ok(queues) if in_order => Ok(queues),
        _ => Err(ActivateError::Queues { got, need: N }),
    }
}

/// Prints the first few guest mistakes a worker sees, then stays quiet: a guest must
/// not be able to flood the VMM's log.
pub struct ErrorLog {
    device: &'static str,
    printed: u32,
}

impl ErrorLog {
    const MAX: u32 = 16;

    pub fn new(device: &'static str) -> ErrorLog {
        ErrorLog { device, printed: 0 }
    }

    pub fn report(&mut self, what: impl std::fmt::Display) {
        // Fuzzing makes nothing but guest mistakes, millions of them.
        if cfg!(fuzzing) {
            return;
        }
        if self.printed < Self::MAX {
            eprintln!("vmm: {}: {what}", self.device);
            self.printed += 1;
            if self.printed == Self::MAX {
                eprintln!("vmm: {}: further guest errors not shown", self.device);
            }
        }
    }
}

/// Serves every chain the driver made available, with driver notifications
/// suppressed meanwhile; `serve` returns the used length. Returns whether the
/// driver must be interrupted.
pub fn drain_queue(
    mem: &GuestMemory,
    queue: &mut Queue,
    log: &mut ErrorLog,
    mut serve: impl FnMut(DescriptorChain<&GuestMemory>, &mut ErrorLog) -> u32,
) -> bool {
    let (notify, held) = drain_queue_until(mem, queue, log, |chain, log| Ok(serve(chain, log)));
    debug_assert!(held.is_none());
    notify
}

/// [`drain_queue`] for a device that may have to hold a request: `serve` gives the
/// chain back (`Err`) to leave it uncompleted, and the queue is then left alone
/// (notifications stay off) until the caller completes the held chain and drains
/// again. Returns whether the driver must be interrupted, and the held chain.
pub fn drain_queue_until<'m>(
    mem: &'m GuestMemory,
    queue: &mut Queue,
    log: &mut ErrorLog,
    mut serve: impl FnMut(
        DescriptorChain<&'m GuestMemory>,
        &mut ErrorLog,
    ) -> Result<u32, DescriptorChain<&'m GuestMemory>>,
) -> (bool, Option<DescriptorChain<&'m GuestMemory>>) {
    let mut used_any = false;
    loop {
        if let Err(e) = queue.disable_notification(mem) {
            log.report(format_args!("queue rings unusable: {e}"));
            return (used_any, None);
        }
        let mut popped = 0u32;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            popped += 1;
            let head = chain.head_index();
            match serve(chain, log) {
                Ok(len) => complete(mem, queue, head, len, log, &mut used_any),
                Err(held) => {
                    let notify = used_any && queue.needs_notification(mem).unwrap_or(true);
                    return (notify, Some(held));
                }
            }
        }
        match queue.enable_notification(mem) {
            // The driver added chains after our last look.
            Ok(true) if popped > 0 => continue,
            // More is said to be available but nothing could be popped: the avail
            // index is corrupt. Spinning would not help; the next kick retries.
            Ok(true) => {
                log.report("available ring index runs ahead of the queue size");
                break;
            }
            Ok(false) => break,
            Err(e) => {
                log.report(format_args!("queue rings unusable: {e}"));
                break;
            }
        }
    }
    (
        used_any && queue.needs_notification(mem).unwrap_or(true),
        None,
    )
}

/// Puts chain `head` in the used ring with `len` bytes written.
pub fn complete(
    mem: &GuestMemory,
    queue: &mut Queue,
    head: u16,
    len: u32,
    log: &mut ErrorLog,
    used_any: &mut bool,
) {
    match queue.add_used(mem, head, len) {
        Ok(()) => *used_any = true,
        Err(e) => log.report(format_args!("cannot return chain {head}: {e}")),
    }
}

/// Tells the driver that queue `index` has used buffers.
pub fn notify(interrupt: &dyn VirtioInterrupt, index: u16, log: &mut ErrorLog) {
    if let Err(e) = interrupt.notify_queue(index) {
        log.report(format_args!("raising the queue {index} interrupt: {e}"));
    }
}

/// The whole life of a one-queue device's worker: serve the queue whenever the
/// driver kicks it, until `stop` (after a last round when it is a pause).
pub fn run_single_queue(
    stop: EventFd,
    mem: GuestMemory,
    active: &mut ActiveQueue,
    interrupt: &dyn VirtioInterrupt,
    log: &mut ErrorLog,
    mut serve: impl FnMut(&GuestMemory, DescriptorChain<&GuestMemory>, &mut ErrorLog) -> u32,
) -> io::Result<()> {
    const TOKEN_KICK: u64 = 1;
    let epoll = epoll_with_stop(&stop)?;
    add_fd(&epoll, &active.kick, TOKEN_KICK, EventSet::IN)?;
    let mut events = vec![EpollEvent::default(); 4];
    loop {
        // Also runs once at start: the driver may have queued requests already.
        if drain_queue(&mem, &mut active.queue, log, |chain, log| {
            serve(&mem, chain, log)
        }) {
            notify(interrupt, active.index, log);
        }
        let n = wait(&epoll, &mut events)?;
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_STOP => {
                    if halt_reason(&stop) == Halt::AfterDraining
                        && drain_queue(&mem, &mut active.queue, log, |chain, log| {
                            serve(&mem, chain, log)
                        })
                    {
                        notify(interrupt, active.index, log);
                    }
                    return Ok(());
                }
                _ => clear_kick(&active.kick),
            }
        }
    }
}
