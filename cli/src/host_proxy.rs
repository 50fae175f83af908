//! The host's proxy variables as the machines' seeds carry them. A proxy on the
//! host's loopback (`127.0.0.1`, `localhost`) means the guest itself there, so it
//! is given as the default gateway address passt hands the guest: passt connects a
//! guest's TCP connection to that address to the host's 127.0.0.1 (passt(1),
//! `--no-map-gw`, later `--map-host-loopback`, whose default is that address).

use hvbox_cloud_init::GuestProxy;
use std::net::Ipv4Addr;
use std::sync::OnceLock;

/// The guest's proxies, read once per run; what was changed or left out is said
/// once, on standard error.
pub fn for_guests() -> &'static GuestProxy {
    static PROXY: OnceLock<GuestProxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let (proxy, notes) = translate(|name| std::env::var(name).ok(), host_gateway());
        for note in notes {
            eprintln!("hvbox: note: {note}");
        }
        proxy
    })
}

/// The guest's proxies from the host's variables (upper case first, as hvbox's
/// own downloads read them), with loopback proxies moved to `gateway`; and what to
/// tell the user about it.
pub fn translate(
    var: impl Fn(&str) -> Option<String>,
    gateway: Option<Ipv4Addr>,
) -> (GuestProxy, Vec<String>) {
    let read = |lower: &str| {
        let upper = lower.to_ascii_uppercase();
        [upper, lower.to_string()].into_iter().find_map(|name| {
            var(&name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        })
    };
    let mut notes = Vec::new();
    let mut guest = |lower: &str| -> Option<String> {
        let (name, value) = read(lower)?;
        let value = value.trim().to_string();
        let Some(host) = loopback_host(&value) else {
            return Some(value);
        };
        match gateway.filter(|_| host != "[::1]") {
            Some(gw) => {
                let moved = value.replacen(host, &gw.to_string(), 1);
                notes.push(format!(
                    "{name}={value} is on this host's loopback; machines get {moved}, the address passt connects to this host's 127.0.0.1"
                ));
                Some(moved)
            }
            None => {
                notes.push(format!(
                    "{name}={value} is on this host's loopback, which machines cannot reach{}; not passed to them (use an address of this host they can reach)",
                    if gateway.is_none() { " (this host has no IPv4 default route for passt to map)" } else { " over IPv6" }
                ));
                None
            }
        }
    };
    let proxy = GuestProxy {
        http: guest("http_proxy"),
        https: guest("https_proxy"),
        no_proxy: read("no_proxy").map(|(_, v)| v.trim().to_string()),
    };
    (proxy, notes)
}

/// The host part of a proxy address, as written, when it is the host's loopback:
/// `[scheme://][user[:pw]@]host[:port][/…]`.
fn loopback_host(value: &str) -> Option<&str> {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        &host_port[..host_port.find(']')? + 1]
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    let is_loopback = host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback());
    is_loopback.then_some(host)
}

/// The gateway of the host's first IPv4 default route, as passt takes it for the
/// guest (`/proc/net/route`: hexadecimal, in the kernel's byte order).
fn host_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    gateway_in(&table)
}

fn gateway_in(table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, flags) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        if *dest != "00000000" || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY {
            return None;
        }
        let raw = u32::from_str_radix(gw, 16).ok()?;
        Some(Ipv4Addr::from(raw.to_le_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)], gw: Option<Ipv4Addr>) -> (GuestProxy, Vec<String>) {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        translate(|n| map.get(n).cloned(), gw)
    }

    const GW: Option<Ipv4Addr> = Some(Ipv4Addr::new(192, 168, 1, 1));

    #[test]
    fn proxies_elsewhere_pass_as_they_are() {
        let (p, notes) = run(
            &[
                ("http_proxy", "http://proxy.corp:3128"),
                ("HTTPS_PROXY", "http://10.1.1.1:8080/"),
                ("no_proxy", "localhost,127.0.0.1,.corp"),
            ],
            GW,
        );
        assert_eq!(p.http.as_deref(), Some("http://proxy.corp:3128"));
        assert_eq!(p.https.as_deref(), Some("http://10.1.1.1:8080/"));
        assert_eq!(p.no_proxy.as_deref(), Some("localhost,127.0.0.1,.corp"));
        assert!(notes.is_empty(), "{notes:?}");
        assert!(run(&[], GW).0.is_empty());
    }

    #[test]
    fn upper_case_first_as_downloads_read_them() {
        let (p, _) = run(
            &[
                ("http_proxy", "http://lower:1"),
                ("HTTP_PROXY", "http://upper:1"),
            ],
            GW,
        );
        assert_eq!(p.http.as_deref(), Some("http://upper:1"));
    }

    #[test]
    fn loopback_proxies_move_to_passts_gateway() {
        let (p, notes) = run(
            &[
                ("http_proxy", "http://127.0.0.1:3128"),
                ("https_proxy", "http://me:pw@localhost:3129/"),
            ],
            GW,
        );
        assert_eq!(p.http.as_deref(), Some("http://192.168.1.1:3128"));
        assert_eq!(p.https.as_deref(), Some("http://me:pw@192.168.1.1:3129/"));
        assert_eq!(notes.len(), 2);
        assert_eq!(
            notes[0],
            "http_proxy=http://127.0.0.1:3128 is on this host's loopback; machines get http://192.168.1.1:3128, the address passt connects to this host's 127.0.0.1"
        );
        // Without a scheme, as some tools write it.
        let (p, _) = run(&[("http_proxy", "127.0.0.2:3128")], GW);
        assert_eq!(p.http.as_deref(), Some("192.168.1.1:3128"));
    }

    #[test]
    fn unreachable_loopback_proxies_are_left_out_with_a_note() {
        let (p, notes) = run(&[("http_proxy", "http://127.0.0.1:3128")], None);
        assert_eq!(p.http, None);
        assert!(notes[0].contains("no IPv4 default route") && notes[0].contains("not passed"));
        let (p, notes) = run(&[("https_proxy", "http://[::1]:3128")], GW);
        assert_eq!(p.https, None);
        assert!(notes[0].contains("over IPv6"), "{notes:?}");
        // A host that only starts like a loopback name is not one.
        let (p, notes) = run(&[("http_proxy", "http://localhost.corp:3128")], GW);
        assert_eq!(p.http.as_deref(), Some("http://localhost.corp:3128"));
        assert!(notes.is_empty());
    }

    #[test]
    fn the_default_routes_gateway() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(gateway_in(table), Some(Ipv4Addr::new(192, 168, 2, 1)));
        assert_eq!(gateway_in("Iface\tDestination\n"), None);
    }
}
