//! `ports:`: forwards from a host port to a guest port, and `- auto: false`, which
//! turns off the automatic forwarding of ports the guest listens on.
//!
//! An entry is read by hand so that a wrong mix of keys is an error at the entry's
//! own line and column (serde_yaml stamps errors raised while a mapping is read
//! with the mapping's position), as with provision steps.

use super::{loopback, Port, PortForward, Protocol};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;

/// One entry of `ports:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortEntry {
    Forward(PortForward),
    /// `auto: false` turns automatic forwarding off; `auto: true` says the default.
    Auto(bool),
}

/// The forwards an entry list declares.
pub fn forwards(entries: &[PortEntry]) -> impl Iterator<Item = &PortForward> {
    entries.iter().filter_map(|e| match e {
        PortEntry::Forward(p) => Some(p),
        PortEntry::Auto(_) => None,
    })
}

/// Whether ports the guest listens on are forwarded on their own (default yes).
pub fn auto_forward(entries: &[PortEntry]) -> bool {
    entries
        .iter()
        .find_map(|e| match e {
            PortEntry::Auto(on) => Some(*on),
            PortEntry::Forward(_) => None,
        })
        .unwrap_or(true)
}

const FIELDS: &[&str] = &["host", "guest", "protocol", "address", "auto"];

enum Field {
    Host,
    Guest,
    Protocol,
    Address,
    Auto,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key of a `ports` entry")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Field, E> {
                Ok(match s {
                    "host" => Field::Host,
                    "guest" => Field::Guest,
                    "protocol" => Field::Protocol,
                    "address" => Field::Address,
                    "auto" => Field::Auto,
                    _ => return Err(E::unknown_field(s, FIELDS)),
                })
            }
        }
        d.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = PortEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a forwarded port (`host` and `guest`) or `auto: false`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PortEntry, A::Error> {
        let mut host: Option<Port> = None;
        let mut guest: Option<Port> = None;
        let mut protocol: Option<Protocol> = None;
        let mut address: Option<IpAddr> = None;
        let mut auto: Option<bool> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Host => once(&mut host, "host", map.next_value()?)?,
                Field::Guest => once(&mut guest, "guest", map.next_value()?)?,
                Field::Protocol => once(&mut protocol, "protocol", map.next_value()?)?,
                Field::Address => once(&mut address, "address", map.next_value()?)?,
                Field::Auto => once(&mut auto, "auto", map.next_value()?)?,
            }
        }
        if let Some(on) = auto {
            let others: Vec<&str> = [
                (host.is_some(), "host"),
                (guest.is_some(), "guest"),
                (protocol.is_some(), "protocol"),
                (address.is_some(), "address"),
            ]
            .into_iter()
            .filter_map(|(set, key)| set.then_some(key))
            .collect();
            if !others.is_empty() {
                return Err(de::Error::custom(format!(
                    "`auto` goes in an entry of its own, not with `{}`: write `- auto: {on}` as a separate entry of `ports`",
                    others.join("` and `")
                )));
            }
            return Ok(PortEntry::Auto(on));
        }
        Ok(PortEntry::Forward(PortForward {
            host: host.ok_or_else(|| de::Error::missing_field("host"))?,
            guest: guest.ok_or_else(|| de::Error::missing_field("guest"))?,
            protocol: protocol.unwrap_or_default(),
            address: address.unwrap_or_else(loopback),
        }))
    }
}

fn once<T, E: de::Error>(slot: &mut Option<T>, key: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(key));
    }
    Ok(())
}
