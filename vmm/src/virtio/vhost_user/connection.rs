//! One vhost-user connection, frontend side: the VMM hands a device's queues to a
//! backend process (virtiofsd) over a UNIX socket, and the backend reads and writes
//! guest memory itself. The messages go through the rust-vmm `vhost` crate; this
//! file decides which to send, in what order, what is negotiated, and bounds every
//! exchange in time ([`deadline`](super::deadline)).
//!
//! The life of a connection: [`Connection::connect`] (SET_OWNER, feature and
//! protocol-feature negotiation), [`Connection::set_mem_table`] once, then for each
//! time the guest driver sets the device up [`Connection::start`] and, when it resets
//! the device, [`Connection::stop`].

use super::deadline;
use super::transfer;
use crate::memory::GuestMemory;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserHeaderFlag,
    VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// How long a backend may take to answer a group of messages before it is taken
/// for hung and the connection is cut.
pub const REPLY_LIMIT: Duration = Duration::from_secs(5);

/// Protocol features used when the backend offers them: acknowledgements of every
/// request (errors are seen where they happen), the queue count (checked), and a
/// device reset that clears the backend's session state.
/// DEVICE_STATE lets a snapshot take the backend's own state (the guest's open files
/// and inodes) along, to give it to a new backend.
pub const WANTED_PROTOCOL_FEATURES: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::REPLY_ACK
        .union(VhostUserProtocolFeatures::MQ)
        .union(VhostUserProtocolFeatures::RESET_DEVICE)
        .union(VhostUserProtocolFeatures::DEVICE_STATE);

/// The most backend state a snapshot carries.
pub const MAX_BACKEND_STATE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum VhostUserError {
    #[error("cannot connect to the backend's socket: {0}")]
    Connect(io::Error),
    #[error("{what}: {source}")]
    Request {
        what: &'static str,
        source: vhost::Error,
    },
    #[error("{what}: no answer within {limit:?}; the backend is taken for hung and disconnected")]
    TimedOut { what: &'static str, limit: Duration },
    #[error("the backend does not offer VIRTIO_F_VERSION_1 (it offers {0:#x})")]
    NoVersion1(u64),
    #[error("the backend serves {have} queues, the device needs {need}")]
    TooFewQueues { have: u64, need: usize },
    #[error("guest RAM at {0:#x} is not shared memory (a memfd), which a backend must map")]
    NotShared(u64),
    #[error("the connection to the backend was lost earlier")]
    Lost,
    #[error("the backend cannot hand over its state (no DEVICE_STATE protocol feature)")]
    NoDeviceState,
    #[error("{what} the backend's state: {source}")]
    StateTransfer {
        what: &'static str,
        source: io::Error,
    },
}

/// One queue as the backend needs it. Ring addresses are in the VMM's own address
/// space; the backend translates them through the memory table.
pub struct Ring<'a> {
    pub index: usize,
    pub size: u16,
    /// The next available-ring index to serve (0 on a fresh queue).
    pub base: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// The driver's doorbell (the ioeventfd KVM signals).
    pub kick: &'a EventFd,
    /// What the backend signals when it used buffers.
    pub call: &'a EventFd,
}

pub struct Connection {
    frontend: Frontend,
    /// The same socket as the frontend's: shut down when an exchange runs over time,
    /// watched for the backend hanging up.
    socket: UnixStream,
    limit: Duration,
    /// The backend's virtio features (with VHOST_USER_F_PROTOCOL_FEATURES).
    features: u64,
    protocol: VhostUserProtocolFeatures,
    lost: Arc<AtomicBool>,
}

impl Connection {
    /// Connects to the backend listening on `socket`, claims it (SET_OWNER) and
    /// negotiates: VIRTIO_F_VERSION_1 is required, [`WANTED_PROTOCOL_FEATURES`] are
    /// taken where offered, and the backend must serve `queues` queues.
    pub fn connect(
        socket: &Path,
        queues: usize,
        limit: Duration,
    ) -> Result<Connection, VhostUserError> {
        let stream = UnixStream::connect(socket).map_err(VhostUserError::Connect)?;
        Connection::over(stream, queues, limit)
    }

    /// [`Connection::connect`] over a stream already connected to the backend.
    pub fn over(
        stream: UnixStream,
        queues: usize,
        limit: Duration,
    ) -> Result<Connection, VhostUserError> {
        let ours = stream.try_clone().map_err(VhostUserError::Connect)?;
        let mut connection = Connection {
            frontend: Frontend::from_stream(stream, queues as u64),
            socket: ours,
            limit,
            features: 0,
            protocol: VhostUserProtocolFeatures::empty(),
            lost: Arc::new(AtomicBool::new(false)),
        };
        let (features, protocol) = connection.exchange("negotiating features", |f| {
            request("SET_OWNER", f.set_owner())?;
            let features = request("GET_FEATURES", f.get_features())?;
            if features & (1 << VIRTIO_F_VERSION_1) == 0 {
                return Err(VhostUserError::NoVersion1(features));
            }
            if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0 {
                return Ok((features, VhostUserProtocolFeatures::empty()));
            }
            let offered = request("GET_PROTOCOL_FEATURES", f.get_protocol_features())?;
            let protocol = offered & WANTED_PROTOCOL_FEATURES;
            request("SET_PROTOCOL_FEATURES", f.set_protocol_features(protocol))?;
            if protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                f.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
            if protocol.contains(VhostUserProtocolFeatures::MQ) {
                let have = request("GET_QUEUE_NUM", f.get_queue_num())?;
                if have < queues as u64 {
                    return Err(VhostUserError::TooFewQueues { have, need: queues });
                }
            }
            Ok((features, protocol))
        })?;
        connection.features = features;
        connection.protocol = protocol;
        Ok(connection)
    }

    /// The backend's virtio feature bits.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The protocol features both sides use.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol
    }

    /// Set once the connection can no longer be used: the backend hung up, broke the
    /// protocol or did not answer in time. Shared with whoever watches the socket.
    pub fn lost_flag(&self) -> &Arc<AtomicBool> {
        &self.lost
    }

    /// Another handle on the socket, to watch for the backend hanging up.
    pub fn watch_handle(&self) -> io::Result<UnixStream> {
        self.socket.try_clone()
    }

    /// SET_MEM_TABLE: every RAM region with its guest address, size, where it is
    /// mapped in the VMM, and the memfd and offset it is mapped from.
    pub fn set_mem_table(&mut self, memory: &GuestMemory) -> Result<(), VhostUserError> {
        let regions = memory
            .iter()
            .map(|region| {
                VhostUserMemoryRegionInfo::from_guest_region(region)
                    .map_err(|_| VhostUserError::NotShared(region.start_addr().0))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.exchange("sharing guest memory", |f| {
            request("SET_MEM_TABLE", f.set_mem_table(&regions)).map(drop)
        })
    }

    /// The driver set the device up: tell the backend the features it accepted and
    /// hand over each ring, enabled.
    pub fn start(&mut self, driver_features: u64, rings: &[Ring]) -> Result<(), VhostUserError> {
        let protocol_bit = self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        self.exchange("starting the queues", |f| {
            request(
                "SET_FEATURES",
                f.set_features(driver_features | protocol_bit),
            )?;
            for ring in rings {
                let config = VringConfigData {
                    queue_max_size: ring.size,
                    queue_size: ring.size,
                    flags: 0,
                    desc_table_addr: ring.desc,
                    used_ring_addr: ring.used,
                    avail_ring_addr: ring.avail,
                    log_addr: None,
                };
                request("SET_VRING_NUM", f.set_vring_num(ring.index, ring.size))?;
                request("SET_VRING_BASE", f.set_vring_base(ring.index, ring.base))?;
                request("SET_VRING_ADDR", f.set_vring_addr(ring.index, &config))?;
                // The call first: a kick already pending starts the ring at once, and
                // its completion must find somewhere to signal.
                request("SET_VRING_CALL", f.set_vring_call(ring.index, ring.call))?;
                request("SET_VRING_KICK", f.set_vring_kick(ring.index, ring.kick))?;
                // Without protocol features the rings are enabled by SET_FEATURES.
                if protocol_bit != 0 {
                    request("SET_VRING_ENABLE", f.set_vring_enable(ring.index, true))?;
                }
            }
            Ok(())
        })
    }

    /// The driver reset the device: disable and stop the rings `indices`
    /// (GET_VRING_BASE, which returns how far the backend got in each), then reset
    /// the backend's device state where it offers that. Returns the rings' bases.
    pub fn stop(&mut self, indices: &[usize]) -> Result<Vec<u32>, VhostUserError> {
        let reset = self
            .protocol
            .contains(VhostUserProtocolFeatures::RESET_DEVICE);
        self.stop_rings(indices, reset)
    }

    /// [`Connection::stop`] keeping the backend's device state: a pause for a
    /// snapshot, after which the rings start again or the state is saved.
    pub fn suspend(&mut self, indices: &[usize]) -> Result<Vec<u32>, VhostUserError> {
        self.stop_rings(indices, false)
    }

    /// The backend's internal state, its rings stopped ([`Connection::suspend`]):
    /// SET_DEVICE_STATE_FD (save), the state read from the pipe until the backend
    /// closes it, then CHECK_DEVICE_STATE.
    pub fn save_state(&mut self) -> Result<Vec<u8>, VhostUserError> {
        self.need_device_state()?;
        let (ours, theirs) = pipe("saving")?;
        let limit = self.limit;
        self.exchange("saving the backend's state", |f| {
            let given = request(
                "SET_DEVICE_STATE_FD",
                f.set_device_state_fd(
                    VhostTransferStateDirection::SAVE,
                    VhostTransferStatePhase::STOPPED,
                    theirs,
                ),
            )?;
            // The backend may hand back a pipe of its own to read instead.
            let source = given.map_or(ours, OwnedFd::from);
            let state = transfer::read_all(source, MAX_BACKEND_STATE, limit).map_err(|source| {
                VhostUserError::StateTransfer {
                    what: "reading",
                    source,
                }
            })?;
            request("CHECK_DEVICE_STATE", f.check_device_state())?;
            Ok(state)
        })
    }

    /// Gives a new backend (rings not started yet) the state another one saved.
    pub fn load_state(&mut self, state: &[u8]) -> Result<(), VhostUserError> {
        self.need_device_state()?;
        let (theirs, ours) = pipe("loading")?;
        let limit = self.limit;
        self.exchange("loading the backend's state", |f| {
            let given = request(
                "SET_DEVICE_STATE_FD",
                f.set_device_state_fd(
                    VhostTransferStateDirection::LOAD,
                    VhostTransferStatePhase::STOPPED,
                    theirs,
                ),
            )?;
            let sink = given.map_or(ours, OwnedFd::from);
            transfer::write_all(sink, state, limit).map_err(|source| {
                VhostUserError::StateTransfer {
                    what: "writing",
                    source,
                }
            })?;
            request("CHECK_DEVICE_STATE", f.check_device_state())
        })
    }

    fn need_device_state(&self) -> Result<(), VhostUserError> {
        match self
            .protocol
            .contains(VhostUserProtocolFeatures::DEVICE_STATE)
        {
            true => Ok(()),
            false => Err(VhostUserError::NoDeviceState),
        }
    }

    fn stop_rings(&mut self, indices: &[usize], reset: bool) -> Result<Vec<u32>, VhostUserError> {
        let protocol_bit = self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        self.exchange("stopping the queues", |f| {
            if protocol_bit != 0 {
                for &index in indices {
                    request("SET_VRING_ENABLE", f.set_vring_enable(index, false))?;
                }
            }
            let mut bases = Vec::with_capacity(indices.len());
            for &index in indices {
                bases.push(request("GET_VRING_BASE", f.get_vring_base(index))?);
            }
            if reset {
                request("RESET_DEVICE", f.reset_device())?;
            }
            Ok(bases)
        })
    }

    /// Runs one group of requests within the reply limit. A group that runs over
    /// time, or fails on the socket rather than by the backend's refusal, loses the
    /// connection: the stream may hold a late answer, so nothing more is sent.
    fn exchange<T>(
        &mut self,
        what: &'static str,
        work: impl FnOnce(&mut Frontend) -> Result<T, VhostUserError>,
    ) -> Result<T, VhostUserError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(VhostUserError::Lost);
        }
        let frontend = &mut self.frontend;
        let (result, expired) = deadline::bounded(&self.socket, self.limit, || work(frontend));
        if expired {
            self.lost.store(true, Ordering::Release);
            return Err(VhostUserError::TimedOut {
                what,
                limit: self.limit,
            });
        }
        if let Err(VhostUserError::Request { source, .. }) = &result {
            if breaks_the_stream(source) {
                self.lost.store(true, Ordering::Release);
            }
        }
        result
    }
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), VhostUserError> {
    transfer::pipe().map_err(|source| VhostUserError::StateTransfer { what, source })
}

fn request<T>(what: &'static str, result: vhost::Result<T>) -> Result<T, VhostUserError> {
    result.map_err(|source| VhostUserError::Request { what, source })
}

/// Whether after `error` the next message on the socket could be out of step: all
/// but a refusal the backend answered with, or a check made before sending.
fn breaks_the_stream(error: &vhost::Error) -> bool {
    use vhost::vhost_user::Error as E;
    !matches!(
        error,
        vhost::Error::VhostUserProtocol(
            E::BackendInternalError
                | E::InvalidParam
                | E::InactiveFeature(_)
                | E::InactiveOperation(_)
        )
    )
}
