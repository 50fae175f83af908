//! Rejects values that would yield a seed cloud-init refuses or silently misapplies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Error, NetworkSettings, SeedConfig, WriteFile};

fn invalid(msg: String) -> Error {
    Error::InvalidConfig(msg)
}

pub(crate) fn seed(cfg: &SeedConfig) -> Result<(), Error> {
    for (field, value) in [
        ("instance_id", &cfg.instance_id),
        ("hostname", &cfg.hostname),
        ("user", &cfg.user),
    ] {
        token(field, value)?;
    }
    // The id goes into final_message, where cloud-init expands `$name`.
    if cfg.instance_id.contains('$') {
        return Err(invalid(format!(
            "instance_id must not contain `$`, got {:?}",
            cfg.instance_id
        )));
    }
    mac(&cfg.mac)?;
    if cfg.host_key.private_openssh.trim().is_empty()
        || cfg.host_key.public_openssh.trim().is_empty()
    {
        return Err(invalid(
            "host_key must hold both the private and the public key".into(),
        ));
    }
    for key in cfg
        .authorized_keys
        .iter()
        .chain([&cfg.host_key.public_openssh])
    {
        if key.trim().is_empty() || key.trim_end().contains(['\n', '\r']) {
            return Err(invalid(format!(
                "an ssh public key must be one non-empty line, got {key:?}"
            )));
        }
    }
    for g in &cfg.user_groups {
        if g.is_empty() || g.contains(',') || g.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(format!("user_groups: group names must be non-empty without commas or whitespace, got {g:?}")));
        }
    }
    network(&cfg.network)?;
    crate::mounts::validate(&cfg.mounts)?;
    crate::proxy::validate(&cfg.proxy)?;
    if let Some(tz) = &cfg.timezone {
        timezone(tz)?;
    }
    for p in &cfg.packages {
        token("packages", p)?;
    }
    for f in &cfg.write_files {
        write_file(f, &cfg.user)?;
    }
    if let Some(cmd) = cfg.runcmd.iter().find(|c| c.trim().is_empty()) {
        return Err(invalid(format!(
            "runcmd: commands must not be empty, got {cmd:?}"
        )));
    }
    Ok(())
}

fn token(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "{field} must be non-empty without whitespace, got {value:?}"
        )));
    }
    Ok(())
}

fn mac(mac: &str) -> Result<(), Error> {
    let octets: Vec<&str> = mac.split(':').collect();
    let ok = octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(invalid(format!(
            "mac must look like 52:54:00:12:34:56, got {mac:?}"
        )));
    }
    Ok(())
}

/// Static addressing is checked here, with the standard library's address
/// parsers, so a typo fails `hvbox up` instead of leaving the guest offline.
fn network(n: &NetworkSettings) -> Result<(), Error> {
    let mut has_v4 = false;
    let mut has_v6 = false;
    for a in &n.addresses {
        match cidr(a)? {
            IpAddr::V4(_) => has_v4 = true,
            IpAddr::V6(_) => has_v6 = true,
        }
    }
    if !(n.dhcp4 || n.dhcp6 || has_v4 || has_v6) {
        return Err(invalid("network: with dhcp4 and dhcp6 off, give at least one static address, or the machine cannot be reached".into()));
    }
    if let Some(g) = &n.gateway4 {
        g.parse::<Ipv4Addr>().map_err(|_| {
            invalid(format!(
                "network.gateway4 must be an IPv4 address, got {g:?}"
            ))
        })?;
        if !has_v4 {
            return Err(invalid(format!(
                "network.gateway4 {g} needs a static IPv4 address in network.addresses"
            )));
        }
    }
    if let Some(g) = &n.gateway6 {
        g.parse::<Ipv6Addr>().map_err(|_| {
            invalid(format!(
                "network.gateway6 must be an IPv6 address, got {g:?}"
            ))
        })?;
        if !has_v6 {
            return Err(invalid(format!(
                "network.gateway6 {g} needs a static IPv6 address in network.addresses"
            )));
        }
    }
    for ns in &n.nameservers {
        ns.parse::<IpAddr>()
            .map_err(|_| invalid(format!("network.nameservers: {ns:?} is not an IP address")))?;
    }
    Ok(())
}

/// "ADDRESS/PREFIX", e.g. "192.168.10.5/24" or "fd00::5/64".
fn cidr(text: &str) -> Result<IpAddr, Error> {
    let bad = |why: &str| invalid(format!("network.addresses: {text:?} {why}"));
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(bad(
            "needs a prefix length, e.g. \"192.168.10.5/24\" or \"fd00::5/64\"",
        ));
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| bad("does not start with an IPv4 or IPv6 address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max && prefix.bytes().all(|b| b.is_ascii_digit()) => Ok(ip),
        _ => Err(bad(&format!(
            "has a prefix length that is not a number from 0 to {max}"
        ))),
    }
}

/// IANA names such as "UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+3".
fn timezone(tz: &str) -> Result<(), Error> {
    let ok = !tz.is_empty()
        && tz.split('/').all(|part| {
            !part.is_empty()
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c))
        });
    if !ok {
        return Err(invalid(format!(
            "timezone must be an IANA name like \"Europe/Paris\", got {tz:?}"
        )));
    }
    Ok(())
}

fn write_file(f: &WriteFile, login_user: &str) -> Result<(), Error> {
    let path = &f.path;
    if !path.starts_with('/') || path.ends_with('/') || path.contains(['\0', '\n', '\r']) {
        return Err(invalid(format!(
            "write_files: path must be an absolute file path, got {path:?}"
        )));
    }
    if let Some(p) = &f.permissions {
        let octal = (3..=5).contains(&p.len()) && p.bytes().all(|b| matches!(b, b'0'..=b'7'));
        if !octal || u32::from_str_radix(p, 8).is_ok_and(|m| m > 0o7777) {
            return Err(invalid(format!(
                "write_files {path}: permissions must be an octal mode as text, like \"0644\" or \"0755\", got {p:?}"
            )));
        }
    }
    if let Some(owner) = &f.owner {
        let (user, group) = match owner.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (owner.as_str(), None),
        };
        if user.is_empty()
            || group == Some("")
            || owner.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(format!(
                "write_files {path}: owner must be \"user\" or \"user:group\", got {owner:?}"
            )));
        }
        // write_files runs before users are created: the chown would fail,
        // leaving the file root's and skipping the files after it.
        if (user == login_user || group == Some(login_user)) && !f.defer {
            return Err(invalid(format!(
                "write_files {path}: owner {owner:?} is the user cloud-init creates later in the same boot; set defer so the file is written after it exists"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::cfg;

    /// Applies `f` to a valid config and returns the validation message.
    fn reject(f: impl FnOnce(&mut SeedConfig)) -> String {
        let mut c = cfg();
        f(&mut c);
        match seed(&c) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_fixture_and_full_settings() {
        seed(&cfg()).unwrap();
        let mut c = cfg();
        c.network.addresses = vec![
            "10.0.0.2/8".into(),
            "fd00::2/128".into(),
            "0.0.0.0/0".into(),
        ];
        c.network.gateway4 = Some("10.0.0.1".into());
        c.network.gateway6 = Some("fd00::1".into());
        c.timezone = Some("America/Argentina/Buenos_Aires".into());
        c.write_files = vec![WriteFile {
            path: "/etc/x".into(),
            permissions: Some("1777".into()),
            owner: Some("root:adm".into()),
            ..Default::default()
        }];
        seed(&c).unwrap();
    }

    #[test]
    fn identity_fields() {
        assert!(reject(|c| c.mac = "52:54:00:12:34".into()).contains("mac"));
        assert!(reject(|c| c.mac = "52-54-00-12-34-56".into()).contains("mac"));
        assert!(reject(|c| c.hostname = String::new()).contains("hostname"));
        assert!(reject(|c| c.user = "a b".into()).contains("user"));
        assert!(reject(|c| c.instance_id = "id-$UPTIME".into()).contains('$'));
        assert!(
            reject(|c| c.authorized_keys.push("ssh-ed25519 A\nssh-rsa B".into()))
                .contains("one non-empty line")
        );
        assert!(reject(|c| c.host_key.private_openssh.clear()).contains("host_key"));
        assert!(reject(|c| c.user_groups.push("a,b".into())).contains("user_groups"));
    }

    #[test]
    fn network_settings() {
        let m = reject(|c| c.network.addresses.push("10.0.0.5".into()));
        assert!(m.contains("\"10.0.0.5\" needs a prefix length"), "{m}");
        let m = reject(|c| c.network.addresses.push("10.0.0.256/24".into()));
        assert!(m.contains("IPv4 or IPv6 address"), "{m}");
        let m = reject(|c| c.network.addresses.push("10.0.0.5/33".into()));
        assert!(m.contains("0 to 32"), "{m}");
        let m = reject(|c| c.network.addresses.push("fd00::1/+64".into()));
        assert!(m.contains("0 to 128"), "{m}");
        let m = reject(|c| c.network.gateway4 = Some("10.0.0.1".into()));
        assert!(m.contains("needs a static IPv4 address"), "{m}");
        let m = reject(|c| {
            c.network.addresses.push("10.0.0.5/24".into());
            c.network.gateway4 = Some("fd00::1".into());
        });
        assert!(m.contains("gateway4 must be an IPv4 address"), "{m}");
        let m = reject(|c| c.network.gateway6 = Some("fd00::1".into()));
        assert!(m.contains("needs a static IPv6 address"), "{m}");
        let m = reject(|c| c.network.nameservers.push("dns.example".into()));
        assert!(m.contains("not an IP address"), "{m}");
        let m = reject(|c| {
            c.network.dhcp4 = false;
            c.network.dhcp6 = false;
        });
        assert!(m.contains("at least one static address"), "{m}");
    }

    #[test]
    fn convenience_keys() {
        assert!(reject(|c| c.timezone = Some("Europe/../etc".into())).contains("timezone"));
        assert!(reject(|c| c.timezone = Some("Paris time".into())).contains("timezone"));
        assert!(reject(|c| c.packages.push("a b".into())).contains("packages"));
        assert!(reject(|c| c.runcmd.push(" ".into())).contains("runcmd"));
        let file = |f: fn(&mut WriteFile)| {
            move |c: &mut SeedConfig| {
                let mut w = WriteFile {
                    path: "/etc/x".into(),
                    ..Default::default()
                };
                f(&mut w);
                c.write_files.push(w);
            }
        };
        assert!(reject(file(|w| w.path = "etc/x".into())).contains("absolute"));
        for bad in ["644x", "0844", "rw-r--r--", "10000", "77", "0o644"] {
            let m = reject(file_with_permissions(bad));
            assert!(m.contains("octal mode"), "{bad}: {m}");
        }
        assert!(reject(file(|w| w.owner = Some("root:".into()))).contains("owner"));
        let m = reject(file(|w| w.owner = Some("hv".into())));
        assert!(m.contains("set defer"), "{m}");
        let m = reject(file(|w| w.owner = Some("root:hv".into())));
        assert!(m.contains("set defer"), "{m}");
    }

    fn file_with_permissions(p: &'static str) -> impl FnOnce(&mut SeedConfig) {
        move |c| {
            c.write_files.push(WriteFile {
                path: "/etc/x".into(),
                permissions: Some(p.into()),
                ..Default::default()
            })
        }
    }
}
