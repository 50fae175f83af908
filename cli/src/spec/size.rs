//! Sizes written the way people write them: "512M", "1G", "20GiB".

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// A byte count; units are binary (1G = 1024 MiB), as in Vagrant and Lima specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(u64);

impl Size {
    pub const fn from_bytes(bytes: u64) -> Size {
        Size(bytes)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    pub fn parse(text: &str) -> Result<Size, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        if number.is_empty() {
            return Err(format!(
                "{text:?} is not a size: expected a number with a unit, such as \"512M\" or \"2G\""
            ));
        }
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "K" | "KB" | "KIB" => 10,
            "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            "" => {
                return Err(format!(
                    "{text:?} has no unit: write e.g. \"{number}M\" or \"{number}G\""
                ))
            }
            other => {
                return Err(format!(
                    "{text:?} has an unknown unit {other:?}: use K, M, G or T"
                ))
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size: {number:?} is not a number"))?;
        let bytes = value * (1u64 << shift) as f64;
        if !(1.0..=(u64::MAX as f64)).contains(&bytes) {
            return Err(format!("{text:?} is out of range"));
        }
        Ok(Size(bytes as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let units = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
        for (shift, unit) in units {
            let scale = 1u64 << shift;
            if self.0 >= scale && self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // deserialize_any so that a bare number reaches visit_u64 and gets the unit hint.
        d.deserialize_any(SizeVisitor {
            floor: None,
            granule: 1,
        })
    }
}

/// The guest's memory: a [`Size`] of at least [`MemorySize::MIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySize(pub(super) Size);

impl MemorySize {
    /// What a Debian cloud guest with cloud-init needs for its first boot: with
    /// 256M, the OOM killer stopped cloud-init generating the guest's locale (seen
    /// on hvbox's own test box). `hvbox vmm run --memory` takes less, for tiny test
    /// guests.
    pub const MIN: Size = Size::from_bytes(512 << 20);
    /// Guest memory comes in whole MiB: both engines map it in pages, and QEMU
    /// rounds sizes that are not a multiple of 8K.
    const GRANULE: u64 = 1 << 20;

    pub const fn bytes(self) -> u64 {
        self.0.bytes()
    }
}

impl<'de> Deserialize<'de> for MemorySize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let floor = Some((
            MemorySize::MIN,
            "the least a Debian cloud guest's first boot runs in",
        ));
        d.deserialize_any(SizeVisitor {
            floor,
            granule: MemorySize::GRANULE,
        })
        .map(MemorySize)
    }
}

/// Reads a size, checked against a floor (and why) where there is one: inside the
/// visitor, so that serde_yaml locates the error at the value.
struct SizeVisitor {
    floor: Option<(Size, &'static str)>,
    /// The size must be a multiple of this many bytes (1: any size; else a MiB).
    granule: u64,
}

impl Visitor<'_> for SizeVisitor {
    type Value = Size;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as \"512M\" or \"2G\"")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
        let size = Size::parse(s).map_err(E::custom)?;
        match self.floor {
            Some((floor, why)) if size < floor => {
                Err(E::custom(format!("{} is below {floor}, {why}", s.trim())))
            }
            _ if size.bytes() % self.granule != 0 => Err(E::custom(format!(
                "{} is not a whole number of MiB: write it as {} or {}",
                s.trim(),
                Size::from_bytes(size.bytes() / self.granule * self.granule),
                Size::from_bytes(size.bytes().div_ceil(self.granule) * self.granule),
            ))),
            _ => Ok(size),
        }
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
        Err(E::custom(format!(
            "{n} has no unit: write e.g. \"{n}M\" or \"{n}G\""
        )))
    }
}
