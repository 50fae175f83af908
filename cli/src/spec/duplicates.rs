//! Keys written twice in one mapping, anywhere in the spec, each reported at the
//! second key with where the first is. serde's derived code would report them at
//! the mapping's first line, and only the first.

use super::entries::KeyText;
use super::locate::{position, Step};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use std::cell::Cell;
use std::fmt;

type Error = serde_yaml::Error;

/// Every key written a second time in one mapping, anywhere in the document: an
/// error at that key, naming where it was first written.
pub fn duplicates(text: &str) -> Vec<Error> {
    let mut found: Vec<Error> = Vec::new();
    loop {
        let counted = Cell::new(0);
        let seek = Duplicates {
            text,
            path: Vec::new(),
            report: found.len(),
            counted: &counted,
        };
        match seek.deserialize(serde_yaml::Deserializer::from_str(text)) {
            Ok(()) => return found,
            // Each pass stops at the next duplicate. Another kind of error (a
            // nesting too deep) would come back every pass: the reading of the
            // keys reports it.
            Err(_) if counted.get() <= found.len() => return found,
            Err(e) => found.push(e),
        }
    }
}

/// Goes through the whole document and fails at duplicate number `report` (counted
/// from 0 in document order), so that serde_yaml locates it at its key.
struct Duplicates<'a> {
    text: &'a str,
    path: Vec<Step>,
    report: usize,
    counted: &'a Cell<usize>,
}

impl Duplicates<'_> {
    fn under(&self, step: Step) -> Self {
        let mut path = self.path.clone();
        path.push(step);
        Duplicates { path, ..*self }
    }
}

impl<'de> DeserializeSeed<'de> for Duplicates<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Duplicates<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<String> = Vec::new();
        loop {
            let key = map.next_key_seed(DuplicateKey {
                seek: &self,
                seen: &seen,
            })?;
            let Some(key) = key else { break };
            let key = key.unwrap_or_else(|| "?".to_string());
            map.next_value_seed(self.under(Step::Key(key.clone())))?;
            seen.push(key);
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(self.under(Step::Index(index)))?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
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
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads a key; the error, raised while serde_yaml reads the key (so it is located
/// there), when it is the duplicate to report.
struct DuplicateKey<'s, 'a> {
    seek: &'s Duplicates<'a>,
    seen: &'s [String],
}

impl<'de> DeserializeSeed<'de> for DuplicateKey<'_, '_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateKey<'_, '_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.check(s)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        self.check(&b.to_string())
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        self.check(&n.to_string())
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        self.check(&n.to_string())
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        self.check(&n.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.check("~")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        KeyText.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        KeyText.visit_map(map)
    }
}

impl DuplicateKey<'_, '_> {
    fn check<E: de::Error>(&self, key: &str) -> Result<Option<String>, E> {
        let ok = Ok(Some(key.to_string()));
        if !self.seen.iter().any(|k| k == key) {
            return ok;
        }
        let number = self.seek.counted.get();
        self.seek.counted.set(number + 1);
        if number != self.seek.report {
            return ok;
        }
        let mut first = self.seek.path.clone();
        first.push(Step::AtKey(key.to_string()));
        let on = match position(self.seek.text, &first) {
            Some((line, column)) => format!(" on line {line}, column {column}"),
            None => String::new(),
        };
        Err(E::custom(format!(
            "duplicate key `{key}`: it is already written{on}; keep one"
        )))
    }
}
