//! Errors found after the spec was read (they involve several keys, e.g. two machines
//! forwarding one host port) still point at a line and column: the text is walked a
//! second time down to the offending node, and the error is raised there, where
//! serde_yaml attaches that node's position.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use std::fmt;

/// One step from a node to one of its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The value of this key in a mapping.
    Key(String),
    /// The key itself (only as the last step): for a key that should not be there.
    AtKey(String),
    /// This element of a sequence.
    Index(usize),
}

/// Where a node is, written as serde_yaml writes paths: `machines.web.ports[0]`.
pub fn path_text(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(k) | Step::AtKey(k) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(k);
            }
            Step::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// `message` as a serde_yaml error at the node `path` leads to in `text` (the whole
/// document for an empty path). A path that leads nowhere gives the message without
/// a position.
pub fn error_at(text: &str, path: &[Step], message: &str) -> serde_yaml::Error {
    let walk = Walk { path, message };
    match walk.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(e) => e,
        Ok(()) => de::Error::custom(message),
    }
}

/// 1-based line and column of the node `path` leads to in `text`; none when the
/// path leads nowhere. For checks made later (a file the spec names must exist).
pub fn position(text: &str, path: &[Step]) -> Option<(usize, usize)> {
    error_at(text, path, "")
        .location()
        .map(|l| (l.line(), l.column()))
}

/// Finds the node; succeeds only when it is not there.
struct Walk<'a> {
    path: &'a [Step],
    message: &'a str,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((step, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(self.message));
        };
        if let Step::Key(wanted) | Step::AtKey(wanted) = step {
            let at_key = matches!(step, Step::AtKey(_));
            let key_seed = || KeySeed {
                wanted,
                fail_with: at_key.then_some(self.message),
            };
            while let Some(found) = map.next_key_seed(key_seed())? {
                if found {
                    map.next_value_seed(Walk {
                        path: rest,
                        message: self.message,
                    })?;
                    break;
                }
                map.next_value::<IgnoredAny>()?;
            }
        }
        // Not found: the rest is read too, or serde_yaml would report the entries
        // left unread.
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((step, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(self.message));
        };
        if let Step::Index(wanted) = *step {
            let mut index = 0;
            while index < wanted && seq.next_element::<IgnoredAny>()?.is_some() {
                index += 1;
            }
            let walk = Walk {
                path: rest,
                message: self.message,
            };
            seq.next_element_seed(walk)?;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    // A scalar ends the walk: the error if the path ends here, else not found.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }
}

impl Walk<'_> {
    fn leaf<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(self.message))
        } else {
            Ok(())
        }
    }
}

/// Reads a mapping key: whether it is the wanted one, or the error at it.
struct KeySeed<'a> {
    wanted: &'a str,
    fail_with: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match self.fail_with {
            Some(message) if key == self.wanted => Err(E::custom(message)),
            _ => Ok(key == self.wanted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message and `line:column`.
    fn at(text: &str, path: &[Step]) -> String {
        let e = error_at(text, path, "here");
        let l = e.location().expect("located");
        let message = super::super::problems::strip_location(&e.to_string());
        format!("{message} {}:{}", l.line(), l.column())
    }

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    #[test]
    fn finds_values_keys_and_elements() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - {e: 2}\n    - {e: 3}\n";
        assert_eq!(at(text, &[]), "here 1:1");
        assert_eq!(at(text, &[key("a")]), "a: here 1:4");
        assert_eq!(
            at(text, &[key("b"), Step::AtKey("d".into())]),
            "b: here 4:3"
        );
        assert_eq!(
            at(text, &[key("b"), key("c"), Step::Index(1)]),
            "b.c[1]: here 3:10"
        );
        assert_eq!(
            at(text, &[key("b"), key("d"), Step::Index(1), key("e")]),
            "b.d[1].e: here 6:11"
        );
        assert_eq!(
            path_text(&[key("b"), key("d"), Step::Index(1), key("e")]),
            "b.d[1].e"
        );
    }

    #[test]
    fn positions_in_block_and_flow_style() {
        let text = "box: b\nprovision:\n  - shell: echo hi\n  - {script: \"a.sh\", args: [x]}\n  - file: conf\n    destination: /etc/c\n";
        let step = |i, k: &str| vec![key("provision"), Step::Index(i), key(k)];
        assert_eq!(position(text, &[key("box")]), Some((1, 6)));
        assert_eq!(position(text, &step(1, "script")), Some((4, 14)));
        assert_eq!(position(text, &step(2, "file")), Some((5, 11)));
        let mut arg = step(1, "args");
        arg.push(Step::Index(0));
        assert_eq!(position(text, &arg), Some((4, 29)));
        assert_eq!(position(text, &[key("provision"), Step::Index(3)]), None);
        assert_eq!(position(text, &[key("cpus")]), None);
    }

    #[test]
    fn a_path_that_leads_nowhere_has_no_position() {
        let e = error_at("a: 1\n", &[key("z")], "here");
        assert!(e.location().is_none());
        let e = error_at("a: 1\n", &[key("a"), key("b")], "here");
        assert!(e.location().is_none());
        // Found a key, but not what is under it, before other keys.
        let text = "a: 1\nb: [x]\nc: {d: 2}\n";
        for path in [
            vec![key("a"), key("b")],
            vec![key("b"), Step::Index(3)],
            vec![key("b"), key("x")],
            vec![key("c"), Step::Index(0)],
        ] {
            assert_eq!(position(text, &path), None, "{path:?}");
        }
    }
}
