//! hvbox's own cloud-config, the spec's convenience keys, and the merged `user-data`.

use serde_json::{json, Map, Value};

use crate::merge::{self, Owner};
use crate::render::render;
use crate::{validate, Error, SeedConfig};

/// Marks the console line cloud-init prints at the end of every boot.
pub const READY_BEACON: &str = "hvbox-ready";

/// The exact text that appears on the guest's serial console when cloud-init
/// has finished a boot of the machine with `instance_id` (its `final_message`,
/// printed by the final stage of every boot, first boot included).
///
/// Search each console line for it as a substring: systemd forwards the
/// message to the console, possibly after a timestamp and `cloud-init[PID]: `.
/// The brackets keep one instance id from matching a longer one.
pub fn ready_line(instance_id: &str) -> String {
    format!("[{READY_BEACON} {instance_id}]")
}

/// The `user-data` document: `#cloud-config` followed by JSON (see
/// [`crate::merge`] for how the three layers combine).
pub fn user_data(cfg: &SeedConfig) -> Result<String, Error> {
    validate::seed(cfg)?;
    let mut doc = hvbox_part(cfg);
    merge::add_convenience(&mut doc, convenience_part(cfg));
    crate::proxy::add(&mut doc, &cfg.proxy);
    if let Some(user) = &cfg.user_data {
        let owner = Owner {
            user: &cfg.user,
            hostname: &cfg.hostname,
        };
        merge::merge_user_data(&mut doc, user, &owner)?;
    }
    Ok(format!("#cloud-config\n{}", render(&doc)))
}

/// What hvbox needs in every guest: one sudo user, a pinned host key, a root
/// filesystem that fills the (possibly grown) disk, and the readiness beacon.
fn hvbox_part(cfg: &SeedConfig) -> Map<String, Value> {
    let mut user = json!({
        "name": cfg.user,
        "shell": "/bin/bash",
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "lock_passwd": true,
        "ssh_authorized_keys": cfg.authorized_keys,
    });
    if !cfg.user_groups.is_empty() {
        user["groups"] = json!(cfg.user_groups);
    }
    if let Some(uid) = cfg.user_uid {
        user["uid"] = json!(uid);
    }
    let mut doc = json!({
        "hostname": cfg.hostname,
        "preserve_hostname": false,
        "manage_etc_hosts": true,
        "users": [user],
        "ssh_pwauth": false,
        "disable_root": true,
        // The box image's host keys are shared by every machine made from it.
        "ssh_deletekeys": true,
        // Only the pinned key below exists. The list cannot be empty (the
        // schema needs one item); an existing key file is never regenerated.
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {
            "ed25519_private": cfg.host_key.private_openssh,
            "ed25519_public": cfg.host_key.public_openssh,
        },
        "growpart": {"mode": "auto", "devices": ["/"]},
        "resize_rootfs": true,
        "final_message": ready_line(&cfg.instance_id),
    });
    if !cfg.mounts.is_empty() {
        doc["bootcmd"] = json!([["sh", "-c", crate::boot_script(&cfg.mounts)]]);
    }
    match doc {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// The spec's shorthands, as cloud-config keys.
fn convenience_part(cfg: &SeedConfig) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(tz) = &cfg.timezone {
        m.insert("timezone".into(), json!(tz));
    }
    if !cfg.packages.is_empty() {
        m.insert("packages".into(), json!(cfg.packages));
    }
    if !cfg.write_files.is_empty() {
        let files = cfg.write_files.iter().map(|f| {
            let mut e = json!({"path": f.path, "content": f.content});
            if let Some(p) = &f.permissions {
                e["permissions"] = json!(p);
            }
            if let Some(o) = &f.owner {
                e["owner"] = json!(o);
            }
            if f.append {
                e["append"] = json!(true);
            }
            if f.defer {
                e["defer"] = json!(true);
            }
            e
        });
        m.insert("write_files".into(), Value::Array(files.collect()));
    }
    if !cfg.runcmd.is_empty() {
        m.insert("runcmd".into(), json!(cfg.runcmd));
    }
    m
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{cfg, parse};
    use crate::WriteFile;

    #[test]
    fn user_data_is_cloud_config() {
        let c = cfg();
        let text = user_data(&c).unwrap();
        assert!(text.starts_with("#cloud-config\n"));
        let v = parse(&text);
        assert_eq!(
            v["users"],
            json!([{
                "name": "hv",
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": true,
                "ssh_authorized_keys": [c.authorized_keys[0]],
            }])
        );
        assert_eq!(v["ssh_pwauth"], false);
        assert_eq!(v["disable_root"], true);
        assert_eq!(v["ssh_deletekeys"], true);
        assert_eq!(v["ssh_genkeytypes"], json!(["ed25519"]));
        assert_eq!(
            v["ssh_keys"]["ed25519_private"],
            c.host_key.private_openssh.as_str()
        );
        assert_eq!(
            v["ssh_keys"]["ed25519_public"],
            c.host_key.public_openssh.as_str()
        );
        assert_eq!(v["hostname"], "dev-box");
        assert_eq!(v["preserve_hostname"], false);
        assert_eq!(v["manage_etc_hosts"], true);
        assert_eq!(v["growpart"], json!({"mode": "auto", "devices": ["/"]}));
        assert_eq!(v["resize_rootfs"], true);
        assert_eq!(v["final_message"], "[hvbox-ready hvbox-0123abcd]");
        for absent in ["timezone", "packages", "write_files", "runcmd"] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn ready_line_is_the_final_message() {
        let line = ready_line("hvbox-42");
        assert!(line.contains(READY_BEACON) && line.contains("hvbox-42"));
        let mut c = cfg();
        c.instance_id = "hvbox-42".into();
        assert_eq!(parse(&user_data(&c).unwrap())["final_message"], line);
        // No id's beacon appears inside a longer id's.
        assert!(!ready_line("hvbox-420").contains(&line));
    }

    #[test]
    fn convenience_keys() {
        let mut c = cfg();
        c.user_groups = vec!["docker".into(), "adm".into()];
        c.timezone = Some("Europe/Paris".into());
        c.packages = vec!["htop".into(), "git".into()];
        c.runcmd = vec!["echo one".into(), "touch /x".into()];
        c.write_files = vec![
            WriteFile {
                path: "/etc/motd".into(),
                content: "hi\n".into(),
                ..Default::default()
            },
            WriteFile {
                path: "/home/hv/.bashrc".into(),
                content: "alias ll='ls -l'\n".into(),
                permissions: Some("0600".into()),
                owner: Some("hv:hv".into()),
                append: true,
                defer: true,
            },
        ];
        let v = parse(&user_data(&c).unwrap());
        assert_eq!(v["users"][0]["groups"], json!(["docker", "adm"]));
        assert_eq!(v["timezone"], "Europe/Paris");
        assert_eq!(v["packages"], json!(["htop", "git"]));
        assert_eq!(v["runcmd"], json!(["echo one", "touch /x"]));
        assert_eq!(
            v["write_files"],
            json!([
                {"path": "/etc/motd", "content": "hi\n"},
                {"path": "/home/hv/.bashrc", "content": "alias ll='ls -l'\n", "permissions": "0600",
                 "owner": "hv:hv", "append": true, "defer": true},
            ])
        );
    }

    #[test]
    fn tricky_strings_round_trip() {
        let mut c = cfg();
        c.authorized_keys = vec![
            "ssh-ed25519 AAAA key: with # colon".into(),
            "'quoted\" yes".into(),
        ];
        let v = parse(&user_data(&c).unwrap());
        assert_eq!(
            v["users"][0]["ssh_authorized_keys"],
            json!(c.authorized_keys)
        );
    }

    #[test]
    fn debug_redacts_private_key() {
        let s = format!("{:?}", cfg());
        assert!(!s.contains("b3BlbnNzaC1rZXk"));
        assert!(s.contains("<redacted>"));
    }
}
