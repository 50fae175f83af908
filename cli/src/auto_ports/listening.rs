//! The guest's listening TCP sockets, from the lines of its `/proc/net/tcp` and
//! `/proc/net/tcp6`, and which of them to forward, to where in the guest.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kernel's TCP_LISTEN, as /proc/net/tcp prints a socket's state.
const LISTEN: &str = "0A";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub address: IpAddr,
    pub port: u16,
}

/// A socket line of /proc/net/tcp or tcp6 (`sl local rem st …`) that is listening;
/// `None` for the header, other states, and anything malformed.
pub fn parse_line(line: &str) -> Option<Listener> {
    let mut fields = line.split_whitespace();
    fields.next()?.strip_suffix(':')?;
    let (address, port) = fields.next()?.split_once(':')?;
    fields.next()?;
    if fields.next()? != LISTEN {
        return None;
    }
    Some(Listener {
        address: parse_address(address)?,
        port: u16::from_str_radix(port, 16).ok().filter(|p| *p != 0)?,
    })
}

/// The kernel prints an address as 32-bit words in the guest's byte order
/// (little-endian on x86-64): `0100007F` is 127.0.0.1.
fn parse_address(hex: &str) -> Option<IpAddr> {
    if !hex.is_ascii() {
        return None;
    }
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_le_bytes(),
        )
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            // A v4-mapped listener is an IPv4 one.
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

/// Where a connection to a listener on `address` goes from inside the guest, and
/// how good a way in that is (lower is better); `None` for listeners not offered
/// to the host: other loopback addresses than 127.0.0.1 (resolver stubs such as
/// systemd-resolved's 127.0.0.53:53 serve the guest alone) and IPv6 link-local
/// ones (unreachable without an interface).
fn way_in(address: IpAddr) -> Option<(u8, IpAddr)> {
    match address {
        IpAddr::V4(a) if a.is_unspecified() || a == Ipv4Addr::LOCALHOST => {
            Some((0, IpAddr::V4(Ipv4Addr::LOCALHOST)))
        }
        IpAddr::V4(a) if a.is_loopback() => None,
        IpAddr::V6(a) if a.is_unspecified() || a.is_loopback() => {
            Some((1, IpAddr::V6(Ipv6Addr::LOCALHOST)))
        }
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => None,
        other => Some((2, other)),
    }
}

/// The guest's sshd: hvbox's own way in, never offered again.
pub const GUEST_SSH_PORT: u16 = 22;

/// Each port to forward with the guest address to connect to, in port order;
/// `skip` are guest ports not to forward (the spec's own forwards, which take
/// precedence, and sshd's).
pub fn to_forward(listeners: &[Listener], skip: &[u16]) -> BTreeMap<u16, IpAddr> {
    let mut best: BTreeMap<u16, (u8, IpAddr)> = BTreeMap::new();
    for l in listeners {
        if l.port == GUEST_SSH_PORT || skip.contains(&l.port) {
            continue;
        }
        let Some(way) = way_in(l.address) else {
            continue;
        };
        best.entry(l.port)
            .and_modify(|old| {
                if way.0 < old.0 {
                    *old = way;
                }
            })
            .or_insert(way);
    }
    best.into_iter().map(|(port, (_, to))| (port, to)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As a Debian 12 guest printed them: sshd on both stacks, a Python web
    /// server on :: (dual stack), a loopback-only server, a resolver stub, an
    /// established connection and a socket bound to the guest's own address.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 15305 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20011 1 0000000000000000 100 0 0 10 0
   2: 3500007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 17123 1 0000000000000000 100 0 0 10 0
   3: 0F02000A:0016 0202000A:C4D2 01 00000000:00000000 02:0008A4C1 00000000     0        0 18291 2 0000000000000000 20 4 30 10 -1
   4: 0F02000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20400 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 15307 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20102 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20103 1 0000000000000000 100 0 0 10 0
   3: 0000000000000000FFFF00000100007F:2710 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20104 1 0000000000000000 100 0 0 10 0
   4: 000080FE00000000FF565254563412FE:2AF8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20105 1 0000000000000000 100 0 0 10 0
";

    fn listeners(text: &str) -> Vec<Listener> {
        text.lines().filter_map(parse_line).collect()
    }

    #[test]
    fn listening_sockets_are_read_with_their_addresses() {
        let v4 = listeners(TCP);
        let at = |a: &str, port| Listener {
            address: a.parse().unwrap(),
            port,
        };
        assert_eq!(
            v4,
            [
                at("0.0.0.0", 22),
                at("127.0.0.1", 3000),
                at("127.0.0.53", 53),
                at("10.0.2.15", 8080),
            ]
        );
        assert_eq!(
            listeners(TCP6),
            [
                at("::", 22),
                at("::", 8000),
                at("::1", 9000),
                at("127.0.0.1", 10000),
                at("fe80::5452:56ff:fe12:3456", 11000),
            ]
        );
        // Whatever else a line holds, it is no listener.
        for junk in [
            "",
            "   0: 0100007F:0BB8 00000000:0000 01",
            "   0: 0100007F 00000000:0000 0A",
            "   0: 0100007Z:0BB8 00000000:0000 0A",
            "   0: 0100007F:0000 00000000:0000 0A",
            "   0: 0100007F0:0BB8 00000000:0000 0A",
            "   0: 0100007É:0BB8 00000000:0000 0A",
        ] {
            assert_eq!(parse_line(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn each_port_is_forwarded_once_to_the_best_way_in() {
        let all: Vec<Listener> = listeners(TCP).into_iter().chain(listeners(TCP6)).collect();
        let chosen: Vec<(u16, String)> = to_forward(&all, &[8000])
            .into_iter()
            .map(|(p, a)| (p, a.to_string()))
            .collect();
        assert_eq!(
            chosen,
            [
                (3000, "127.0.0.1".to_string()),
                (8080, "10.0.2.15".to_string()),
                (9000, "::1".to_string()),
                (10000, "127.0.0.1".to_string()),
            ]
        );
        // IPv4 wins over IPv6 for the same port.
        let both = [
            Listener {
                address: "::".parse().unwrap(),
                port: 5000,
            },
            Listener {
                address: "0.0.0.0".parse().unwrap(),
                port: 5000,
            },
        ];
        assert_eq!(
            to_forward(&both, &[])[&5000],
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
