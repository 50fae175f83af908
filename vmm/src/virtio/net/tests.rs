use super::*;
use crate::virtio::device::ActiveQueue;
use crate::virtio::test_util::{desc, CountingInterrupt, TestQueue, R, W};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vmm_sys_util::eventfd::EFD_NONBLOCK;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// Guest memory with both queues, a worker over one end of a socketpair standing
/// in for passt, and the other end.
struct Rig {
    rx: TestQueue,
    tx: TestQueue,
    worker: NetWorker,
    passt: UnixStream,
    irq: Arc<CountingInterrupt>,
    link_up: Arc<AtomicBool>,
}

fn rig(mergeable: bool) -> Rig {
    let rx = TestQueue::new();
    let tx = rx.another(0x8000);
    let (ours, passt) = UnixStream::pair().unwrap();
    let irq = Arc::new(CountingInterrupt::default());
    let link_up = Arc::new(AtomicBool::new(true));
    let worker = NetWorker::new(
        rx.mem.clone(),
        rx.queue(),
        tx.queue(),
        Backend::Passt(Passt::from_stream(ours)),
        mergeable,
        irq.clone(),
        link_up.clone(),
    );
    passt
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    Rig {
        rx,
        tx,
        worker,
        passt,
        irq,
        link_up,
    }
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

fn prefixed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Reads one length-prefixed frame from the passt end.
fn read_prefixed(s: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload).unwrap();
    payload
}

fn nothing_to_read(s: &UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let empty = matches!((&*s).read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    empty
}

fn num_buffers(header: &[u8]) -> u16 {
    u16::from_le_bytes([header[10], header[11]])
}

#[test]
fn tx_frames_reach_passt_length_prefixed_without_the_header() {
    let mut r = rig(true);
    let payload = frame(60, 1);
    r.tx.write(0x10000, &[0xaa; VNET_HDR_LEN]);
    r.tx.write(0x11000, &payload);
    r.tx.add_chain(&[desc(0x10000, 12, R), desc(0x11000, 60, R)]);
    // Header and frame in one buffer, as Linux sends them.
    let mut one = vec![0u8; 12];
    one.extend(frame(100, 2));
    r.tx.write(0x12000, &one);
    r.tx.add_chain(&[desc(0x12000, one.len() as u32, R)]);
    r.worker.process_tx();
    assert_eq!(read_prefixed(&mut r.passt), payload);
    assert_eq!(read_prefixed(&mut r.passt), frame(100, 2));
    assert_eq!(r.tx.used_idx(), 2);
    assert_eq!(r.tx.used(0).1, 0);
    assert_eq!(r.irq.queue_count(TX_QUEUE), 1);
}

#[test]
fn rx_frames_arrive_behind_a_virtio_header() {
    let mut r = rig(true);
    r.passt.write_all(&prefixed(&frame(60, 3))).unwrap();
    r.rx.add_chain(&[desc(0x20000, 2048, W)]);
    r.worker.process_rx();
    assert_eq!(r.rx.used_idx(), 1);
    assert_eq!(r.rx.used(0).1, 72);
    let got = r.rx.read(0x20000, 72);
    assert_eq!(&got[..10], &[0; 10]);
    assert_eq!(num_buffers(&got), 1);
    assert_eq!(&got[12..], &frame(60, 3)[..]);
    assert_eq!(r.irq.queue_count(RX_QUEUE), 1);
}

#[test]
fn a_large_frame_spans_two_mergeable_buffers() {
    let mut r = rig(true);
    let payload = frame(3500, 4);
    r.passt.write_all(&prefixed(&payload)).unwrap();
    let h0 = r.rx.add_chain(&[desc(0x20000, 2048, W)]);
    let h1 =
        r.rx.add_chain(&[desc(0x30000, 1024, W), desc(0x40000, 1024, W)]);
    r.worker.process_rx();
    assert_eq!(r.rx.used_idx(), 2);
    assert_eq!(r.rx.used(0), (h0.into(), 2048));
    assert_eq!(r.rx.used(1), (h1.into(), 3512 - 2048));
    let mut got = r.rx.read(0x20000, 2048);
    got.extend(r.rx.read(0x30000, 1024));
    got.extend(r.rx.read(0x40000, 3512 - 3072));
    assert_eq!(num_buffers(&got), 2);
    assert_eq!(&got[12..], &payload[..]);
    assert_eq!(r.irq.queue_count(RX_QUEUE), 1, "one interrupt per batch");
}

#[test]
fn without_mergeable_buffers_an_oversized_frame_is_dropped() {
    let mut r = rig(false);
    r.passt.write_all(&prefixed(&frame(3000, 5))).unwrap();
    r.passt.write_all(&prefixed(&frame(100, 6))).unwrap();
    r.rx.add_chain(&[desc(0x20000, 2048, W)]);
    r.worker.process_rx();
    assert_eq!(r.rx.used_idx(), 1);
    assert_eq!(r.rx.used(0).1, 112);
    let got = r.rx.read(0x20000, 112);
    assert_eq!(num_buffers(&got), 1);
    assert_eq!(&got[12..], &frame(100, 6)[..]);
}

#[test]
fn frames_split_anywhere_in_the_stream_are_reassembled() {
    let mut r = rig(true);
    r.rx.add_chain(&[desc(0x20000, 2048, W)]);
    r.rx.add_chain(&[desc(0x30000, 2048, W)]);
    let mut stream = prefixed(&frame(100, 7));
    stream.extend(prefixed(&frame(200, 8)));
    // Cuts inside the first prefix, inside the first frame, and inside the second
    // prefix.
    for (piece, delivered) in [
        (&stream[..2], 0),
        (&stream[2..50], 0),
        (&stream[50..106], 1),
        (&stream[106..], 2),
    ] {
        r.passt.write_all(piece).unwrap();
        r.worker.process_rx();
        assert_eq!(r.rx.used_idx(), delivered);
    }
    assert_eq!(&r.rx.read(0x20000 + 12, 100)[..], &frame(100, 7)[..]);
    assert_eq!(&r.rx.read(0x30000 + 12, 200)[..], &frame(200, 8)[..]);
}

#[test]
fn with_no_receive_buffers_the_socket_is_left_alone() {
    let mut r = rig(true);
    for i in 0..3 {
        r.passt.write_all(&prefixed(&frame(500, i))).unwrap();
    }
    r.worker.process_rx();
    assert!(r.worker.rx_blocked());
    assert!(!r.worker.backend_interest().contains(EventSet::IN));
    assert_eq!(r.irq.queue_count(RX_QUEUE), 0);
    // The driver adds buffers (and would kick the rx queue).
    for i in 0..3 {
        r.rx.add_chain(&[desc(0x20000 + i * 0x1000, 2048, W)]);
    }
    r.worker.process_rx();
    assert!(!r.worker.rx_blocked());
    assert!(r.worker.backend_interest().contains(EventSet::IN));
    assert_eq!(r.rx.used_idx(), 3);
    for i in 0..3u8 {
        let got = r.rx.read(0x20000 + u64::from(i) * 0x1000 + 12, 500);
        assert_eq!(got, frame(500, i), "frame {i} in order");
    }
}

#[test]
fn unusable_receive_chains_are_returned_empty() {
    let mut r = rig(true);
    r.passt.write_all(&prefixed(&frame(60, 9))).unwrap();
    let bad_dir = r.rx.add_chain(&[desc(0x20000, 2048, R)]);
    let too_small = r.rx.add_chain(&[desc(0x21000, 8, W)]);
    let outside = r.rx.add_chain(&[desc(r.rx.mem_size() - 100, 2048, W)]);
    let good = r.rx.add_chain(&[desc(0x22000, 2048, W)]);
    r.worker.process_rx();
    assert_eq!(r.rx.used_idx(), 4);
    assert_eq!(r.rx.used(0), (bad_dir.into(), 0));
    assert_eq!(r.rx.used(1), (too_small.into(), 0));
    assert_eq!(r.rx.used(2), (outside.into(), 0));
    assert_eq!(r.rx.used(3), (good.into(), 72));
    assert_eq!(&r.rx.read(0x22000 + 12, 60)[..], &frame(60, 9)[..]);
}

#[test]
fn malformed_transmit_chains_send_nothing() {
    let mut r = rig(true);
    r.tx.write(0x10000, &frame(100, 0));
    // Device-writable buffer, header cut short, outside memory, too large, a loop.
    r.tx.add_chain(&[desc(0x10000, 12, R), desc(0x11000, 60, W)]);
    r.tx.add_chain(&[desc(0x10000, 8, R)]);
    r.tx.add_chain(&[desc(r.tx.mem_size() - 10, 100, R)]);
    r.tx.add_chain(&[desc(0x10000, (VNET_HDR_LEN + MAX_FRAME_LEN + 1) as u32, R)]);
    r.tx.add_raw(
        &[RawDescriptor::from(Descriptor::new(0x10000, 20, 1, 10))],
        10,
    );
    r.worker.process_tx();
    assert_eq!(r.tx.used_idx(), 5);
    for i in 0..5 {
        assert_eq!(r.tx.used(i).1, 0);
    }
    assert!(nothing_to_read(&r.passt));
}

#[test]
fn a_full_socket_holds_transmit_back_until_it_drains() {
    let mut r = rig(true);
    const N: u16 = 40;
    let payload = frame(60000, 10);
    let mut buf = vec![0u8; 12];
    buf.extend(&payload);
    r.tx.write(0x100000, &buf);
    for _ in 0..N {
        r.tx.add_chain(&[desc(0x100000, buf.len() as u32, R)]);
    }
    r.worker.process_tx();
    let first = r.tx.used_idx();
    assert!(first < N, "a socketpair cannot hold 40 x 60 kB");
    assert!(r.worker.backend_interest().contains(EventSet::OUT));
    let mut passt = r.passt.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        (0..N)
            .map(|_| read_prefixed(&mut passt).len())
            .collect::<Vec<_>>()
    });
    while r.tx.used_idx() < N || r.worker.backend_interest().contains(EventSet::OUT) {
        std::thread::sleep(Duration::from_millis(1));
        r.worker.process_tx();
    }
    assert_eq!(reader.join().unwrap(), vec![60000; N as usize]);
}

#[test]
fn oversized_stream_frames_are_dropped() {
    let mut r = rig(true);
    let mut stream = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    stream.extend(vec![0xff; MAX_FRAME_LEN + 1]);
    stream.extend([0, 0, 0, 0]); // an empty frame
    stream.extend(prefixed(&frame(64, 11)));
    let mut passt = r.passt.try_clone().unwrap();
    let writer = std::thread::spawn(move || passt.write_all(&stream).unwrap());
    r.rx.add_chain(&[desc(0x20000, 2048, W)]);
    while r.rx.used_idx() == 0 {
        r.worker.process_rx();
    }
    writer.join().unwrap();
    assert_eq!(&r.rx.read(0x20000 + 12, 64)[..], &frame(64, 11)[..]);
}

#[test]
fn when_passt_goes_away_the_link_goes_down() {
    let mut r = rig(true);
    drop(r.passt);
    r.worker.process_rx();
    assert!(!r.link_up.load(Ordering::SeqCst));
    assert_eq!(r.irq.config_count(), 1);
    assert!(r.worker.backend_interest().is_empty());
    // Transmit chains still come back (their frames dropped).
    r.tx.write(0x10000, &frame(72, 0));
    r.tx.add_chain(&[desc(0x10000, 72, R)]);
    r.worker.process_tx();
    assert_eq!(r.tx.used_idx(), 1);
}

fn active_queue(t: &TestQueue, index: u16, kick: &EventFd) -> ActiveQueue {
    ActiveQueue {
        index,
        queue: t.queue(),
        kick: kick.try_clone().unwrap(),
    }
}

#[test]
fn the_worker_moves_frames_both_ways_and_survives_reset() {
    let (ours, mut passt) = UnixStream::pair().unwrap();
    passt
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut net = Net::with_backend(MAC, Backend::Passt(Passt::from_stream(ours)));
    let mut config = [0u8; 10];
    net.read_config(0, &mut config);
    assert_eq!(&config[..6], &MAC);
    assert_eq!(
        u16::from_le_bytes([config[6], config[7]]),
        VIRTIO_NET_S_LINK_UP as u16
    );
    assert_eq!(u16::from_le_bytes([config[8], config[9]]), 1);

    for round in 0..2u8 {
        let rx = TestQueue::new();
        let tx = rx.another(0x8000);
        let irq = Arc::new(CountingInterrupt::default());
        let (rx_kick, tx_kick) = (
            EventFd::new(EFD_NONBLOCK).unwrap(),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        );
        net.activate(Activation {
            memory: rx.mem.clone(),
            queues: vec![
                active_queue(&tx, 1, &tx_kick),
                active_queue(&rx, 0, &rx_kick),
            ],
            interrupt: irq.clone(),
            features: net.features(),
        })
        .unwrap();

        // A frame arrives before the driver has receive buffers.
        passt.write_all(&prefixed(&frame(80, round))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        rx.add_chain(&[desc(0x20000, 2048, W)]);
        rx_kick.write(1).unwrap();
        irq.wait_for("a received frame", || irq.queue_count(RX_QUEUE) >= 1);
        assert_eq!(&rx.read(0x20000 + 12, 80)[..], &frame(80, round)[..]);

        tx.write(0x30000, &[0; 12]);
        tx.write(0x30000 + 12, &frame(90, round));
        tx.add_chain(&[desc(0x30000, 102, R)]);
        tx_kick.write(1).unwrap();
        assert_eq!(read_prefixed(&mut passt), frame(90, round));
        irq.wait_for("the transmit interrupt", || irq.queue_count(TX_QUEUE) >= 1);

        net.reset();
    }
}

#[test]
fn activation_needs_both_queues() {
    let (ours, _passt) = UnixStream::pair().unwrap();
    let mut net = Net::with_backend(MAC, Backend::Passt(Passt::from_stream(ours)));
    let rx = TestQueue::new();
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let err = net
        .activate(Activation {
            memory: rx.mem.clone(),
            queues: vec![active_queue(&rx, 0, &kick)],
            interrupt: Arc::new(CountingInterrupt::default()),
            features: net.features(),
        })
        .unwrap_err();
    assert!(matches!(err, ActivateError::Queues { got: 1, need: 2 }));
}

#[test]
fn passt_connect_errors_name_the_socket() {
    let err = Net::new(MAC, NetBackend::Passt("/nonexistent/passt.sock".into()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/passt.sock"), "{err}");
}

/// The real passt, when installed: a DHCP discover sent through the transmit path
/// comes back as an offer in the receive buffers.
#[test]
fn passt_answers_dhcp_through_the_device() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // passt started as root drops to nobody before it binds the socket.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = dir.path().join("passt.sock");
    let spawned = std::process::Command::new("passt")
        .args(["-f", "-q", "--socket"])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut passt) = spawned else {
        return hvbox_test_support::skip("passt is not installed");
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut r = rig(true);
    r.worker = NetWorker::new(
        r.rx.mem.clone(),
        r.rx.queue(),
        r.tx.queue(),
        Backend::Passt(Passt::connect(&sock).unwrap()),
        true,
        r.irq.clone(),
        r.link_up.clone(),
    );
    let heads: Vec<u16> = (0..16)
        .map(|k| r.rx.add_chain(&[desc(0x20000 + k * 0x1000, 2048, W)]))
        .collect();
    let mut buf = vec![0u8; VNET_HDR_LEN];
    buf.extend(dhcp_discover(MAC));
    r.tx.write(0x10000, &buf);
    r.tx.add_chain(&[desc(0x10000, buf.len() as u32, R)]);
    r.worker.process_tx();
    let mut seen = 0;
    let offer = loop {
        r.worker.process_rx();
        let found = (seen..r.rx.used_idx()).find_map(|i| {
            let (head, len) = r.rx.used(i);
            let k = heads.iter().position(|&h| u32::from(h) == head).unwrap() as u64;
            let data = r.rx.read(0x20000 + k * 0x1000, len as usize);
            // IPv4, UDP, from port 67: a DHCP answer.
            let eth = &data[VNET_HDR_LEN..];
            let is_dhcp =
                eth.len() > 300 && eth[12..14] == [8, 0] && eth[23] == 17 && eth[34..36] == [0, 67];
            is_dhcp.then(|| eth.to_vec())
        });
        seen = r.rx.used_idx();
        if let Some(offer) = found {
            break offer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no DHCP answer from passt"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = passt.kill();
    let _ = passt.wait();
    // BOOTREPLY for our hardware address, carrying DHCP message type 2 (offer).
    let bootp = &offer[42..];
    assert_eq!(bootp[0], 2);
    assert_eq!(&bootp[28..34], &MAC);
    assert!(
        bootp[240..].windows(3).any(|w| w == [53, 1, 2]),
        "not an offer"
    );
}

/// Ethernet + IPv4 + UDP + BOOTP broadcast asking for an address.
fn dhcp_discover(mac: [u8; 6]) -> Vec<u8> {
    let mut bootp = vec![0u8; 240];
    bootp[..4].copy_from_slice(&[1, 1, 6, 0]); // request, Ethernet, 6-byte address
    bootp[4..8].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]); // transaction id
    bootp[10] = 0x80; // broadcast reply
    bootp[28..34].copy_from_slice(&mac);
    bootp[236..240].copy_from_slice(&[99, 130, 83, 99]); // magic cookie
    bootp.extend([53, 1, 1, 255]); // DHCPDISCOVER
    let udp_len = (8 + bootp.len()) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
    ];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    let sum = ip
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut frame = vec![0xff; 6];
    frame.extend(mac);
    frame.extend([8, 0]);
    frame.extend(ip);
    frame.extend([0, 68, 0, 67]);
    frame.extend(udp_len.to_be_bytes());
    frame.extend([0, 0]); // no UDP checksum
    frame.extend(bootp);
    frame
}

// TAP

#[test]
fn tap_permission_errors_say_what_to_do() {
    for errno in [libc::EPERM, libc::EACCES] {
        let e = tap_error("tap0", "attaching", io::Error::from_raw_os_error(errno));
        let msg = e.to_string();
        assert!(msg.contains("CAP_NET_ADMIN"), "{msg}");
        assert!(
            msg.contains("ip tuntap add tap0 mode tap user $USER"),
            "{msg}"
        );
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }
    let long = Tap::open("a-name-far-too-long").err().unwrap();
    assert_eq!(long.kind(), io::ErrorKind::InvalidInput);
}

const TAP_CHILD: &str = "HVBOX_TAP_TEST_CHILD";

/// Opens a TAP without privileges. Does its work only when re-run by
/// `an_unprivileged_tap_open_says_what_to_do` as another user.
#[test]
fn tap_open_as_unprivileged_child() {
    if std::env::var_os(TAP_CHILD).is_none() {
        return;
    }
    let err = Net::new(MAC, NetBackend::Tap("hvboxnotap0".into()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("CAP_NET_ADMIN"), "{err}");
    println!("unprivileged error: {err}");
}

#[test]
fn an_unprivileged_tap_open_says_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // The build may live where `nobody` cannot reach (CI keeps it under root's
    // cache), so the child runs from a copy that it can read and execute.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("net-tests");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    for path in [dir.path(), exe.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = std::process::Command::new(&exe);
    cmd.args([
        "--exact",
        "virtio::net::tests::tap_open_as_unprivileged_child",
        "--nocapture",
    ])
    .env(TAP_CHILD, "1");
    if root {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("unprivileged error") && text.contains("1 passed"),
        "{text}"
    );
}

/// With CAP_NET_ADMIN (root here), a real TAP in a private network namespace: a
/// frame the guest sends comes out of the interface, and one sent into it reaches
/// the guest's receive buffers.
#[test]
fn tap_frames_cross_a_real_interface() {
    // A thread of its own, so the namespace change cannot leak into other tests.
    std::thread::spawn(tap_round_trip).join().unwrap();
}

fn tap_round_trip() {
    // SAFETY: affects this thread only; no memory involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return hvbox_test_support::skip(format!(
            "no network namespace: {}",
            io::Error::last_os_error()
        ));
    }
    let tap = match Tap::open("hvbt%d") {
        Ok(tap) => tap,
        Err(e) => return hvbox_test_support::skip(e),
    };
    let name = tap.name().to_string();
    let packet = RawPacket::bind_up(&name);
    let mut r = rig(true);
    r.worker = NetWorker::new(
        r.rx.mem.clone(),
        r.rx.queue(),
        r.tx.queue(),
        Backend::Tap(tap),
        true,
        r.irq.clone(),
        r.link_up.clone(),
    );
    // An Ethernet frame of the local experimental ethertype 0x88b5.
    let eth = |src: u8| {
        let mut f = vec![0xff; 6];
        f.extend([0x02, 0, 0, 0, 0, src, 0x88, 0xb5]);
        f.extend(frame(50, src));
        f
    };
    // Guest to host.
    let mut buf = vec![0u8; 12];
    buf.extend(eth(1));
    r.tx.write(0x10000, &buf);
    r.tx.add_chain(&[desc(0x10000, buf.len() as u32, R)]);
    r.worker.process_tx();
    assert_eq!(packet.recv_ethertype_88b5(), eth(1));
    // Host to guest. The kernel may send its own frames (IPv6 neighbour discovery)
    // once the interface is up, so offer several buffers and look for ours.
    let heads: Vec<u16> = (0..16)
        .map(|k| r.rx.add_chain(&[desc(0x20000 + k * 0x1000, 2048, W)]))
        .collect();
    packet.send(&eth(2));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    loop {
        r.worker.process_rx();
        while seen < r.rx.used_idx() {
            let (head, len) = r.rx.used(seen);
            seen += 1;
            let k = heads.iter().position(|&h| u32::from(h) == head).unwrap() as u64;
            let data = r.rx.read(0x20000 + k * 0x1000, len as usize);
            if data[12 + 12..12 + 14] == [0x88, 0xb5] {
                assert_eq!(&data[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
                assert_eq!(&data[12..], &eth(2)[..]);
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no frame from the TAP"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An AF_PACKET socket on an interface, which it brings up.
struct RawPacket(std::os::fd::OwnedFd);

impl RawPacket {
    fn bind_up(ifname: &str) -> RawPacket {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket and ioctl calls on fds we own, with an ifreq we own.
        unsafe {
            let ctl = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            assert!(ctl >= 0);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
                *d = s as libc::c_char;
            }
            assert_eq!(libc::ioctl(ctl, libc::SIOCGIFFLAGS, &mut ifr), 0);
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as i16;
            assert_eq!(libc::ioctl(ctl, libc::SIOCSIFFLAGS, &mut ifr), 0);
            assert_eq!(libc::ioctl(ctl, libc::SIOCGIFINDEX, &mut ifr), 0);
            let index = ifr.ifr_ifru.ifru_ifindex;
            libc::close(ctl);
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            );
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            addr.sll_ifindex = index;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            assert_eq!(
                libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
                0
            );
            let timeout = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            RawPacket(std::os::fd::OwnedFd::from_raw_fd(fd))
        }
    }

    fn send(&self, frame: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: `frame` is valid for reads of its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "{}", io::Error::last_os_error());
    }

    /// The next frame of ethertype 0x88b5 (the kernel sends its own traffic too).
    fn recv_ethertype_88b5(&self) -> Vec<u8> {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            assert!(n > 0, "no frame on the TAP: {}", io::Error::last_os_error());
            if buf[12..14] == [0x88, 0xb5] {
                return buf[..n as usize].to_vec();
            }
        }
    }
}

#[test]
fn a_pause_puts_receive_buffers_taken_but_not_filled_back() {
    let mut r = rig(true);
    // A frame bigger than the one buffer there is: the worker takes it and waits.
    r.passt.write_all(&prefixed(&frame(3000, 1))).unwrap();
    r.rx.add_chain(&[desc(0x20000, 2048, W)]);
    r.worker.process_rx();
    assert!(r.worker.rx_blocked());
    assert_eq!(r.rx.used_idx(), 0);
    r.worker.finish_for_pause();
    let (_, rx, _) = r.worker.into_parts();
    assert_eq!((rx.next_avail(), rx.next_used()), (0, 0));
}

#[test]
fn a_pause_returns_receive_buffers_it_cannot_put_back_empty() {
    let mut r = rig(true);
    r.passt.write_all(&prefixed(&frame(5000, 2))).unwrap();
    let first = r.rx.add_chain(&[desc(0x20000, 2048, W)]);
    // Unusable, and returned at once: the buffers around it cannot go back.
    r.rx.add_chain(&[desc(0x30000, 2048, R)]);
    let third = r.rx.add_chain(&[desc(0x40000, 2048, W)]);
    r.worker.process_rx();
    assert_eq!(r.rx.used_idx(), 1);
    r.worker.finish_for_pause();
    assert_eq!(r.rx.used_idx(), 3);
    assert_eq!(r.rx.used(1), (first.into(), 0));
    assert_eq!(r.rx.used(2), (third.into(), 0));
    let (_, rx, _) = r.worker.into_parts();
    assert_eq!((rx.next_avail(), rx.next_used()), (3, 3));
}

#[test]
fn a_pause_sends_what_the_driver_queued() {
    let mut r = rig(true);
    r.tx.write(0x10000, &[0; 12]);
    r.tx.write(0x10000 + 12, &frame(70, 3));
    r.tx.add_chain(&[desc(0x10000, 82, R)]);
    r.worker.finish_for_pause();
    assert_eq!(read_prefixed(&mut r.passt), frame(70, 3));
    assert_eq!(r.tx.used_idx(), 1);
    assert_eq!(r.irq.queue_count(TX_QUEUE), 1);
}

#[test]
fn the_announcement_is_a_rarp_request_for_the_guests_mac() {
    let mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
    let frame = announcement(mac);
    let (header, frame) = frame.split_at(VNET_HDR_LEN);
    assert_eq!(header, [0; VNET_HDR_LEN], "no offloads");
    assert_eq!(frame.len(), 60, "Ethernet's minimum");
    let expected: Vec<u8> = [
        &[0xff; 6][..],         // to everyone
        &mac,                   // from the guest
        &[0x80, 0x35],          // RARP
        &[0, 1, 0x08, 0, 6, 4], // Ethernet hardware, IPv4 protocol, their lengths
        &[0, 3],                // request reverse
        &mac,
        &[0; 4],
        &mac,
        &[0; 4],
    ]
    .concat();
    assert_eq!(&frame[..expected.len()], expected);
    assert!(frame[expected.len()..].iter().all(|&b| b == 0), "padding");
}
