//! `machines:`: the project's named machines, in the order the spec lists them (the
//! order `up`, `status` and the others go through them).
//!
//! ```yaml
//! machines:
//!   web:
//!     ports: [{ host: 8080, guest: 80 }]
//!   db:
//!     memory: 2G
//! ```

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Longest machine name: it names a folder, an ssh Host (`hvbox-NAME`) and, by
/// default, the guest's hostname.
pub const MAX_NAME: usize = 32;

/// The machines' names, in the spec's order. Each machine's settings are read
/// afterwards, key by key like the top level's (see [`super::read`]), so that a
/// problem in one does not hide the others.
#[derive(Debug)]
pub struct Machines(pub Vec<String>);

/// Lowercase letters, digits and inner `-`, starting with a letter: valid as a
/// folder name, in an ssh Host and as a hostname (which may not end with `-`).
pub fn check_name(name: &str) -> Result<(), String> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts_with_letter || !allowed || name.ends_with('-') || name.len() > MAX_NAME {
        return Err(format!(
            "{name:?} is not a valid machine name: use lowercase letters, digits and '-', starting with a letter and not ending with '-', at most {MAX_NAME} characters"
        ));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Machines {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MachinesVisitor)
    }
}

struct MachinesVisitor;

impl<'de> Visitor<'de> for MachinesVisitor {
    type Value = Machines;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of machine names to their settings, such as `web: {memory: 2G}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Machines, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            names.push(name);
        }
        if names.is_empty() {
            return Err(de::Error::custom(
                "it names no machine: list at least one under it, or remove the key for a single machine",
            ));
        }
        Ok(Machines(names))
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn machine_names() {
        for ok in ["web", "db-1", "a", "x2", &"a".repeat(32)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Web",
            "1db",
            "-db",
            "db-",
            "db_1",
            "db.1",
            "wéb",
            &"a".repeat(33),
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains("not a valid machine name"), "{bad}: {e}");
        }
    }
}
