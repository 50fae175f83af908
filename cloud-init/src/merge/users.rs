//! `users`: the user's entry for hvbox's login user merges into hvbox's own.

use serde_json::{Map, Value};

use super::merge_key;
use crate::yaml11::{Entry, Kind, Node};
use crate::{Error, UserData};

/// `users`: hvbox's user merges into hvbox's entry; other entries are appended.
pub(super) fn merge_users(
    doc: &mut Map<String, Value>,
    ud: &UserData,
    users: &Node,
    me: &str,
) -> Result<(), Error> {
    let Kind::Seq(items) = &users.kind else {
        return Err(ud.error(users.line, format!(
            "`users` must be a list here (cloud-init also takes other forms, but hvbox merges your entries with its own user {me:?} and needs a list)"
        )));
    };
    let list = match doc.get_mut("users") {
        Some(Value::Array(list)) => list,
        _ => unreachable!("hvbox's part always has a users list"),
    };
    for item in items {
        match (&item.kind, item.get("name").and_then(Node::as_str)) {
            (Kind::Scalar(Value::String(name)), _) if name == me => {} // adds nothing to hvbox's entry
            (Kind::Map(entries), Some(name)) if name == me => {
                merge_own_user(&mut list[0], entries, ud, me)?;
            }
            _ => {
                let v = item.to_json();
                if !list.contains(&v) {
                    list.push(v);
                }
            }
        }
    }
    Ok(())
}

/// The user's fields for hvbox's own login user.
fn merge_own_user(
    mine: &mut Value,
    entries: &[Entry],
    ud: &UserData,
    me: &str,
) -> Result<(), Error> {
    let mine = mine
        .as_object_mut()
        .expect("hvbox's user entry is a mapping");
    let path = |k: &str| format!("users[{me}].{k}");
    for e in entries {
        match e.key.as_str() {
            "name" => {}
            "sudo" => {
                check_sudo(&e.value).map_err(|why| ud.error(e.line, format!(
                    "`sudo` for hvbox's user {me:?} {why}: hvbox runs commands in the guest with sudo and no password \
                     (provisioning, upgrade-kernel), so every rule must be NOPASSWD and one must allow everything, \
                     e.g. \"ALL=(ALL) NOPASSWD:ALL\" (sudo applies the last rule that matches)"
                )))?;
                mine.insert("sudo".into(), e.value.to_json());
            }
            key @ ("ssh_redirect_user" | "no_create_home" | "system") => {
                if e.value.kind != Kind::Scalar(Value::Bool(false)) {
                    let effect = match key {
                        "ssh_redirect_user" => "replaces the user's authorized keys with a message",
                        "no_create_home" => {
                            "leaves the user without a home directory for authorized_keys"
                        }
                        _ => "makes a system account without a home directory for authorized_keys",
                    };
                    return Err(ud.error(e.line, format!(
                        "`{key}` cannot be set for hvbox's user {me:?}: it {effect}, so hvbox's ssh key could not log in"
                    )));
                }
                mine.insert(key.into(), Value::Bool(false));
            }
            "groups" => {
                let more = group_list(&e.value).ok_or_else(|| {
                    ud.error(
                        e.line,
                        format!(
                            "`{}` must be a list of group names or comma-separated text",
                            path("groups")
                        ),
                    )
                })?;
                append_unique(mine, "groups", more);
            }
            "ssh_authorized_keys" => {
                let Kind::Seq(items) = &e.value.kind else {
                    return Err(ud.error(
                        e.line,
                        format!(
                            "`{}` must be a list of public keys, which hvbox appends to its own",
                            path("ssh_authorized_keys")
                        ),
                    ));
                };
                append_unique(
                    mine,
                    "ssh_authorized_keys",
                    items.iter().map(Node::to_json).collect(),
                );
            }
            _ => merge_key(mine, e, ud, &path(&e.key))?,
        }
    }
    Ok(())
}

/// Passwordless for every command: each rule NOPASSWD, one of them for ALL.
fn check_sudo(node: &Node) -> Result<(), &'static str> {
    let rules: Vec<&str> = match &node.kind {
        Kind::Scalar(Value::String(s)) => vec![s],
        Kind::Seq(items) => items
            .iter()
            .map(Node::as_str)
            .collect::<Option<_>>()
            .ok_or("must be text or a list of text")?,
        _ => return Err("must be a sudo rule or a list of them"),
    };
    let compact: Vec<String> = rules
        .iter()
        .map(|r| r.split_whitespace().collect())
        .collect();
    let each_nopasswd = compact.iter().all(|r| {
        r.contains("NOPASSWD:") && r.matches("PASSWD:").count() == r.matches("NOPASSWD:").count()
    });
    if !each_nopasswd {
        return Err("has a rule that asks for a password");
    }
    if !compact.iter().any(|r| r.ends_with("NOPASSWD:ALL")) {
        return Err("has no rule allowing every command without a password");
    }
    Ok(())
}

/// cloud-init takes groups as a list or as "a, b" text.
fn group_list(node: &Node) -> Option<Vec<Value>> {
    match &node.kind {
        Kind::Scalar(Value::String(s)) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| Value::String(g.into()))
                .collect(),
        ),
        Kind::Seq(items) => items
            .iter()
            .map(|i| i.as_str().map(|s| Value::String(s.into())))
            .collect(),
        _ => None,
    }
}

fn append_unique(entry: &mut Map<String, Value>, key: &str, more: Vec<Value>) {
    let list = entry.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    let list = list
        .as_array_mut()
        .expect("hvbox writes these fields as lists");
    for v in more {
        if !list.contains(&v) {
            list.push(v);
        }
    }
}
