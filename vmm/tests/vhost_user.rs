//! The vhost-user frontend against a real virtiofsd, without a guest: the test plays
//! the guest's driver itself, laying out a virtqueue in shared guest memory, putting
//! a FUSE_INIT request on it and kicking; virtiofsd must answer in that memory and
//! signal the call eventfd. Skipped, with the reason printed, without virtiofsd.

use hvbox_vmm::memory::{create_guest_memory_in, Backing, GuestMemory};
use hvbox_vmm::virtio::vhost_user::connection::WANTED_PROTOCOL_FEATURES;
use hvbox_vmm::virtio::vhost_user::{Connection, Ring, VhostUserError};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};
use vhost::vhost_user::message::VhostUserVirtioFeatures;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

#[path = "guests/support.rs"]
mod support;

use support::Virtiofsd;

const LIMIT: Duration = Duration::from_secs(5);
/// virtio-fs queue 1: the first request queue.
const REQUEST_QUEUE: usize = 1;
const QSIZE: u16 = 8;
const DESC: u64 = 0x10000;
const AVAIL: u64 = 0x11000;
const USED: u64 = 0x12000;
const REQUEST: u64 = 0x20000;
const REPLY: u64 = 0x21000;
const VRING_DESC_F_NEXT: u16 = 1;
const VRING_DESC_F_WRITE: u16 = 2;
const FUSE_INIT: u32 = 26;
/// fuse_in_header (40 bytes) + fuse_init_in (64 bytes).
const REQUEST_LEN: u32 = 104;
/// fuse_out_header (16 bytes) + fuse_init_out (64 bytes).
const REPLY_LEN: u32 = 80;

fn memory() -> GuestMemory {
    create_guest_memory_in(64 << 20, Backing::SharedMemfd).unwrap()
}

/// The VMM's address of guest address `at`.
fn host(mem: &GuestMemory, at: u64) -> u64 {
    mem.get_host_address(GuestAddress(at)).unwrap() as u64
}

fn write_desc(mem: &GuestMemory, i: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let at = GuestAddress(DESC + 16 * i);
    mem.write_obj(addr, at).unwrap();
    mem.write_obj(len, at.unchecked_add(8)).unwrap();
    mem.write_obj(flags, at.unchecked_add(12)).unwrap();
    mem.write_obj(next, at.unchecked_add(14)).unwrap();
}

/// A fresh queue (zeroed rings) with FUSE_INIT number `unique` available on it.
fn queue_fuse_init(mem: &GuestMemory, unique: u64) {
    mem.write_slice(&[0u8; 0x3000], GuestAddress(DESC)).unwrap();
    let mut request = Vec::new();
    // fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding
    request.extend_from_slice(&REQUEST_LEN.to_le_bytes());
    request.extend_from_slice(&FUSE_INIT.to_le_bytes());
    request.extend_from_slice(&unique.to_le_bytes());
    request.extend_from_slice(&[0u8; 8 + 4 + 4 + 4 + 2 + 2]);
    // fuse_init_in: major 7, minor 31, max_readahead, flags 0, then flags2 and unused
    for word in [7u32, 31, 128 << 10, 0] {
        request.extend_from_slice(&word.to_le_bytes());
    }
    request.extend_from_slice(&[0u8; 48]);
    assert_eq!(request.len(), REQUEST_LEN as usize);
    mem.write_slice(&request, GuestAddress(REQUEST)).unwrap();
    mem.write_slice(&[0xaa; 256], GuestAddress(REPLY)).unwrap();
    write_desc(mem, 0, REQUEST, REQUEST_LEN, VRING_DESC_F_NEXT, 1);
    write_desc(mem, 1, REPLY, 256, VRING_DESC_F_WRITE, 0);
    // avail: flags 0, idx 1, ring[0] = head 0.
    mem.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap();
    mem.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap();
}

fn ring<'a>(mem: &GuestMemory, kick: &'a EventFd, call: &'a EventFd) -> Ring<'a> {
    Ring {
        index: REQUEST_QUEUE,
        size: QSIZE,
        base: 0,
        desc: host(mem, DESC),
        avail: host(mem, AVAIL),
        used: host(mem, USED),
        kick,
        call,
    }
}

/// Waits for `call` to be signalled (the backend used a buffer).
fn wait_for_call(call: &EventFd) {
    let mut fd = libc::pollfd {
        fd: call.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, 10_000) };
    assert_eq!(ready, 1, "virtiofsd never signalled the call eventfd");
    assert!(call.read().unwrap() >= 1);
}

/// The reply in the used ring and the reply buffer: (used length, out header's
/// error, unique, init_out's major and minor).
fn read_reply(mem: &GuestMemory) -> (u32, i32, u64, u32, u32) {
    let used_idx: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
    assert_eq!(used_idx, 1, "one request used");
    let id: u32 = mem.read_obj(GuestAddress(USED + 4)).unwrap();
    assert_eq!(id, 0, "the used element names our chain's head");
    let len: u32 = mem.read_obj(GuestAddress(USED + 8)).unwrap();
    let out_len: u32 = mem.read_obj(GuestAddress(REPLY)).unwrap();
    assert_eq!(out_len, len, "fuse_out_header.len matches the used length");
    (
        len,
        mem.read_obj(GuestAddress(REPLY + 4)).unwrap(),
        mem.read_obj(GuestAddress(REPLY + 8)).unwrap(),
        mem.read_obj(GuestAddress(REPLY + 16)).unwrap(),
        mem.read_obj(GuestAddress(REPLY + 20)).unwrap(),
    )
}

#[test]
fn virtiofsd_answers_fuse_init_through_rings_in_shared_memory() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let Some(_virtiofsd) = Virtiofsd::start(dir.path(), &shared) else {
        return;
    };
    let mem = memory();
    let mut backend = Connection::connect(&dir.path().join("virtiofsd.sock"), 2, LIMIT).unwrap();
    let features = backend.features();
    assert_ne!(features & (1 << VIRTIO_F_VERSION_1), 0, "{features:#x}");
    assert_ne!(
        features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(),
        0,
        "{features:#x}"
    );
    // virtiofsd offers all four; nothing else is taken.
    assert_eq!(backend.protocol_features(), WANTED_PROTOCOL_FEATURES);
    backend.set_mem_table(&mem).unwrap();

    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let call = EventFd::new(EFD_NONBLOCK).unwrap();
    for (round, unique) in [(1, 0x6876_6278_0000_0001u64), (2, 0x6876_6278_0000_0002)] {
        queue_fuse_init(&mem, unique);
        backend
            .start(1 << VIRTIO_F_VERSION_1, &[ring(&mem, &kick, &call)])
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        kick.write(1).unwrap();
        wait_for_call(&call);
        let (len, error, got_unique, major, minor) = read_reply(&mem);
        assert_eq!(len, REPLY_LEN, "round {round}");
        assert_eq!(error, 0, "round {round}");
        assert_eq!(got_unique, unique, "round {round}");
        assert_eq!(major, 7, "round {round}");
        assert!(minor >= 27, "round {round}: minor {minor}");
        // The backend consumed one request: that is where the ring stopped. After
        // the reset the second round's FUSE_INIT opens a new session.
        assert_eq!(
            backend.stop(&[REQUEST_QUEUE]).unwrap(),
            vec![1],
            "round {round}"
        );
    }
}

#[test]
fn a_backend_that_never_answers_is_cut_off_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    // Listens, so connecting works, but never reads or answers.
    let _listener = UnixListener::bind(&socket).unwrap();
    let started = Instant::now();
    let err = match Connection::connect(&socket, 2, Duration::from_millis(300)) {
        Ok(_) => panic!("a silent backend negotiated"),
        Err(e) => e,
    };
    assert!(matches!(err, VhostUserError::TimedOut { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("negotiating features: no answer within 300ms"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_backend_that_died_fails_fast_and_the_connection_stays_lost() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let Some(mut virtiofsd) = Virtiofsd::start(dir.path(), &shared) else {
        return;
    };
    let mem = memory();
    let mut backend = Connection::connect(&virtiofsd.socket, 2, LIMIT).unwrap();
    backend.set_mem_table(&mem).unwrap();
    virtiofsd.kill();
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let call = EventFd::new(EFD_NONBLOCK).unwrap();
    let started = Instant::now();
    let err = backend
        .start(1 << VIRTIO_F_VERSION_1, &[ring(&mem, &kick, &call)])
        .unwrap_err();
    assert!(
        matches!(err, VhostUserError::Request { .. }),
        "a dead backend is an error on the socket, not a timeout: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(
        backend.stop(&[REQUEST_QUEUE]),
        Err(VhostUserError::Lost)
    ));
    assert!(backend
        .lost_flag()
        .load(std::sync::atomic::Ordering::Acquire));
}

#[test]
fn a_missing_backend_and_private_memory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = match Connection::connect(&dir.path().join("none.sock"), 2, LIMIT) {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("cannot connect to the backend's socket: No such file"),
        "{err}"
    );

    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let Some(virtiofsd) = Virtiofsd::start(dir.path(), &shared) else {
        return;
    };
    let private = hvbox_vmm::memory::create_guest_memory(64 << 20).unwrap();
    let mut backend = Connection::connect(&virtiofsd.socket, 2, LIMIT).unwrap();
    assert!(matches!(
        backend.set_mem_table(&private),
        Err(VhostUserError::NotShared(0))
    ));
}

/// Puts request `i` (descriptors 2i and 2i+1, `request` at REQUEST + i * 0x1000 and a
/// reply buffer of 256 bytes after it) in avail slot `i`, and makes the avail index
/// `i + 1`. Returns the reply's guest address.
fn queue_request(mem: &GuestMemory, i: u16, request: &[u8]) -> u64 {
    let at = REQUEST + u64::from(i) * 0x1000;
    let reply = at + 0x800;
    mem.write_slice(request, GuestAddress(at)).unwrap();
    mem.write_slice(&[0xaa; 256], GuestAddress(reply)).unwrap();
    let d = u64::from(i) * 2;
    write_desc(
        mem,
        d,
        at,
        request.len() as u32,
        VRING_DESC_F_NEXT,
        d as u16 + 1,
    );
    write_desc(mem, d + 1, reply, 256, VRING_DESC_F_WRITE, 0);
    mem.write_obj(d as u16, GuestAddress(AVAIL + 4 + 2 * u64::from(i)))
        .unwrap();
    mem.write_obj(i + 1, GuestAddress(AVAIL + 2)).unwrap();
    reply
}

/// A FUSE request: the in-header for `opcode` on `nodeid`, then `body`.
fn fuse(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let len = 40 + body.len() as u32;
    let mut r = Vec::new();
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(&opcode.to_le_bytes());
    r.extend_from_slice(&unique.to_le_bytes());
    r.extend_from_slice(&nodeid.to_le_bytes());
    r.extend_from_slice(&[0u8; 16]);
    r.extend_from_slice(body);
    r
}

#[test]
fn a_new_virtiofsd_takes_over_the_queue_and_the_inodes_of_the_old_one() {
    const FUSE_LOOKUP: u32 = 1;
    const FUSE_GETATTR: u32 = 3;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello"), b"twelve bytes").unwrap();
    let Some(old) = Virtiofsd::start(dir.path(), &shared) else {
        return;
    };
    let mem = memory();
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let call = EventFd::new(EFD_NONBLOCK).unwrap();
    let mut backend = Connection::connect(&old.socket, 2, LIMIT).unwrap();
    backend.set_mem_table(&mem).unwrap();
    queue_fuse_init(&mem, 1);
    backend
        .start(1 << VIRTIO_F_VERSION_1, &[ring(&mem, &kick, &call)])
        .unwrap();
    kick.write(1).unwrap();
    wait_for_call(&call);
    let reply = queue_request(&mem, 1, &fuse(FUSE_LOOKUP, 2, 1, b"hello\0"));
    kick.write(1).unwrap();
    wait_for_call(&call);
    assert_eq!(mem.read_obj::<i32>(GuestAddress(reply + 4)).unwrap(), 0);
    let nodeid: u64 = mem.read_obj(GuestAddress(reply + 16)).unwrap();

    assert_eq!(backend.suspend(&[REQUEST_QUEUE]).unwrap(), vec![2]);
    let state = backend.save_state().unwrap();
    drop(backend);
    drop(old);

    let dir2 = tempfile::tempdir().unwrap();
    let Some(new) = Virtiofsd::start(dir2.path(), &shared) else {
        return;
    };
    let mut backend = Connection::connect(&new.socket, 2, LIMIT).unwrap();
    backend.set_mem_table(&mem).unwrap();
    backend.load_state(&state).unwrap();
    let mut r = ring(&mem, &kick, &call);
    r.base = 2;
    backend.start(1 << VIRTIO_F_VERSION_1, &[r]).unwrap();
    let reply = queue_request(&mem, 2, &fuse(FUSE_GETATTR, 3, nodeid, &[0u8; 16]));
    kick.write(1).unwrap();
    wait_for_call(&call);
    assert_eq!(mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap(), 3);
    assert_eq!(mem.read_obj::<i32>(GuestAddress(reply + 4)).unwrap(), 0);
    // fuse_attr_out: valid (8), valid_nsec (4), dummy (4), then fuse_attr: ino, size.
    let size: u64 = mem.read_obj(GuestAddress(reply + 16 + 16 + 8)).unwrap();
    assert_eq!(size, 12);
}

/// Counts the interrupts a device raises.
#[derive(Default)]
struct Interrupts(std::sync::atomic::AtomicUsize);

impl hvbox_vmm::virtio::VirtioInterrupt for Interrupts {
    fn notify_queue(&self, _: u16) -> std::io::Result<()> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn notify_config(&self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Interrupts {
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.0.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "no interrupt {n} from the device"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn a_shared_folder_device_continues_on_the_same_and_on_a_new_virtiofsd() {
    use hvbox_vmm::virtio::vhost_user::Fs;
    use hvbox_vmm::virtio::{Activation, ActiveQueue, DeviceState, VirtioDevice};
    use std::sync::Arc;
    use virtio_queue::{Queue, QueueT};
    const FUSE_LOOKUP: u32 = 1;
    const FUSE_GETATTR: u32 = 3;

    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello"), b"twelve bytes").unwrap();
    let Some(old) = Virtiofsd::start(dir.path(), &shared) else {
        return;
    };
    let config = |socket: &std::path::Path| hvbox_vmm::FsConfig {
        tag: "work".into(),
        socket: socket.to_path_buf(),
    };
    let mem = memory();
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let irq = Arc::new(Interrupts::default());
    let activation = |queue: Queue| Activation {
        memory: mem.clone(),
        queues: vec![ActiveQueue {
            index: REQUEST_QUEUE as u16,
            queue,
            kick: kick.try_clone().unwrap(),
        }],
        interrupt: irq.clone(),
        features: 1 << VIRTIO_F_VERSION_1,
    };
    let mut queue = Queue::new(1024).unwrap();
    queue.set_size(QSIZE);
    queue.set_desc_table_address(Some(DESC as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_ready(true);

    let mut fs = Fs::new(&config(&old.socket), &mem).unwrap();
    queue_fuse_init(&mem, 1);
    fs.activate(activation(queue)).unwrap();
    kick.write(1).unwrap();
    irq.wait_for(1);
    let reply = queue_request(&mem, 1, &fuse(FUSE_LOOKUP, 2, 1, b"hello\0"));
    kick.write(1).unwrap();
    irq.wait_for(2);
    assert_eq!(mem.read_obj::<i32>(GuestAddress(reply + 4)).unwrap(), 0);
    let nodeid: u64 = mem.read_obj(GuestAddress(reply + 16)).unwrap();
    let getattr = |i: u16, n: usize| {
        let reply = queue_request(
            &mem,
            i,
            &fuse(FUSE_GETATTR, 10 + u64::from(i), nodeid, &[0; 16]),
        );
        kick.write(1).unwrap();
        irq.wait_for(n);
        assert_eq!(mem.read_obj::<i32>(GuestAddress(reply + 4)).unwrap(), 0);
        // fuse_attr_out: valid, valid_nsec, dummy (16 bytes), then fuse_attr: ino, size.
        let size: u64 = mem.read_obj(GuestAddress(reply + 16 + 16 + 8)).unwrap();
        assert_eq!(size, 12);
    };

    // A live snapshot: paused, saved, and on again with the same virtiofsd.
    let (index, queue) = fs.pause().unwrap().pop().unwrap();
    assert_eq!((index, queue.next_avail(), queue.next_used()), (1, 2, 2));
    fs.save_state().unwrap();
    fs.activate(activation(queue)).unwrap();
    getattr(2, 3);

    // Suspended: the VMM and its virtiofsd go, new ones take over.
    let (_, queue) = fs.pause().unwrap().pop().unwrap();
    let state = fs.save_state().unwrap();
    let DeviceState::Fs(saved) = &state else {
        panic!("{state:?}");
    };
    assert_eq!(saved.tag, "work");
    assert!(saved.backend.as_ref().is_some_and(|b| !b.is_empty()));
    let state: DeviceState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    drop(fs);
    drop(old);
    let dir2 = tempfile::tempdir().unwrap();
    let Some(new) = Virtiofsd::start(dir2.path(), &shared) else {
        return;
    };
    let mut fs = Fs::new(&config(&new.socket), &mem).unwrap();
    let mut other = state.clone();
    if let DeviceState::Fs(s) = &mut other {
        s.tag = "other".into();
    }
    assert_eq!(
        fs.restore_state(&other).unwrap_err(),
        "the shared folder was tagged \"other\" when saved, \"work\" now"
    );
    fs.restore_state(&state).unwrap();
    fs.activate(activation(queue)).unwrap();
    // The inode the guest looked up in the old virtiofsd is known to the new one.
    getattr(3, 4);
}
