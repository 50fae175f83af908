//! Reads a YAML document into values typed the way cloud-init sees them.
//!
//! cloud-init loads user-data with PyYAML's `safe_load`, which applies YAML
//! 1.1 rules to unquoted scalars: `yes`/`on` are booleans, `0644` is octal
//! (420), `52:54:00:12:34:56` is a base-60 integer, `3.10` is the float 3.1.
//! hvbox re-emits the user's cloud-config as JSON, so it must decide those
//! types itself, exactly as PyYAML would, or the guest would get a different
//! config than the one the user tested elsewhere. A YAML 1.2 loader (such as
//! serde_yaml) would keep `yes` and `0644` as text, and silently change the
//! meaning of `package_upgrade: yes` or `permissions: 0644`.
//!
//! Also mirrored from PyYAML: anchors and aliases, `<<` merge keys, later
//! duplicate keys winning, one document per stream. Deliberate differences:
//! timestamps stay text (JSON has no date type, and cloud-init wants text
//! wherever it takes a date); values JSON cannot carry (`.inf`, `.nan`,
//! `!!binary`, integers beyond 64 bits, non-text keys) are errors.

use std::collections::HashMap;

use serde_json::{Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A value with the line it starts on, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Null, bool, number or string.
    Scalar(Value),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry; `line` is the key's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub line: usize,
    pub value: Node,
}

/// A load failure at a 1-based line and, for syntax errors, column.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LoadError {
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

/// Aliases copy their target; this bounds what a "billion laughs" document can expand to.
const MAX_NODES: usize = 1_000_000;

impl Node {
    /// The value as JSON, dropping line numbers.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Scalar(v) => v.clone(),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    fn size(&self) -> usize {
        1 + match &self.kind {
            Kind::Scalar(_) => 0,
            Kind::Seq(items) => items.iter().map(Node::size).sum(),
            Kind::Map(entries) => entries.iter().map(|e| e.value.size()).sum(),
        }
    }
}

/// Loads the single document in `text`; `None` when it holds no document
/// (only comments or whitespace), which cloud-init reads as an empty config.
pub(crate) fn load(text: &str) -> Result<Option<Node>, LoadError> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder::default();
    let mut documents = 0;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| LoadError {
            line: e.marker().line(),
            column: Some(e.marker().col() + 1),
            message: format!("not valid YAML: {}", e.info()),
        })?;
        match event {
            Event::StreamEnd => return Ok(b.root),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(err_at(mark, "a second YAML document starts here; cloud-init reads one document per user-data".into()));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let merge_key = style == TScalarStyle::Plain && tag.is_none() && text == "<<";
                let value = scalar(&text, style, tag.as_ref()).map_err(|m| err_at(mark, m))?;
                let node = Node {
                    line: mark.line(),
                    kind: Kind::Scalar(value),
                };
                b.complete(node, anchor, merge_key, mark)?;
            }
            Event::SequenceStart(anchor, tag) => {
                collection_tag(tag.as_ref(), "seq").map_err(|m| err_at(mark, m))?;
                b.stack
                    .push(Frame::new(mark, anchor, Kind::Seq(Vec::new())));
            }
            Event::MappingStart(anchor, tag) => {
                collection_tag(tag.as_ref(), "map").map_err(|m| err_at(mark, m))?;
                b.stack
                    .push(Frame::new(mark, anchor, Kind::Map(Vec::new())));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = b
                    .stack
                    .pop()
                    .expect("the parser balances start and end events");
                let anchor = frame.anchor;
                let node = frame.finish().map_err(|(line, m)| LoadError {
                    line,
                    column: None,
                    message: m,
                })?;
                b.complete(node, anchor, false, mark)?;
            }
            Event::Alias(id) => {
                let Some(target) = b.anchors.get(&id) else {
                    return Err(err_at(
                        mark,
                        "alias to an anchor that is not complete yet (a recursive alias)".into(),
                    ));
                };
                let mut node = target.clone();
                b.expanded += node.size();
                if b.expanded > MAX_NODES {
                    return Err(err_at(
                        mark,
                        format!("aliases expand to more than {MAX_NODES} values"),
                    ));
                }
                node.line = mark.line();
                b.complete(node, 0, false, mark)?;
            }
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    expanded: usize,
}

struct Frame {
    line: usize,
    anchor: usize,
    kind: Kind,
    /// A mapping's key waiting for its value; `None` key text means `<<`.
    pending_key: Option<(Option<String>, usize)>,
    /// Mappings named by `<<`, in the order given (earlier ones win).
    merges: Vec<Node>,
}

impl Frame {
    fn new(mark: Marker, anchor: usize, kind: Kind) -> Frame {
        Frame {
            line: mark.line(),
            anchor,
            kind,
            pending_key: None,
            merges: Vec::new(),
        }
    }

    /// Builds the node; for a mapping, applies `<<` merges under the explicit keys.
    fn finish(self) -> Result<Node, (usize, String)> {
        let mut kind = self.kind;
        if let Kind::Map(entries) = &mut kind {
            for source in self.merges {
                let sources = match source.kind {
                    Kind::Map(_) => vec![source],
                    Kind::Seq(items) => items,
                    Kind::Scalar(_) => vec![source],
                };
                for s in sources {
                    let Kind::Map(merged) = s.kind else {
                        return Err((
                            s.line,
                            "a `<<` merge key needs a mapping or a list of mappings".into(),
                        ));
                    };
                    for e in merged {
                        if !entries.iter().any(|x| x.key == e.key) {
                            entries.push(e);
                        }
                    }
                }
            }
        }
        Ok(Node {
            line: self.line,
            kind,
        })
    }
}

fn err_at(mark: Marker, message: String) -> LoadError {
    LoadError {
        line: mark.line(),
        column: None,
        message,
    }
}

impl Builder {
    /// Attaches a finished node to its parent (or makes it the root).
    fn complete(
        &mut self,
        node: Node,
        anchor: usize,
        merge_key: bool,
        mark: Marker,
    ) -> Result<(), LoadError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match (&mut parent.kind, parent.pending_key.take()) {
            (Kind::Seq(items), _) => items.push(node),
            (Kind::Map(_), None) if merge_key => parent.pending_key = Some((None, node.line)),
            (Kind::Map(_), None) => {
                let key = key_text(&node).map_err(|m| err_at(mark, m))?;
                parent.pending_key = Some((Some(key), node.line));
            }
            (Kind::Map(_), Some((None, _))) => parent.merges.push(node),
            (Kind::Map(entries), Some((Some(key), line))) => {
                // PyYAML keeps the last value of a repeated key.
                entries.retain(|e| e.key != key);
                entries.push(Entry {
                    key,
                    line,
                    value: node,
                });
            }
            (Kind::Scalar(_), _) => unreachable!("scalars are never on the stack"),
        }
        Ok(())
    }
}

/// JSON keys are text; a key PyYAML reads as another type would change meaning.
fn key_text(node: &Node) -> Result<String, String> {
    match &node.kind {
        Kind::Scalar(Value::String(s)) => Ok(s.clone()),
        Kind::Scalar(other) => Err(format!(
            "the key {other} is not text under YAML 1.1 (which cloud-init uses); quote it"
        )),
        _ => Err("a list or mapping used as a mapping key is not supported".into()),
    }
}

const CORE: &str = "tag:yaml.org,2002:";

fn collection_tag(tag: Option<&Tag>, expected: &str) -> Result<(), String> {
    match tag {
        None => Ok(()),
        Some(t) if t.handle == CORE && t.suffix == expected => Ok(()),
        Some(t) => Err(format!("the tag {}{} is not supported", t.handle, t.suffix)),
    }
}

/// Types a scalar as PyYAML's SafeLoader does.
fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let Some(tag) = tag else {
        return Ok(if style == TScalarStyle::Plain {
            resolve_plain(text)?
        } else {
            Value::String(text.into())
        });
    };
    if format!("{}{}", tag.handle, tag.suffix) == "!" {
        return Ok(Value::String(text.into())); // the non-specific tag `!`
    }
    let bad = || format!("{text:?} is not a valid !!{}", tag.suffix);
    match (tag.handle == CORE, tag.suffix.as_str()) {
        (true, "str") | (true, "timestamp") => Ok(Value::String(text.into())),
        (true, "null") => Ok(Value::Null),
        (true, "bool") => match text.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => Ok(Value::Bool(true)),
            "no" | "false" | "off" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        (true, "int") => int(text)?.ok_or_else(bad),
        // An explicit tag skips the resolver's pattern: PyYAML just calls float().
        (true, "float") => match float(text)? {
            Some(v) => Ok(v),
            None => text
                .replace('_', "")
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad),
        },
        (true, "binary") => Err(
            "!!binary values are not supported; use write_files with `encoding: b64` instead"
                .into(),
        ),
        _ => Err(format!(
            "the tag {}{} is not supported",
            tag.handle, tag.suffix
        )),
    }
}

/// YAML 1.1 implicit typing of an unquoted scalar (PyYAML's resolver table).
fn resolve_plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true))
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false))
        }
        _ => {}
    }
    if let Some(v) = int(text)? {
        return Ok(v);
    }
    if let Some(v) = float(text)? {
        return Ok(v);
    }
    Ok(Value::String(text.into()))
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

fn all(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(ok)
}

/// A YAML 1.1 integer: 0b binary, 0x hex, leading-0 octal, decimal, or
/// base 60 (`1:30`); underscores are separators. `None` if `text` is not one.
fn int(text: &str) -> Result<Option<Value>, String> {
    let (negative, body) = split_sign(text);
    let digits = |s: &str| s.replace('_', "");
    let parsed = if let Some(b) = body.strip_prefix("0b") {
        all(b, |c| matches!(c, b'0' | b'1' | b'_')).then(|| u128::from_str_radix(&digits(b), 2))
    } else if let Some(h) = body.strip_prefix("0x") {
        all(h, |c| c.is_ascii_hexdigit() || c == b'_').then(|| u128::from_str_radix(&digits(h), 16))
    } else if body.len() > 1 && body.starts_with('0') {
        all(&body[1..], |c| matches!(c, b'0'..=b'7' | b'_'))
            .then(|| u128::from_str_radix(&digits(body), 8))
    } else if body.contains(':') {
        sexagesimal_int(body).map(Ok)
    } else {
        (body == "0"
            || (all(body, |c| c.is_ascii_digit() || c == b'_') && !body.starts_with(['0', '_'])))
        .then(|| digits(body).parse::<u128>())
    };
    let Some(parsed) = parsed else {
        return Ok(None);
    };
    // "0b_" and friends match PyYAML's pattern but hold no digit: PyYAML fails on them too.
    let magnitude = parsed.map_err(|_| format!("{text:?} is not a valid integer"))?;
    let too_big = || format!("the integer {text} does not fit in 64 bits");
    let n = if negative {
        let m = i128::try_from(magnitude).map_err(|_| too_big())?;
        Number::from(i64::try_from(-m).map_err(|_| too_big())?)
    } else {
        Number::from(u64::try_from(magnitude).map_err(|_| too_big())?)
    };
    Ok(Some(Value::Number(n)))
}

/// `[1-9][0-9_]*(:[0-5]?[0-9])+`, e.g. 190:20:30 = 685230.
fn sexagesimal_int(body: &str) -> Option<u128> {
    let mut parts = body.split(':');
    let head = parts.next()?;
    if !(all(head, |c| c.is_ascii_digit() || c == b'_')
        && matches!(head.as_bytes()[0], b'1'..=b'9'))
    {
        return None;
    }
    let mut value: u128 = head.replace('_', "").parse().ok()?;
    for p in parts {
        if !sixty_digit(p) {
            return None;
        }
        value = value.checked_mul(60)?.checked_add(p.parse().ok()?)?;
    }
    Some(value)
}

/// `[0-5]?[0-9]`: one base-60 digit group.
fn sixty_digit(p: &str) -> bool {
    match p.as_bytes() {
        [d] => d.is_ascii_digit(),
        [t, d] => matches!(t, b'0'..=b'5') && d.is_ascii_digit(),
        _ => false,
    }
}

/// A YAML 1.1 float as PyYAML 5+ matches it: digits with a dot and an
/// optional signed exponent (`1e3` without a dot is text), `.5`, base 60
/// (`1:30.5`), `.inf`, `.nan`.
fn float(text: &str) -> Result<Option<Value>, String> {
    let (negative, body) = split_sign(text);
    let value =
        if matches!(body, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
            return Err(format!(
                "{text} cannot be carried in JSON; quote it if you mean text"
            ));
        } else if let Some((base60, last)) = body.rsplit_once(':') {
            // [0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
            let (whole, frac) = match last.split_once('.') {
                Some(x) => x,
                None => return Ok(None),
            };
            let mut groups = base60.split(':');
            let head = groups.next().unwrap_or_default();
            if !all(head, |c| c.is_ascii_digit() || c == b'_')
                || !head.as_bytes()[0].is_ascii_digit()
                || !groups.all(sixty_digit)
                || !sixty_digit(whole)
                || !frac.bytes().all(|c| c.is_ascii_digit() || c == b'_')
            {
                return Ok(None);
            }
            let number = |s: String| s.parse::<f64>().map_err(|e| format!("{text:?}: {e}"));
            let mut v = 0f64;
            for g in base60.split(':') {
                v = v * 60.0 + number(g.replace('_', ""))?;
            }
            v * 60.0 + number(format!("{whole}.{}0", frac.replace('_', "")))?
        } else {
            let (mantissa, exponent) = match body.find(['e', 'E']) {
                Some(i) => (&body[..i], Some(&body[i + 1..])),
                None => (body, None),
            };
            let Some((int_part, frac)) = mantissa.split_once('.') else {
                return Ok(None);
            };
            let int_ok = if int_part.is_empty() {
                // `\.[0-9][0-9_]*` takes no sign.
                !negative
                    && text.starts_with('.')
                    && frac.as_bytes().first().is_some_and(u8::is_ascii_digit)
            } else {
                int_part.as_bytes()[0].is_ascii_digit()
                    && all(int_part, |c| c.is_ascii_digit() || c == b'_')
            };
            let frac_ok = frac.bytes().all(|c| c.is_ascii_digit() || c == b'_');
            let exp_ok = exponent.is_none_or(|e| {
                matches!(e.as_bytes().first(), Some(b'+' | b'-'))
                    && all(&e[1..], |c| c.is_ascii_digit())
            });
            if !(int_ok && frac_ok && exp_ok) {
                return Ok(None);
            }
            let plain = format!(
                "0{}.{}0{}",
                int_part.replace('_', ""),
                frac.replace('_', ""),
                exponent.map(|e| format!("e{e}")).unwrap_or_default()
            );
            plain.parse::<f64>().map_err(|e| format!("{text:?}: {e}"))?
        };
    let value = if negative { -value } else { value };
    Number::from_f64(value)
        .map(|n| Some(Value::Number(n)))
        .ok_or_else(|| format!("{text} cannot be carried in JSON"))
}

#[cfg(test)]
mod tests;
