//! The block worker's life: serve the request queue on every kick, and when a
//! write finds the host's file system full, hold that request (the guest sees no
//! error), leave the queue alone and retry every second or on `resume`, as QEMU
//! does with its default `werror=enospc`. A pause for a snapshot serves what is
//! queued and puts a held request back in the available ring.

use super::health::{free_space, DiskHealth, HostErrorLog};
use super::{Disk, RequestError};
use crate::memory::GuestMemory;
use crate::virtio::device::{ActiveQueue, VirtioInterrupt};
use crate::virtio::worker::{
    add_fd, clear_kick, complete, drain_queue_until, epoll_with_stop, halt_reason, notify,
    wait_at_most, ErrorLog, Halt, TOKEN_STOP,
};
use std::io;
use std::time::{Duration, Instant};
use virtio_queue::{DescriptorChain, QueueT};
use vmm_sys_util::epoll::{EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// How often a held request is tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

const TOKEN_KICK: u64 = 1;
const TOKEN_WAKE: u64 = 2;

pub fn run(
    stop: EventFd,
    mem: GuestMemory,
    active: &mut ActiveQueue,
    interrupt: &dyn VirtioInterrupt,
    disk: &mut Disk,
    health: &DiskHealth,
) -> io::Result<()> {
    let epoll = epoll_with_stop(&stop)?;
    add_fd(&epoll, &active.kick, TOKEN_KICK, EventSet::IN)?;
    add_fd(&epoll, health.wake_fd(), TOKEN_WAKE, EventSet::IN)?;
    let mut events = vec![EpollEvent::default(); 4];
    let mut logs = Logs {
        guest: ErrorLog::new("virtio-blk"),
        host: HostErrorLog::new(health.path()),
    };
    // The request waiting for space, and since when.
    let mut held: Option<(DescriptorChain<&GuestMemory>, Instant)> = None;
    loop {
        // Also runs once at start: the driver may have queued requests already.
        serve_round(disk, &mem, active, interrupt, health, &mut held, &mut logs);
        let timeout = match held {
            Some(_) => RETRY_EVERY.as_millis() as i32,
            None => -1,
        };
        let n = wait_at_most(&epoll, &mut events, timeout)?;
        for ev in &events[..n] {
            match ev.data() {
                TOKEN_STOP => {
                    if halt_reason(&stop) == Halt::AfterDraining {
                        serve_round(disk, &mem, active, interrupt, health, &mut held, &mut logs);
                        // A request waiting for space goes back to the available ring,
                        // to be served again when the device runs again.
                        if held.take().is_some() {
                            let back = active.queue.next_avail().wrapping_sub(1);
                            active.queue.set_next_avail(back);
                        }
                    }
                    // A reset drops the held request with the queue: nothing waits.
                    health.forget();
                    return Ok(());
                }
                TOKEN_WAKE => {
                    let _ = health.wake_fd().read();
                }
                // While a request is held the queue waits; the kick is seen then.
                _ => clear_kick(&active.kick),
            }
        }
    }
}

struct Logs {
    guest: ErrorLog,
    host: HostErrorLog,
}

/// Retries the held request, then (if none is held any more) serves what the driver
/// queued, and interrupts the driver if anything was used.
fn serve_round<'m>(
    disk: &mut Disk,
    mem: &'m GuestMemory,
    active: &mut ActiveQueue,
    interrupt: &dyn VirtioInterrupt,
    health: &DiskHealth,
    held: &mut Option<(DescriptorChain<&'m GuestMemory>, Instant)>,
    logs: &mut Logs,
) {
    let mut used_any = false;
    if let Some((chain, since)) = held.take() {
        let head = chain.head_index();
        match serve_one(
            disk,
            mem,
            chain.clone(),
            health,
            &mut logs.guest,
            &mut logs.host,
        ) {
            Some(len) => {
                health.space_back(since.elapsed());
                complete(
                    mem,
                    &mut active.queue,
                    head,
                    len,
                    &mut logs.guest,
                    &mut used_any,
                );
            }
            None => *held = Some((chain, since)),
        }
    }
    if held.is_none() {
        let host = &mut logs.host;
        let (notify_now, newly_held) = drain_queue_until(
            mem,
            &mut active.queue,
            &mut logs.guest,
            |chain, log| match serve_one(disk, mem, chain.clone(), health, log, host) {
                Some(len) => Ok(len),
                None => Err(chain),
            },
        );
        used_any |= notify_now;
        *held = newly_held.map(|chain| (chain, Instant::now()));
    }
    if used_any {
        notify(interrupt, active.index, &mut logs.guest);
    }
}

/// Serves one request; its used length, or None when it must be held because the
/// host's file system is full.
fn serve_one(
    disk: &mut Disk,
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    health: &DiskHealth,
    guest_log: &mut ErrorLog,
    host_log: &mut HostErrorLog,
) -> Option<u32> {
    let done = disk.serve(mem, chain);
    match done.error {
        Some(RequestError::DiskFull(_)) => {
            health.disk_full(free_space(&disk.file));
            return None;
        }
        // Said once, when the flush first failed: never lost to the rate limit.
        Some(e @ RequestError::FlushFailed(_)) => eprintln!(
            "vmm: virtio-blk: {}: {e}; the host may have dropped data the guest wrote, so every later flush of this disk fails too (as QEMU does)",
            health.path().display()
        ),
        Some(RequestError::FlushLatched) => {}
        Some(e) if e.is_host() => host_log.report(e),
        Some(e) => guest_log.report(e),
        None => {}
    }
    Some(done.used)
}
