//! The `network-config` document (version 2) for the machine's one NIC.

use serde_json::{json, Value};

use crate::render::render;
use crate::{validate, Error, SeedConfig};

/// The NIC with `cfg.mac`, renamed eth0: matching by MAC plus `set-name` is
/// what Debian's ifupdown renderer handles (a `name: "e*"` glob is not).
/// DHCPv4 and DHCPv6 by default, plus any static addresses.
pub fn network_config(cfg: &SeedConfig) -> Result<String, Error> {
    validate::seed(cfg)?;
    let n = &cfg.network;
    let mut nic = json!({
        "match": {"macaddress": cfg.mac},
        "set-name": "eth0",
        "dhcp4": n.dhcp4,
        "dhcp6": n.dhcp6,
    });
    if !n.addresses.is_empty() {
        nic["addresses"] = json!(n.addresses);
    }
    // gateway4/gateway6 rather than `routes`: cloud-init's v2 reader and the
    // ifupdown renderer have supported them the longest.
    if let Some(g) = &n.gateway4 {
        nic["gateway4"] = json!(g);
    }
    if let Some(g) = &n.gateway6 {
        nic["gateway6"] = json!(g);
    }
    if !n.nameservers.is_empty() {
        nic["nameservers"] = json!({"addresses": n.nameservers});
    }
    let doc: Value = json!({"version": 2, "ethernets": {"eth0": nic}});
    Ok(render(&doc))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{cfg, parse};
    use crate::NetworkSettings;

    #[test]
    fn dhcp_on_both_families_by_default() {
        let n = parse(&network_config(&cfg()).unwrap());
        assert_eq!(
            n,
            json!({"version": 2, "ethernets": {"eth0": {
                "match": {"macaddress": "52:54:00:12:34:56"},
                "set-name": "eth0",
                "dhcp4": true,
                "dhcp6": true,
            }}})
        );
    }

    #[test]
    fn static_addresses() {
        let mut c = cfg();
        c.network = NetworkSettings {
            dhcp4: false,
            dhcp6: true,
            addresses: vec!["192.168.10.5/24".into(), "fd00::5/64".into()],
            gateway4: Some("192.168.10.1".into()),
            gateway6: Some("fd00::1".into()),
            nameservers: vec!["192.168.10.1".into(), "2001:4860:4860::8888".into()],
        };
        let eth0 = parse(&network_config(&c).unwrap())["ethernets"]["eth0"].clone();
        assert_eq!(eth0["dhcp4"], false);
        assert_eq!(eth0["dhcp6"], true);
        assert_eq!(eth0["addresses"], json!(["192.168.10.5/24", "fd00::5/64"]));
        assert_eq!(eth0["gateway4"], "192.168.10.1");
        assert_eq!(eth0["gateway6"], "fd00::1");
        assert_eq!(
            eth0["nameservers"],
            json!({"addresses": ["192.168.10.1", "2001:4860:4860::8888"]})
        );
    }
}
