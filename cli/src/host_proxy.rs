//! The host's proxy variables as the machines' seeds carry them. A proxy on the
//! host's loopback (`127.0.0.1`, `localhost`) means the guest itself there, so it
//! is given as the default gateway address passt hands the guest: passt connects a
//! guest's TCP connection to that address to the host's 127.0.0.1 (passt(1),
//! `--no-map-gw`, later `--map-host-loopback`, whose default is that address).

use hvbox_boxes::masked_proxy;
use hvbox_cloud_init::GuestProxy;
use std::net::Ipv4Addr;
use std::ops::Range;
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
        let value = fit_for_guest(&name, value.trim(), true, &mut notes)?;
        let Some(host) = loopback_host(&value) else {
            return Some(value);
        };
        match gateway.filter(|_| &value[host.clone()] != "[::1]") {
            Some(gw) => {
                let moved = format!("{}{gw}{}", &value[..host.start], &value[host.end..]);
                notes.push(format!(
                    "{name}={} is on this host's loopback; machines get {}, the address passt connects to this host's 127.0.0.1",
                    masked_proxy(&value),
                    masked_proxy(&moved)
                ));
                Some(moved)
            }
            None => {
                notes.push(format!(
                    "{name}={} is on this host's loopback, which machines cannot reach{}; not passed to them (use an address of this host they can reach)",
                    masked_proxy(&value),
                    if gateway.is_none() { " (this host has no IPv4 default route for passt to map)" } else { " over IPv6" }
                ));
                None
            }
        }
    };
    let proxy = GuestProxy {
        http: guest("http_proxy"),
        https: guest("https_proxy"),
        no_proxy: read("no_proxy")
            .and_then(|(name, v)| fit_for_guest(&name, v.trim(), false, &mut notes)),
    };
    (proxy, notes)
}

/// `value` as a machine's `/etc/environment` (a double-quoted line) and apt's
/// configuration can hold it: a `\` or `"` (a Windows domain user,
/// `CORP\user`) is percent-encoded in a proxy address, as curl and apt decode it
/// in the user name and password; in `no_proxy`'s list of hosts, or a control
/// character anywhere, the variable is left out. Either way with a note.
fn fit_for_guest(
    name: &str,
    value: &str,
    address: bool,
    notes: &mut Vec<String>,
) -> Option<String> {
    let shown = masked_proxy(value);
    if value.chars().any(char::is_control) {
        notes.push(format!(
            "{name} holds a control character, which a machine's /etc/environment cannot; not passed to machines"
        ));
        return None;
    }
    if !value.contains(['\\', '"']) {
        return Some(value.to_string());
    }
    if !address {
        notes.push(format!(
            "{name}={shown} holds `\\` or `\"`, which a machine's /etc/environment cannot; not passed to machines"
        ));
        return None;
    }
    let encoded = value.replace('\\', "%5C").replace('"', "%22");
    notes.push(format!(
        "{name}={shown} holds `\\` or `\"`, which a machine's /etc/environment and apt's configuration cannot; machines get {} (percent-encoded, as curl and apt decode it)",
        masked_proxy(&encoded)
    ));
    Some(encoded)
}

/// Where the host part of a proxy address is, as written, when it is the host's
/// loopback: `[scheme://][user[:pw]@]host[:port][/…]`.
fn loopback_host(value: &str) -> Option<Range<usize>> {
    let start = value.find("://").map_or(0, |i| i + 3);
    let rest = &value[start..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host_at = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_at..];
    let host = if host_port.starts_with('[') {
        &host_port[..host_port.find(']')? + 1]
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    let is_loopback = host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback());
    let at = start + host_at;
    is_loopback.then_some(at..at + host.len())
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

    /// Notes are printed on every `up`: a password in them is masked.
    #[test]
    fn notes_mask_the_password() {
        let (p, notes) = run(&[("https_proxy", "http://me:pw@127.0.0.1:3128")], GW);
        assert_eq!(p.https.as_deref(), Some("http://me:pw@192.168.1.1:3128"));
        assert_eq!(
            notes,
            ["https_proxy=http://me:***@127.0.0.1:3128 is on this host's loopback; machines get http://me:***@192.168.1.1:3128, the address passt connects to this host's 127.0.0.1"]
        );
        let (_, notes) = run(&[("http_proxy", "http://me:pw@[::1]:3128")], GW);
        assert!(
            notes[0].starts_with("http_proxy=http://me:***@[::1]:3128 "),
            "{notes:?}"
        );
    }

    /// The host is replaced where it stands, not where its text first occurs.
    #[test]
    fn the_host_is_replaced_not_its_text_in_the_password() {
        let (p, _) = run(&[("http_proxy", "http://u:x127.0.0.1@127.0.0.1:3128")], GW);
        assert_eq!(
            p.http.as_deref(),
            Some("http://u:x127.0.0.1@192.168.1.1:3128")
        );
        let (p, _) = run(&[("http_proxy", "localhost:1/localhost")], GW);
        assert_eq!(p.http.as_deref(), Some("192.168.1.1:1/localhost"));
    }

    /// `\` and `"` cannot stand in /etc/environment's quoted lines: an address
    /// gets them percent-encoded, a host list is left out; never an error.
    #[test]
    fn backslashes_and_quotes_are_encoded_or_left_out() {
        let (p, notes) = run(
            &[
                ("http_proxy", r#"http://CORP\user:p"w@proxy:8080"#),
                ("no_proxy", r"a\b"),
            ],
            GW,
        );
        assert_eq!(
            p.http.as_deref(),
            Some("http://CORP%5Cuser:p%22w@proxy:8080")
        );
        assert_eq!(p.no_proxy, None);
        assert_eq!(
            notes[0],
            r#"http_proxy=http://CORP\user:***@proxy:8080 holds `\` or `"`, which a machine's /etc/environment and apt's configuration cannot; machines get http://CORP%5Cuser:***@proxy:8080 (percent-encoded, as curl and apt decode it)"#
        );
        assert!(notes[1].starts_with("no_proxy=a\\b holds"), "{notes:?}");
    }

    #[test]
    fn control_characters_leave_the_variable_out() {
        let (p, notes) = run(&[("http_proxy", "http://proxy\n:1")], GW);
        assert_eq!(p.http, None);
        assert!(notes[0].contains("control character"), "{notes:?}");
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
