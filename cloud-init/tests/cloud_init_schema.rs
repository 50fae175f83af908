//! Every document hvbox generates, checked by Debian's real cloud-init: the
//! cloud-config schema for user-data, and for network-config the schema
//! where that cloud-init has one, plus a render for Debian's ifupdown.

mod common;

use std::path::{Path, PathBuf};

use common::cloud_init::CloudInit;
use common::{full, plain, proxied, rich};
use hvbox_cloud_init::{network_config, user_data, NetworkSettings, SeedConfig};

/// The unpacked cloud-init, or `None` (after saying why) on hosts without apt.
fn cloud_init() -> Option<&'static CloudInit> {
    match CloudInit::get() {
        Ok(ci) => {
            eprintln!("checking with cloud-init {}", ci.version);
            Some(ci)
        }
        Err(reason) => {
            hvbox_test_support::skip(reason);
            None
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn user_data_passes_the_schema() {
    let Some(ci) = cloud_init() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg) in [
        ("plain", plain()),
        ("full", full()),
        ("rich", rich()),
        ("proxied", proxied()),
    ] {
        let path = write(dir.path(), name, &user_data(&cfg).unwrap());
        ci.check_cloud_config(&path);
    }
}

/// The checker itself must be able to fail, or the test above proves nothing.
#[test]
fn the_schema_check_catches_errors() {
    let Some(ci) = cloud_init() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad",
        "#cloud-config\n{\"ssh_genkeytypes\": [], \"runcmd\": \"x\"}\n",
    );
    let caught = std::panic::catch_unwind(|| ci.check_cloud_config(&bad));
    let msg = caught.expect_err("cloud-init accepted an invalid config");
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("ssh_genkeytypes") && msg.contains("runcmd"),
        "{msg}"
    );
}

fn static_only() -> SeedConfig {
    SeedConfig {
        network: NetworkSettings {
            dhcp4: false,
            dhcp6: false,
            addresses: vec!["10.1.2.3/16".into()],
            gateway4: Some("10.1.0.1".into()),
            gateway6: None,
            nameservers: vec!["10.1.0.53".into()],
        },
        ..plain()
    }
}

#[test]
fn network_config_renders_for_ifupdown_and_networkd() {
    let Some(ci) = cloud_init() else { return };
    let dir = tempfile::tempdir().unwrap();
    let schema = ci.has_network_schema();
    if !schema {
        eprintln!(
            "cloud-init {} has no network-config schema (`schema --schema-type` came later): \
             checking by rendering for Debian's ifupdown only",
            ci.version
        );
    }
    let cases: [(&str, SeedConfig, &[&str]); 3] = [
        (
            "dhcp",
            plain(),
            &["auto eth0", "iface eth0 inet dhcp", "iface eth0 inet6 dhcp"],
        ),
        (
            "dhcp-and-static",
            full(),
            &[
                "iface eth0 inet dhcp",
                "iface eth0 inet6 dhcp",
                "iface eth0 inet static",
                "address 192.168.10.5/24",
                "gateway 192.168.10.1",
                "iface eth0 inet6 static",
                "address fd00:10::5/64",
                "gateway fd00:10::1",
                "dns-nameservers 192.168.10.1 fd00:10::1",
            ],
        ),
        (
            "static-only",
            static_only(),
            &[
                "iface eth0 inet static",
                "address 10.1.2.3/16",
                "gateway 10.1.0.1",
                "dns-nameservers 10.1.0.53",
            ],
        ),
    ];
    for (name, cfg, want) in cases {
        let path = write(dir.path(), name, &network_config(&cfg).unwrap());
        if schema {
            ci.check_network_schema(&path);
        }
        let out = dir.path().join(format!("{name}.out"));
        let eni = ci.render_eni(&path, &cfg.mac, &out);
        for line in want {
            assert!(
                eni.lines().any(|l| l.trim() == *line),
                "{name}: no `{line}` in:\n{eni}"
            );
        }
        if name == "static-only" {
            assert!(!eni.contains("dhcp"), "{name}: DHCP is off:\n{eni}");
        }
        // hvbox's own boxes render for systemd-networkd: the NIC found by MAC and
        // name (hvbox boots with net.ifnames=0), DHCP and addresses as above.
        let networkd = ci.render_networkd(&path, &cfg.mac, &dir.path().join(format!("{name}.nd")));
        let dhcp = match (cfg.network.dhcp4, cfg.network.dhcp6) {
            (true, true) => "DHCP=yes",
            (true, false) => "DHCP=ipv4",
            (false, true) => "DHCP=ipv6",
            (false, false) => "DHCP=no",
        };
        let mut expected = vec![
            "[Match]".to_string(),
            "Name=eth0".into(),
            format!("MACAddress={}", cfg.mac),
        ];
        expected.extend(cfg.network.addresses.iter().map(|a| format!("Address={a}")));
        expected.push(dhcp.into());
        for line in &expected {
            assert!(
                networkd.lines().any(|l| l.trim() == line),
                "{name}: no `{line}` in the networkd file:\n{networkd}"
            );
        }
        // The NIC is found by MAC and renamed eth0.
        let rules =
            std::fs::read_to_string(out.join("etc/udev/rules.d/70-persistent-net.rules")).unwrap();
        assert!(
            rules.contains(&cfg.mac) && rules.contains("NAME=\"eth0\""),
            "{rules}"
        );
    }
}
