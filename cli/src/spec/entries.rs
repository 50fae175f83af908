//! Reading a spec one key at a time, so that one bad key does not hide the next.
//!
//! serde stops at the first error. To report every problem, each entry of a mapping
//! (the top level, each machine) is read on its own: a fresh pass over the text walks
//! to the mapping and hands that one entry to the type's derived `Deserialize`
//! through a [`MapAccess`] that yields only it. serde_yaml then stamps each error with
//! the position and path of what it was reading, as in a whole-file read, and the
//! derived code (the `layers!` list) stays the only list of keys. A list whose value
//! fails is read again one element at a time, so every bad element is reported.

use super::locate::Step;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor,
};
use serde::Deserializer;
use std::fmt;
use std::marker::PhantomData;

type Error = serde_yaml::Error;

/// The keys of the mapping `path` leads to, in order (none for a null or an empty
/// document); an error at the node when it is something else, which `expecting`
/// describes. `None` when the path leads nowhere.
pub fn keys(
    text: &str,
    path: &[Step],
    expecting: &'static str,
) -> Result<Option<Vec<String>>, Error> {
    walk(text, path, Keys { expecting })
}

/// A part of an entry's value to read alone.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// This element of a sequence.
    Element(usize),
    /// This entry of a mapping.
    Key(usize),
}

/// What an entry's value is, with its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Seq(usize),
    Map(usize),
}

/// `T` read from the `index`th entry alone of the mapping `path` leads to; with
/// `cut`, from that entry with its value cut down to one element or one entry.
pub fn entry<T: DeserializeOwned>(
    text: &str,
    path: &[Step],
    index: usize,
    cut: Option<Cut>,
) -> Result<Option<T>, Error> {
    walk(
        text,
        path,
        Entry {
            index,
            cut,
            read: PhantomData::<T>,
        },
    )
}

/// Whether the `index`th entry's value is a sequence or a mapping, and how big.
pub fn entry_shape(text: &str, path: &[Step], index: usize) -> Option<Shape> {
    walk(text, path, EntryShape { index })
        .ok()
        .flatten()
        .flatten()
}

fn walk<F: Finish>(text: &str, path: &[Step], finish: F) -> Result<Option<F::Out>, Error> {
    Walk { path, finish }.deserialize(serde_yaml::Deserializer::from_str(text))
}

/// What to do with the node a walk leads to.
trait Finish: Sized {
    type Out;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result;
    fn map<'de, A: MapAccess<'de>>(self, map: &mut A) -> Result<Self::Out, A::Error>;
    /// A null, or an empty document.
    fn null<E: de::Error>(self) -> Result<Self::Out, E>;
}

/// Walks to the node at `path`, then finishes there; `None` when it is not there.
struct Walk<'p, F> {
    path: &'p [Step],
    finish: F,
}

impl<'de, F: Finish> DeserializeSeed<'de> for Walk<'_, F> {
    type Value = Option<F::Out>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: Finish> Visitor<'de> for Walk<'_, F> {
    type Value = Option<F::Out>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.path.is_empty() {
            self.finish.expecting(f)
        } else {
            f.write_str("any value")
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let found = match self.path.split_first() {
            None => Some(self.finish.map(&mut map)?),
            Some((Step::Key(wanted), rest)) => {
                let mut found = None;
                while let Some(key) = map.next_key_seed(KeyText)? {
                    if key.as_deref() == Some(wanted.as_str()) {
                        let walk = Walk {
                            path: rest,
                            finish: self.finish,
                        };
                        found = map.next_value_seed(walk)?;
                        break;
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                found
            }
            Some(_) => None,
        };
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let found = match self.path.split_first() {
            None => return Err(de::Error::invalid_type(Unexpected::Seq, &self)),
            Some((Step::Index(wanted), rest)) => {
                let mut skipped = 0;
                while skipped < *wanted && seq.next_element::<IgnoredAny>()?.is_some() {
                    skipped += 1;
                }
                let walk = Walk {
                    path: rest,
                    finish: self.finish,
                };
                seq.next_element_seed(walk)?.flatten()
            }
            Some(_) => None,
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        match self.path {
            [] => self.finish.null().map(Some),
            _ => Ok(None),
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    // A scalar: the wrong kind of node at the end of the path, else not found.
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        self.scalar(Unexpected::Str(s))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        self.scalar(Unexpected::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        self.scalar(Unexpected::Signed(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        self.scalar(Unexpected::Unsigned(n))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        self.scalar(Unexpected::Float(n))
    }
}

impl<F: Finish> Walk<'_, F> {
    fn scalar<E: de::Error>(self, what: Unexpected) -> Result<Option<F::Out>, E> {
        match self.path {
            [] => Err(E::invalid_type(what, &self)),
            _ => Ok(None),
        }
    }
}

/// A mapping key as text (numbers and booleans as written); `None` for a key that
/// is itself a list or a mapping, which is read through and skipped.
pub(super) struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyText {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(s.to_string()))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Some(b.to_string()))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Some(n.to_string()))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Some(n.to_string()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Some(n.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Some("~".to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

struct Keys {
    expecting: &'static str,
}

impl Finish for Keys {
    type Out = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn map<'de, A: MapAccess<'de>>(self, map: &mut A) -> Result<Vec<String>, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key_seed(KeyText)? {
            keys.push(key.unwrap_or_else(|| "?".to_string()));
            map.next_value::<IgnoredAny>()?;
        }
        Ok(keys)
    }
    fn null<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(Vec::new())
    }
}

/// Skips `index` entries; false when the mapping ends first.
fn skip_entries<'de, A: MapAccess<'de>>(map: &mut A, index: usize) -> Result<bool, A::Error> {
    for _ in 0..index {
        if map.next_entry::<IgnoredAny, IgnoredAny>()?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

struct Entry<T> {
    index: usize,
    cut: Option<Cut>,
    read: PhantomData<T>,
}

impl<T: DeserializeOwned> Finish for Entry<T> {
    type Out = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn map<'de, A: MapAccess<'de>>(self, map: &mut A) -> Result<T, A::Error> {
        if !skip_entries(map, self.index)? {
            return Err(de::Error::custom("the mapping has fewer entries"));
        }
        T::deserialize(MapAccessDeserializer::new(OneEntry {
            map,
            cut: self.cut,
            given: false,
        }))
    }
    fn null<E: de::Error>(self) -> Result<T, E> {
        Err(E::custom("the mapping is empty"))
    }
}

struct EntryShape {
    index: usize,
}

impl Finish for EntryShape {
    type Out = Option<Shape>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn map<'de, A: MapAccess<'de>>(self, map: &mut A) -> Result<Option<Shape>, A::Error> {
        if !skip_entries(map, self.index)? || map.next_key::<IgnoredAny>()?.is_none() {
            return Ok(None);
        }
        map.next_value_seed(ShapeOf)
    }
    fn null<E: de::Error>(self) -> Result<Option<Shape>, E> {
        Ok(None)
    }
}

/// A sequence's or mapping's size; `None` for a scalar.
struct ShapeOf;

impl<'de> DeserializeSeed<'de> for ShapeOf {
    type Value = Option<Shape>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeOf {
    type Value = Option<Shape>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut len = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(Some(Shape::Seq(len)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut len = 0;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
            len += 1;
        }
        Ok(Some(Shape::Map(len)))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The next entry of a mapping, alone; its value cut down to one element or entry
/// when `cut` says which.
struct OneEntry<'a, A> {
    map: &'a mut A,
    cut: Option<Cut>,
    given: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OneEntry<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if std::mem::replace(&mut self.given, true) {
            return Ok(None);
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.cut {
            None => self.map.next_value_seed(seed),
            Some(Cut::Element(index)) => self.map.next_value_seed(OnlyElement { seed, index }),
            Some(Cut::Key(index)) => self.map.next_value_seed(OnlyKey { seed, index }),
        }
    }
}

/// Reads a sequence as if it held only its `index`th element.
struct OnlyElement<S> {
    seed: S,
    index: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OnlyElement<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OnlyElement<S> {
    type Value = S::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<S::Value, A::Error> {
        for _ in 0..self.index {
            seq.next_element::<IgnoredAny>()?;
        }
        let value = self
            .seed
            .deserialize(SeqAccessDeserializer::new(OneElement {
                seq: &mut seq,
                given: false,
            }))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(value)
    }
}

/// Reads a mapping as if it held only its `index`th entry.
struct OnlyKey<S> {
    seed: S,
    index: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OnlyKey<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OnlyKey<S> {
    type Value = S::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<S::Value, A::Error> {
        skip_entries(&mut map, self.index)?;
        let value = self.seed.deserialize(MapAccessDeserializer::new(OneEntry {
            map: &mut map,
            cut: None,
            given: false,
        }))?;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(value)
    }
}

struct OneElement<'a, A> {
    seq: &'a mut A,
    given: bool,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for OneElement<'_, A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        if std::mem::replace(&mut self.given, true) {
            return Ok(None);
        }
        self.seq.next_element_seed(seed)
    }
}
