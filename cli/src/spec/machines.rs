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

use super::layer::Layer;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Longest machine name: it names a folder, an ssh Host (`hvbox-NAME`) and, by
/// default, the guest's hostname.
pub const MAX_NAME: usize = 32;

/// A machine's name and its own layer of settings.
pub type NamedLayer = (String, Layer);

#[derive(Debug)]
pub struct Machines(pub Vec<NamedLayer>);

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
        let mut machines: Vec<NamedLayer> = Vec::new();
        while let Some(name) = map.next_key_seed(NameSeed { seen: &machines })? {
            // `db:` with no settings is a machine with the defaults.
            let layer: Layer = map.next_value()?;
            machines.push((name, layer));
        }
        if machines.is_empty() {
            return Err(de::Error::custom(
                "it names no machine: list at least one under it, or remove the key for a single machine",
            ));
        }
        Ok(Machines(machines))
    }
}

/// Reads a machine name, checked where it is written: valid and not seen before.
struct NameSeed<'a> {
    seen: &'a [NamedLayer],
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a machine name such as \"web\"")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<String, E> {
        check_name(name).map_err(E::custom)?;
        if self.seen.iter().any(|(n, _)| n == name) {
            return Err(E::custom(format!("machine `{name}` is defined twice")));
        }
        Ok(name.to_string())
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
