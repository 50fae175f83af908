//! Seed configs shared by the unit tests.

use crate::{HostKey, SeedConfig};

pub(crate) fn cfg() -> SeedConfig {
    SeedConfig {
        instance_id: "hvbox-0123abcd".into(),
        hostname: "dev-box".into(),
        user: "hv".into(),
        authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me@host".into()],
        host_key: HostKey {
            private_openssh: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----\n".into(),
            public_openssh: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost root@dev-box".into(),
        },
        mac: "52:54:00:12:34:56".into(),
        ..Default::default()
    }
}

/// Parses a rendered document; a YAML parser reads JSON too.
pub(crate) fn parse(doc: &str) -> serde_json::Value {
    let body = doc.strip_prefix("#cloud-config\n").unwrap_or(doc);
    serde_json::from_str(body).unwrap()
}
