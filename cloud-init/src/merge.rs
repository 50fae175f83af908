//! How hvbox combines its cloud-config with the user's.
//!
//! The `user-data` hvbox writes is built in three layers, each merged over
//! the one before:
//!
//! 1. **hvbox's own settings**: the login user with its ssh key and
//!    passwordless sudo, the pinned ssh host key, hostname, disk growth
//!    (`growpart`, `resize_rootfs`) and the readiness beacon (`final_message`).
//! 2. **hvbox.yaml's convenience keys**: `timezone`, `packages`,
//!    `write_files`, `runcmd`.
//! 3. **the user's cloud-config** (`user_data` in hvbox.yaml).
//!
//! Merging rules:
//!
//! - Mappings merge key by key, recursively.
//! - Lists are appended: hvbox's items first, then hvbox.yaml's, then the
//!   user's (so `packages` and `runcmd` from both places all take effect).
//! - On a plain value (text, number, true/false) the user wins, e.g.
//!   `timezone`, `ssh_pwauth`, `growpart.mode`, `disable_root`.
//! - A list or mapping cannot be replaced by a different kind of value: that
//!   is an error rather than a silent loss of the other side's items.
//! - Keys hvbox must own are errors that say why, never silently dropped:
//!   - `ssh_keys`, `ssh_deletekeys`, `ssh_genkeytypes`: hvbox generates the
//!     guest's only ssh host key and pins it in the machine's known_hosts;
//!     other keys would be unverifiable, and keeping the box image's keys
//!     would give every machine made from the box the same host key.
//!   - `final_message`: carries hvbox's readiness beacon, which hvbox waits
//!     for on the serial console.
//!   - `hostname` and `preserve_hostname: true`: the hostname comes from
//!     hvbox.yaml (the same value is accepted); `fqdn` is accepted when its
//!     first label is that hostname.
//!   - `network`: cloud-init ignores it in user-data; hvbox writes the
//!     network-config from hvbox.yaml's `network` settings.
//!   - `cloud_init_modules`, `cloud_config_modules`, `cloud_final_modules`:
//!     they replace the image's module lists, and hvbox relies on the
//!     users, ssh, growpart and final-message modules running.
//!   - `merge_how`, `merge_type`: hvbox performs the merge itself, by the
//!     rules above; cloud-init would not apply them to a single document.
//!   - a top-level `ssh_authorized_keys` unless `users` includes `default`
//!     or `disable_root` is false: cloud-init gives those keys to its default
//!     user, which hvbox does not create, and to root, whose login
//!     `disable_root` blocks; they would let nobody in.
//! - `users` must be a list. An entry named like hvbox's user merges into
//!   hvbox's entry: its `ssh_authorized_keys` and `groups` are appended
//!   (hvbox's key always stays), other fields follow the rules above, so
//!   `lock_passwd: false`, a password, `shell` or `gecos` are fine. It may
//!   not make sudo ask for a password (hvbox runs `sudo` non-interactively:
//!   every `sudo` rule must be NOPASSWD and one must be `NOPASSWD:ALL`), nor
//!   set `ssh_redirect_user`, `no_create_home` or `system` to true (each
//!   would stop hvbox's key from logging in). Other entries, including a
//!   bare `default` (the image's default user), are appended.
//!
//! `disable_root`, `ssh_pwauth`, `manage_etc_hosts`, `growpart` and
//! `resize_rootfs` are hvbox defaults the user may change: none of them
//! stops hvbox from reaching or recognising the machine.
//!
//! The user's YAML is read as cloud-init reads it (YAML 1.1: unquoted `yes`
//! and `on` are true, `0644` is the octal 420, anchors and `<<` work), and the
//! merged document is written as JSON after the `#cloud-config` line, which
//! cloud-init's YAML reader takes literally.

use serde_json::{Map, Value};

use crate::yaml11::{Entry, Kind, Node};
use crate::{Error, UserData};

mod users;
use users::merge_users;

/// Who hvbox's part of the config is for.
pub(crate) struct Owner<'a> {
    pub user: &'a str,
    pub hostname: &'a str,
}

const MODULE_LISTS: &str = "it replaces the image's list of modules, and hvbox relies on the users, ssh, growpart and final-message modules running";
const MERGERS: &str = "hvbox merges its config and yours itself (mappings merged, lists appended, your plain values win); cloud-init would not apply it to a single document";

/// Top-level keys the user may not set, and why.
const OWNED: &[(&str, &str)] = &[
    ("ssh_keys", "hvbox generates the guest's ssh host key and pins it in the machine's known_hosts; another host key could not be verified"),
    ("ssh_deletekeys", "hvbox deletes the host keys baked into the box image, which every machine made from the box shares, so that only the pinned host key remains"),
    ("ssh_genkeytypes", "hvbox installs exactly one host key, the ed25519 key it pins in the machine's known_hosts; generated keys could not be verified"),
    ("final_message", "hvbox uses final_message as its readiness beacon, which it waits for on the serial console"),
    ("network", "cloud-init ignores `network` in user-data; set `network` in hvbox.yaml, from which hvbox writes the network-config"),
    ("cloud_init_modules", MODULE_LISTS),
    ("cloud_config_modules", MODULE_LISTS),
    ("cloud_final_modules", MODULE_LISTS),
    ("merge_how", MERGERS),
    ("merge_type", MERGERS),
];

/// Layer 2 over layer 1: hvbox's part sets none of these keys.
pub(crate) fn add_convenience(doc: &mut Map<String, Value>, extra: Map<String, Value>) {
    for (key, value) in extra {
        let replaced = doc.insert(key, value);
        debug_assert!(replaced.is_none(), "hvbox's part sets no convenience key");
    }
}

/// Layer 3 over layers 1 and 2, by the rules in the module docs.
pub(crate) fn merge_user_data(
    doc: &mut Map<String, Value>,
    ud: &UserData,
    owner: &Owner,
) -> Result<(), Error> {
    for e in ud.entries() {
        let key = e.key.as_str();
        if let Some((_, why)) = OWNED.iter().find(|(k, _)| *k == key) {
            return Err(owned(ud, e, why));
        }
        match key {
            "hostname" if e.value.as_str() != Some(owner.hostname) => {
                return Err(owned(
                    ud,
                    e,
                    &format!(
                        "the hostname comes from hvbox.yaml (here {:?}); set `hostname` there",
                        owner.hostname
                    ),
                ));
            }
            "preserve_hostname" if e.value.kind != Kind::Scalar(Value::Bool(false)) => {
                return Err(owned(
                    ud,
                    e,
                    "it would keep the image's hostname instead of the one in hvbox.yaml",
                ));
            }
            "fqdn" => {
                check_fqdn(ud, e, owner.hostname)?;
                merge_key(doc, e, ud, key)?;
            }
            "users" => merge_users(doc, ud, &e.value, owner.user)?,
            _ => merge_key(doc, e, ud, key)?,
        }
    }
    check_top_level_keys(doc, ud, owner.user)
}

fn owned(ud: &UserData, e: &Entry, why: &str) -> Error {
    ud.error(
        e.line,
        format!("`{}` cannot be set in user-data: {why}", e.key),
    )
}

fn check_fqdn(ud: &UserData, e: &Entry, hostname: &str) -> Result<(), Error> {
    let first = e.value.as_str().and_then(|f| f.split('.').next());
    if first != Some(hostname) {
        return Err(owned(ud, e, &format!("cloud-init would take the hostname from it; its first label must be the hostname from hvbox.yaml, {hostname:?}")));
    }
    Ok(())
}

/// Merges one user entry into a mapping, by the general rules.
pub(super) fn merge_key(
    doc: &mut Map<String, Value>,
    e: &Entry,
    ud: &UserData,
    path: &str,
) -> Result<(), Error> {
    match doc.get_mut(&e.key) {
        Some(slot) => merge_value(slot, e, ud, path),
        None => {
            doc.insert(e.key.clone(), e.value.to_json());
            Ok(())
        }
    }
}

/// Merges the value of `e` into `base`; errors point at `e`'s key.
fn merge_value(base: &mut Value, e: &Entry, ud: &UserData, path: &str) -> Result<(), Error> {
    let over = &e.value;
    match (base, &over.kind) {
        (Value::Object(b), Kind::Map(entries)) => {
            for e in entries {
                merge_key(b, e, ud, &format!("{path}.{}", e.key))?;
            }
            Ok(())
        }
        (Value::Array(b), Kind::Seq(items)) => {
            b.extend(items.iter().map(Node::to_json));
            Ok(())
        }
        (b @ (Value::Object(_) | Value::Array(_)), _) => {
            let kind = if b.is_object() { "a mapping" } else { "a list" };
            Err(ud.error(e.line, format!(
                "`{path}` is {kind} in hvbox's part of the config (its own settings and hvbox.yaml's), \
                 but {} here; give {kind} so the two can be merged", describe(over)
            )))
        }
        (slot, _) => {
            *slot = over.to_json();
            Ok(())
        }
    }
}

fn describe(node: &Node) -> &'static str {
    match &node.kind {
        Kind::Map(_) => "a mapping",
        Kind::Seq(_) => "a list",
        Kind::Scalar(Value::Null) => "empty",
        Kind::Scalar(Value::String(_)) => "text",
        Kind::Scalar(_) => "a plain value",
    }
}

/// Checks that need the whole merged document.
fn check_top_level_keys(doc: &Map<String, Value>, ud: &UserData, me: &str) -> Result<(), Error> {
    let Some(e) = ud.entries().iter().find(|e| e.key == "ssh_authorized_keys") else {
        return Ok(());
    };
    let has_default = doc["users"]
        .as_array()
        .is_some_and(|l| l.iter().any(|u| *u == "default"));
    let root_allowed = doc.get("disable_root") == Some(&Value::Bool(false));
    if has_default || root_allowed {
        return Ok(());
    }
    Err(ud.error(e.line, format!(
        "top-level `ssh_authorized_keys` would let nobody in: cloud-init gives them to its default user, \
         which this config does not create, and to root, whose login `disable_root` blocks. \
         To log in as hvbox's user, list them under `users: [{{name: {me}, ssh_authorized_keys: [...]}}]`; \
         for the image's default user, add `- default` to `users`"
    )))
}

#[cfg(test)]
mod tests;
