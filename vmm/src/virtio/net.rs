//! virtio-net with one queue pair (rx 0, tx 1) over passt or a TAP interface.
//!
//! The worker thread waits on the tx kick, the rx kick (the driver added receive
//! buffers), the backend's fd and the stop eventfd. When the guest has no receive
//! buffers left, the worker stops reading the backend until the driver adds some,
//! so frames queue up in passt or the kernel rather than in the VMM.

use crate::memory::GuestMemory;
use crate::virtio::chain::{self, ChainError, Limits, Segment};
use crate::virtio::device::{
    ActivateError, Activation, DeviceState, PausedQueues, VirtioDevice, VirtioInterrupt,
};
use crate::virtio::worker::{
    add_fd, clear_kick, epoll_with_stop, halt_reason, notify, take_queues, wait, ErrorLog, Halt,
    Worker, TOKEN_STOP,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::*;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::Bytes;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

pub use crate::config::NetBackend;
pub use crate::virtio::net_backend::{tap_error, Backend, Passt, Tap, MAX_FRAME_LEN, VNET_HDR_LEN};

pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
const QUEUE_SIZE: u16 = 256;
const TX_LIMITS: Limits = Limits {
    max_descriptors: QUEUE_SIZE as usize,
    max_bytes: (VNET_HDR_LEN + MAX_FRAME_LEN) as u64,
};
const RX_LIMITS: Limits = Limits {
    max_descriptors: QUEUE_SIZE as usize,
    max_bytes: u32::MAX as u64,
};
/// virtio_net_config up to max_virtqueue_pairs: mac, status, max_virtqueue_pairs.
const CONFIG_LEN: usize = 10;
/// Where num_buffers sits in the virtio header.
const NUM_BUFFERS_OFFSET: usize = 10;

const TOKEN_RX_KICK: u64 = 1;
const TOKEN_TX_KICK: u64 = 2;
const TOKEN_BACKEND: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("transmit chain {head} has {len} bytes, less than the 12-byte virtio header")]
    ShortTx { head: u16, len: usize },
    #[error("receive chain {head} has room for {room} bytes, less than the 12-byte virtio header")]
    ShortRx { head: u16, room: u64 },
    #[error("reading transmit chain {head}: {error}")]
    GuestMemory { head: u16, error: io::Error },
}

/// A receive chain taken from the queue, waiting for a frame.
#[derive(Debug)]
struct RxChain {
    head: u16,
    /// The available ring position it was taken from.
    avail_at: u16,
    segments: Vec<Segment>,
    room: usize,
}

/// The frame (virtio header included) a transmit chain carries.
pub fn read_tx_frame(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
) -> Result<Vec<u8>, FrameError> {
    let layout = chain::inspect(&chain, TX_LIMITS)?;
    layout.require_readable_only()?;
    layout.check_memory(mem)?;
    let head = layout.head;
    let mut reader = chain.reader(mem).map_err(|_| ChainError::Empty { head })?;
    let mut frame = Vec::with_capacity(layout.readable_bytes as usize);
    reader
        .read_to_end(&mut frame)
        .map_err(|error| FrameError::GuestMemory { head, error })?;
    if frame.len() < VNET_HDR_LEN {
        return Err(FrameError::ShortTx {
            head,
            len: frame.len(),
        });
    }
    Ok(frame)
}

fn rx_chain(
    mem: &GuestMemory,
    chain: &DescriptorChain<&GuestMemory>,
) -> Result<RxChain, FrameError> {
    let layout = chain::inspect(chain, RX_LIMITS)?;
    layout.require_writable_only()?;
    layout.check_memory(mem)?;
    // The header must fit in the first buffer of a frame; any buffer may be first.
    if layout.writable_bytes < VNET_HDR_LEN as u64 {
        return Err(FrameError::ShortRx {
            head: layout.head,
            room: layout.writable_bytes,
        });
    }
    Ok(RxChain {
        head: layout.head,
        avail_at: 0,
        room: layout.writable_bytes as usize,
        segments: layout.segments,
    })
}

/// Copies `data` into the chain's buffers, in order.
fn write_segments(
    mem: &GuestMemory,
    segments: &[Segment],
    mut data: &[u8],
) -> vm_memory::GuestMemoryResult<()> {
    for s in segments {
        if data.is_empty() {
            break;
        }
        let n = data.len().min(s.len as usize);
        mem.write_slice(&data[..n], s.addr)?;
        data = &data[n..];
    }
    Ok(())
}

/// The queues and backend of an active NIC. Its methods are the whole data path;
/// [`NetWorker::run`] only waits for events and calls them.
pub struct NetWorker {
    mem: GuestMemory,
    rx: Queue,
    tx: Queue,
    backend: Backend,
    /// The driver accepted VIRTIO_NET_F_MRG_RXBUF: a frame may span chains.
    mergeable: bool,
    interrupt: Arc<dyn VirtioInterrupt>,
    link_up: Arc<AtomicBool>,
    /// A frame from the backend waiting for receive buffers.
    pending: Option<Vec<u8>>,
    /// Receive chains taken from the queue and not yet filled, and their total room.
    rx_chains: VecDeque<RxChain>,
    rx_room: usize,
    /// The backend failed (passt exited): frames from the guest are dropped.
    dead: bool,
    /// The MAC to announce to the backend before anything else (after a restore).
    announce: Option<[u8; 6]>,
    log: ErrorLog,
}

impl NetWorker {
    pub fn new(
        mem: GuestMemory,
        rx: Queue,
        tx: Queue,
        backend: Backend,
        mergeable: bool,
        interrupt: Arc<dyn VirtioInterrupt>,
        link_up: Arc<AtomicBool>,
    ) -> NetWorker {
        NetWorker {
            mem,
            rx,
            tx,
            backend,
            mergeable,
            interrupt,
            link_up,
            pending: None,
            rx_chains: VecDeque::new(),
            rx_room: 0,
            dead: false,
            announce: None,
            log: ErrorLog::new("virtio-net"),
        }
    }

    /// Announce `mac` to the backend when the worker starts (see [`announcement`]).
    pub fn announcing(mut self, mac: [u8; 6]) -> NetWorker {
        self.announce = Some(mac);
        self
    }

    pub fn into_backend(self) -> Backend {
        self.backend
    }

    /// The backend and the receive and transmit queues.
    pub fn into_parts(self) -> (Backend, Queue, Queue) {
        (self.backend, self.rx, self.tx)
    }

    /// The end of a pause for a snapshot: frames the driver queued are sent (their
    /// chains used), and receive chains taken but not filled go back to the
    /// available ring, so the queue indices account for every chain.
    pub fn finish_for_pause(&mut self) {
        self.process_tx();
        let Some(first) = self.rx_chains.front().map(|c| c.avail_at) else {
            return;
        };
        let taken = self.rx_chains.len() as u16;
        let in_a_row = self
            .rx_chains
            .iter()
            .enumerate()
            .all(|(i, c)| c.avail_at == first.wrapping_add(i as u16));
        if in_a_row && first.wrapping_add(taken) == self.rx.next_avail() {
            self.rx.set_next_avail(first);
        } else {
            // An unusable chain was returned between them (a driver mistake): these
            // cannot be put back without it, so they are returned empty instead.
            let mut used = false;
            for chain in std::mem::take(&mut self.rx_chains) {
                self.add_used(true, chain.head, 0, &mut used);
            }
            if used {
                notify(&*self.interrupt, RX_QUEUE, &mut self.log);
            }
        }
        self.rx_chains.clear();
        self.rx_room = 0;
    }

    /// A frame waits for the driver to add receive buffers.
    pub fn rx_blocked(&self) -> bool {
        self.pending.is_some()
    }

    /// Moves frames from the backend into receive buffers until either runs out.
    pub fn process_rx(&mut self) {
        let mut used = false;
        loop {
            let frame = match self.pending.take() {
                Some(frame) => frame,
                None if self.dead => break,
                None => match self.backend.recv() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        self.backend_failed(e);
                        break;
                    }
                },
            };
            if let Err(frame) = self.deliver(frame, &mut used) {
                self.pending = Some(frame);
                break;
            }
        }
        if used && self.rx.needs_notification(&self.mem).unwrap_or(true) {
            notify(&*self.interrupt, RX_QUEUE, &mut self.log);
        }
    }

    /// Puts one frame into receive buffers, or gives it back when there are too few.
    fn deliver(&mut self, mut frame: Vec<u8>, used: &mut bool) -> Result<(), Vec<u8>> {
        loop {
            let enough = match self.mergeable {
                true => self.rx_room >= frame.len(),
                false => !self.rx_chains.is_empty(),
            };
            if enough {
                break;
            }
            match self.next_rx_chain(used) {
                Some(chain) => {
                    self.rx_room += chain.room;
                    self.rx_chains.push_back(chain);
                }
                None => return Err(frame),
            }
        }
        // The chains the frame takes: the first alone without mergeable buffers.
        let (mut count, mut room) = (0, 0);
        for chain in &self.rx_chains {
            count += 1;
            room += chain.room;
            if !self.mergeable || room >= frame.len() {
                break;
            }
        }
        if room < frame.len() {
            // Without mergeable buffers a frame must fit one chain; the driver sized
            // its buffers for the MTU, so this one cannot be delivered.
            self.log.report(format_args!(
                "dropped a {}-byte frame: receive buffers of {room} bytes",
                frame.len()
            ));
            return Ok(());
        }
        frame[NUM_BUFFERS_OFFSET..VNET_HDR_LEN].copy_from_slice(&(count as u16).to_le_bytes());
        let mut rest = &frame[..];
        for _ in 0..count {
            let chain = self.rx_chains.pop_front().expect("counted above");
            self.rx_room -= chain.room;
            let n = rest.len().min(chain.room);
            if let Err(e) = write_segments(&self.mem, &chain.segments, &rest[..n]) {
                self.log
                    .report(format_args!("writing receive chain {}: {e}", chain.head));
            }
            rest = &rest[n..];
            self.add_used(true, chain.head, n as u32, used);
        }
        Ok(())
    }

    /// The next usable receive chain; unusable ones go back to the driver empty.
    fn next_rx_chain(&mut self, used: &mut bool) -> Option<RxChain> {
        loop {
            let avail_at = self.rx.next_avail();
            let chain = self.rx.pop_descriptor_chain(&self.mem)?;
            let head = chain.head_index();
            match rx_chain(&self.mem, &chain) {
                Ok(chain) => return Some(RxChain { avail_at, ..chain }),
                Err(e) => {
                    self.log.report(e);
                    self.add_used(true, head, 0, used);
                }
            }
        }
    }

    fn add_used(&mut self, rx: bool, head: u16, len: u32, used: &mut bool) {
        let queue = if rx { &mut self.rx } else { &mut self.tx };
        match queue.add_used(&self.mem, head, len) {
            Ok(()) => *used = true,
            Err(e) => self
                .log
                .report(format_args!("cannot return chain {head}: {e}")),
        }
    }

    /// Sends every frame the driver queued, unless the backend cannot take more: then
    /// the rest waits for the backend to become writable.
    pub fn process_tx(&mut self) {
        let mut used = false;
        'rounds: loop {
            if let Err(e) = self.tx.disable_notification(&self.mem) {
                self.log
                    .report(format_args!("transmit rings unusable: {e}"));
                break;
            }
            let mut popped = 0u32;
            loop {
                if !self.dead {
                    if let Err(e) = self.backend.flush() {
                        self.backend_failed(e);
                    } else if self.backend.has_unsent() {
                        // Notifications stay off: the backend becoming writable, not
                        // the driver, resumes us.
                        break 'rounds;
                    }
                }
                let Some(chain) = self.tx.pop_descriptor_chain(&self.mem) else {
                    break;
                };
                popped += 1;
                let head = chain.head_index();
                match read_tx_frame(&self.mem, chain) {
                    Ok(mut frame) if !self.dead => {
                        if let Err(e) = self.backend.send(&mut frame) {
                            self.backend_failed(e);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.log.report(e),
                }
                self.add_used(false, head, 0, &mut used);
            }
            match self.tx.enable_notification(&self.mem) {
                Ok(true) if popped > 0 => continue,
                Ok(true) => {
                    self.log
                        .report("transmit avail index runs ahead of the queue size");
                    break;
                }
                Ok(false) => break,
                Err(e) => {
                    self.log
                        .report(format_args!("transmit rings unusable: {e}"));
                    break;
                }
            }
        }
        if used && self.tx.needs_notification(&self.mem).unwrap_or(true) {
            notify(&*self.interrupt, TX_QUEUE, &mut self.log);
        }
    }

    /// The backend is gone (passt exited): report the link down and drop traffic.
    fn backend_failed(&mut self, e: io::Error) {
        eprintln!("vmm: virtio-net: backend failed, link down: {e}");
        self.dead = true;
        self.pending = None;
        self.link_up.store(false, Ordering::SeqCst);
        if let Err(e) = self.interrupt.notify_config() {
            self.log
                .report(format_args!("raising the config interrupt: {e}"));
        }
    }

    /// What to wait for on the backend's fd.
    pub fn backend_interest(&self) -> EventSet {
        let mut events = EventSet::empty();
        if !self.dead {
            if self.pending.is_none() {
                events |= EventSet::IN;
            }
            if self.backend.has_unsent() {
                events |= EventSet::OUT;
            }
        }
        events
    }

    /// Serves the queues until `stop`; gives itself back (the backend, the queues).
    pub fn run(mut self, stop: EventFd, rx_kick: EventFd, tx_kick: EventFd) -> NetWorker {
        if let Err(e) = self.event_loop(&stop, &rx_kick, &tx_kick) {
            eprintln!("vmm: virtio-net: worker stopped: {e}");
        }
        self
    }

    fn event_loop(
        &mut self,
        stop: &EventFd,
        rx_kick: &EventFd,
        tx_kick: &EventFd,
    ) -> io::Result<()> {
        let epoll = epoll_with_stop(stop)?;
        add_fd(&epoll, rx_kick, TOKEN_RX_KICK, EventSet::IN)?;
        add_fd(&epoll, tx_kick, TOKEN_TX_KICK, EventSet::IN)?;
        let mut registered = EventSet::empty();
        let mut events = vec![EpollEvent::default(); 8];
        if let Some(mac) = self.announce.take() {
            if let Err(e) = self.backend.send(&mut announcement(mac)) {
                self.backend_failed(e);
            }
        }
        self.process_tx();
        self.process_rx();
        loop {
            registered = self.watch_backend(&epoll, registered)?;
            let n = wait(&epoll, &mut events)?;
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_STOP => {
                        if halt_reason(stop) == Halt::AfterDraining {
                            self.finish_for_pause();
                        }
                        return Ok(());
                    }
                    TOKEN_RX_KICK => {
                        clear_kick(rx_kick);
                        self.process_rx();
                    }
                    TOKEN_TX_KICK => {
                        clear_kick(tx_kick);
                        self.process_tx();
                    }
                    _ => {
                        let set = ev.event_set();
                        if set.contains(EventSet::OUT) {
                            self.process_tx();
                        }
                        if set.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
                            self.process_rx();
                        }
                    }
                }
            }
        }
    }

    /// Updates the backend's registration. A fd with nothing to wait for leaves the
    /// set altogether: epoll reports hang-ups even for an empty event mask, which
    /// would spin while receive is blocked.
    fn watch_backend(&self, epoll: &Epoll, registered: EventSet) -> io::Result<EventSet> {
        let wanted = self.backend_interest();
        if wanted == registered {
            return Ok(registered);
        }
        let op = match (registered.is_empty(), wanted.is_empty()) {
            (true, _) => ControlOperation::Add,
            (false, true) => ControlOperation::Delete,
            (false, false) => ControlOperation::Modify,
        };
        epoll.ctl(
            op,
            self.backend.fd(),
            EpollEvent::new(wanted, TOKEN_BACKEND),
        )?;
        Ok(wanted)
    }
}

/// What the guest saw of a NIC: its MAC and whether the link was up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub mac: [u8; 6],
    pub link_up: bool,
}

/// The virtio-net device.
pub struct Net {
    mac: [u8; 6],
    link_up: Arc<AtomicBool>,
    /// Here while no worker runs; the worker owns it while the device is active.
    backend: Option<Backend>,
    worker: Option<Worker<NetWorker>>,
    /// The link was down when saved and is up on this backend: the driver is told
    /// once the device runs.
    link_changed: bool,
    /// Restored: the backend is new and has not seen the guest's MAC yet.
    announce: bool,
}

impl Net {
    pub fn new(mac: [u8; 6], backend: NetBackend) -> io::Result<Net> {
        Ok(Net::with_backend(mac, Backend::open(&backend)?))
    }

    /// A NIC over a backend opened by the caller (tests use a socketpair).
    pub fn with_backend(mac: [u8; 6], backend: Backend) -> Net {
        Net {
            mac,
            link_up: Arc::new(AtomicBool::new(true)),
            backend: Some(backend),
            worker: None,
            link_changed: false,
            announce: false,
        }
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            match worker.stop() {
                Some(worker) => self.backend = Some(worker.into_backend()),
                None => eprintln!("vmm: virtio-net: the worker thread panicked; backend lost"),
            }
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_NET as u16
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_NET_F_MAC
            | 1 << VIRTIO_NET_F_MRG_RXBUF
            | 1 << VIRTIO_NET_F_STATUS
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&self.mac);
        let status = match self.link_up.load(Ordering::SeqCst) {
            true => VIRTIO_NET_S_LINK_UP as u16,
            false => 0,
        };
        config[6..8].copy_from_slice(&status.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        crate::virtio::config_space::read(&config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // The MAC is writable only with VIRTIO_NET_F_CTRL_MAC_ADDR, not offered.
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.stop_worker();
        let [rx, tx] = take_queues(activation.queues)?;
        let backend = self
            .backend
            .take()
            .ok_or_else(|| io::Error::other("the backend was lost with an earlier worker"))?;
        let worker = NetWorker::new(
            activation.memory,
            rx.queue,
            tx.queue,
            backend,
            activation.features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0,
            activation.interrupt,
            self.link_up.clone(),
        );
        let worker = match std::mem::take(&mut self.announce) {
            true => worker.announcing(self.mac),
            false => worker,
        };
        if std::mem::take(&mut self.link_changed) {
            // Cannot fail but for an unknown queue; the link state is in config space.
            let _ = worker.interrupt.notify_config();
        }
        let (rx_kick, tx_kick) = (rx.kick, tx.kick);
        self.worker = Some(Worker::spawn(
            crate::confine::ThreadKind::VirtioNet,
            move |stop| worker.run(stop, rx_kick, tx_kick),
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn save_state(&self) -> Result<DeviceState, String> {
        Ok(DeviceState::Net(NetState {
            mac: self.mac,
            link_up: self.link_up.load(Ordering::SeqCst),
        }))
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), String> {
        let DeviceState::Net(saved) = state else {
            return Err("the saved device is not a network interface".into());
        };
        if saved.mac != self.mac {
            let mac = |m: &[u8; 6]| {
                m.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            };
            return Err(format!(
                "the network interface had MAC {} when saved, {} now",
                mac(&saved.mac),
                mac(&self.mac)
            ));
        }
        // The link is whatever the new backend's is; a driver that last saw it down
        // must hear that it is up.
        self.link_changed = !saved.link_up && self.link_up.load(Ordering::SeqCst);
        self.announce = true;
        Ok(())
    }

    fn pause(&mut self) -> Result<PausedQueues, String> {
        let Some(worker) = self.worker.take() else {
            return Ok(Vec::new());
        };
        let worker = worker
            .pause()
            .ok_or("the worker thread panicked; backend lost")?;
        let (backend, rx, tx) = worker.into_parts();
        self.backend = Some(backend);
        Ok(vec![(RX_QUEUE, rx), (TX_QUEUE, tx)])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

/// A frame that makes the guest's MAC known on the network behind the NIC, as a
/// machine continued from a saved state sends through its new backend (QEMU does the
/// same after a migration): a RARP request from `mac` to everyone, with the virtio
/// header in front. passt learns the guest's MAC only from frames the guest sends,
/// and until then addresses it by broadcast, which the guest's TCP drops: without
/// this a continued guest that sends nothing first is unreachable (ssh, forwarded
/// ports); a bridge behind a TAP learns the port the same way.
pub fn announcement(mac: [u8; 6]) -> Vec<u8> {
    const ETH_P_RARP: u16 = 0x8035;
    const ETH_P_IP: u16 = 0x0800;
    const ARPHRD_ETHER: u16 = 1;
    const RARP_REQUEST: u16 = 3;
    let mut frame = vec![0u8; VNET_HDR_LEN];
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ETH_P_RARP.to_be_bytes());
    frame.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&RARP_REQUEST.to_be_bytes());
    // Sender and target hardware address are the guest's; no protocol addresses.
    for _ in 0..2 {
        frame.extend_from_slice(&mac);
        frame.extend_from_slice(&[0; 4]);
    }
    // Ethernet's minimum frame (60 bytes before the frame check sequence).
    frame.resize(VNET_HDR_LEN + 60, 0);
    frame
}

#[cfg(test)]
mod tests;
