//! What hvbox relies on to give machines a proxy that listens on the host's
//! loopback: a guest's TCP connection to passt's gateway address (the host's
//! default IPv4 gateway) is connected by passt to the host's 127.0.0.1. Checked
//! against the real passt, speaking to it as a guest does: Ethernet frames on its
//! socket, each behind its 4-byte big-endian length.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Any address: passt answers from the guest's side whatever its source.
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
        if *f.get(1)? != "00000000" || flags & 0x3 != 0x3 {
            return None;
        }
        let raw = u32::from_str_radix(f.get(2)?, 16).ok()?;
        Some(Ipv4Addr::from(raw.to_le_bytes()))
    })
}

/// The length and the frame in one write, as QEMU and hvbox's VMM send them. Written
/// apart, passt at times never answered the ARP request (about one run in three on a
/// quiet host; 20 runs of one write all passed).
fn send(s: &mut UnixStream, frame: &[u8]) {
    let mut message = (frame.len() as u32).to_be_bytes().to_vec();
    message.extend_from_slice(frame);
    s.write_all(&message).unwrap();
}

fn recv(s: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).unwrap();
    frame
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

/// A TCP SYN from the guest to `dst:port`, in an Ethernet frame to `dst_mac`.
fn syn(dst_mac: &[u8], dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&40000u16.to_be_bytes());
    tcp.extend_from_slice(&port.to_be_bytes());
    tcp.extend_from_slice(&1000u32.to_be_bytes()); // sequence
    tcp.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
    tcp.extend_from_slice(&[5 << 4, 0x02]); // 20-byte header, SYN
    tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&GUEST_IP.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&tcp);
    let sum = checksum(&pseudo).to_be_bytes();
    tcp[16..18].copy_from_slice(&sum);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(20 + tcp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend_from_slice(&GUEST_IP.octets());
    ip.extend_from_slice(&dst.octets());
    let sum = checksum(&ip).to_be_bytes();
    ip[10..12].copy_from_slice(&sum);
    let mut frame = dst_mac.to_vec();
    frame.extend_from_slice(&GUEST_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&tcp);
    frame
}

#[test]
fn a_connection_to_passts_gateway_reaches_the_hosts_loopback() {
    let Some(gateway) = default_gateway() else {
        return hvbox_test_support::skip("this host has no IPv4 default route for passt to use");
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(passt) = hvbox_test_support::passt::Passt::start(dir.path()) else {
        return;
    };
    // What a proxy on the host's loopback is, to passt.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    proxy.set_nonblocking(true).unwrap();

    let mut s = UnixStream::connect(&passt.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // ARP: who has the gateway?
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&GUEST_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&GUEST_MAC);
    arp.extend_from_slice(&GUEST_IP.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&gateway.octets());
    send(&mut s, &arp);
    let gateway_mac = loop {
        let f = recv(&mut s);
        if f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] {
            break f[22..28].to_vec();
        }
    };

    send(&mut s, &syn(&gateway_mac, gateway, port));
    let syn_ack = loop {
        let f = recv(&mut s);
        if f[12..14] == [0x08, 0x00] && f[23] == 6 {
            break f[14 + 20 + 13];
        }
    };
    assert_eq!(syn_ack & 0x12, 0x12, "passt did not accept the connection");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let peer = loop {
        match proxy.accept() {
            Ok((_, peer)) => break peer,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nothing reached 127.0.0.1:{port} from {gateway}:{port} in the guest"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(peer.ip().is_loopback(), "{peer}");
}
