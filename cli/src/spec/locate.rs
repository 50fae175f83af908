//! Where a value sits in the spec's text, for checks that can only run after the
//! spec was read (a file the spec names must exist on the host).
//!
//! serde_yaml keeps no positions in what it returns, but it stamps an error raised
//! while a value is being read with that value's line and column. So the text is
//! walked once more down to the wanted value, and reading it fails on purpose: the
//! error carries the position. Flow style, quoting and aliases need no handling of
//! their own.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use std::fmt;

/// One step down a YAML document.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Field(&'a str),
    Index(usize),
}

/// 1-based line and column of the value at `path` in `text` (a spec that already
/// parsed); none when the path leads nowhere.
pub fn locate(text: &str, path: &[Key]) -> Option<(usize, usize)> {
    let err = Seek { path }
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    if !err.to_string().contains(FOUND) {
        return None;
    }
    err.location().map(|l| (l.line(), l.column()))
}

/// The error the walk raises once it reaches its value.
const FOUND: &str = "hvbox-located-value";

struct Seek<'p> {
    path: &'p [Key<'p>],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.path.first() {
            None => d.deserialize_any(Found),
            Some(Key::Field(_)) => d.deserialize_map(self),
            Some(Key::Index(_)) => d.deserialize_seq(self),
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping or a sequence")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(Key::Field(wanted)) = self.path.first() else {
            return Ok(());
        };
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            if key.as_str() == Some(wanted) {
                map.next_value_seed(Seek {
                    path: &self.path[1..],
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(Key::Index(wanted)) = self.path.first() else {
            return Ok(());
        };
        let mut index = 0;
        loop {
            let more = if index == *wanted {
                seq.next_element_seed(Seek {
                    path: &self.path[1..],
                })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    // Anything else where a mapping or sequence was expected: the path leads nowhere.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Fails on whatever value it is given, so serde_yaml stamps its position.
struct Found;

impl Found {
    fn fail<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
}

impl<'de> Visitor<'de> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.fail()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.fail()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.fail()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.fail()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.fail()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.fail()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.fail()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.fail()
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.fail()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Key::{Field, Index};

    #[test]
    fn values_are_found_in_block_and_flow_style() {
        let text = "box: b\nprovision:\n  - shell: echo hi\n  - {script: \"a.sh\", args: [x]}\n  - file: conf\n    destination: /etc/c\n";
        assert_eq!(locate(text, &[Field("box")]), Some((1, 6)));
        assert_eq!(
            locate(text, &[Field("provision"), Index(1), Field("script")]),
            Some((4, 14))
        );
        assert_eq!(
            locate(text, &[Field("provision"), Index(2), Field("file")]),
            Some((5, 11))
        );
        assert_eq!(
            locate(
                text,
                &[Field("provision"), Index(1), Field("args"), Index(0)]
            ),
            Some((4, 29))
        );
    }

    #[test]
    fn missing_paths_give_nothing() {
        let text = "box: b\nprovision:\n  - shell: x\n";
        assert_eq!(locate(text, &[Field("provision"), Index(3)]), None);
        assert_eq!(locate(text, &[Field("box"), Field("name")]), None);
        assert_eq!(locate(text, &[Field("cpus")]), None);
    }
}
