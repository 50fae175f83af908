//! The user's own cloud-config, checked and typed as cloud-init will read it.

use crate::yaml11::{self, Entry, Kind, Node};
use crate::Error;

const HEADER: &str = "#cloud-config";

/// A parsed `#cloud-config` document supplied by the user, kept with its
/// origin and line numbers so merge errors can point at the offending line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    origin: String,
    entries: Vec<Entry>,
}

impl UserData {
    /// Parses cloud-config `text`. `source` names where it came from in
    /// messages: a file path, or e.g. "hvbox.yaml:12" for an inline block.
    /// Lines in messages count from the first line of `text` (the
    /// `#cloud-config` line is line 1).
    ///
    /// Values are typed by YAML 1.1 rules, as cloud-init's PyYAML does, so
    /// `yes` is true and an unquoted `0644` is the octal mode it means.
    pub fn parse(text: &str, source: &str) -> Result<UserData, Error> {
        let err = |line, column, message: String| Error::UserData {
            origin: source.to_owned(),
            line,
            column,
            message,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let first = text.lines().next().unwrap_or("").trim_end();
        if first != HEADER {
            return Err(err(1, None, header_message(first)));
        }
        let root = yaml11::load(text).map_err(|e| err(e.line, e.column, e.message))?;
        let entries = match root {
            None => Vec::new(), // only the header: an empty config, as cloud-init reads it
            Some(Node {
                kind: Kind::Map(entries),
                ..
            }) => entries,
            Some(node) => {
                let what = match node.kind {
                    Kind::Seq(_) => "a list",
                    _ => "a single value",
                };
                return Err(err(
                    node.line,
                    None,
                    format!("a cloud-config must be a mapping of keys (e.g. `packages: [htop]`) at the top level, not {what}"),
                ));
            }
        };
        Ok(UserData {
            origin: source.to_owned(),
            entries,
        })
    }

    /// Where the document came from, as given to [`UserData::parse`].
    pub fn source(&self) -> &str {
        &self.origin
    }

    /// The document as JSON, typed as cloud-init reads it.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.entries
            .iter()
            .map(|e| (e.key.clone(), e.value.to_json()))
            .collect()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// An error about this document at `line`.
    pub(crate) fn error(&self, line: usize, message: String) -> Error {
        Error::UserData {
            origin: self.origin.clone(),
            line,
            column: None,
            message,
        }
    }
}

/// Why a first line is not accepted, naming what it looks like.
fn header_message(first: &str) -> String {
    let looks_like = if first.starts_with("#!") {
        " (this looks like a script)"
    } else if first.to_ascii_lowercase().starts_with("content-type:")
        || first.to_ascii_lowercase().starts_with("mime-version:")
    {
        " (this looks like MIME multipart)"
    } else if first.starts_with(HEADER) {
        " (a different format that only shares the prefix)"
    } else {
        ""
    };
    format!(
        "user-data must start with a line that is exactly `{HEADER}`, found {first:?}{looks_like}; \
         hvbox accepts only cloud-config user-data, not shell scripts, MIME multipart, \
         #include, boothooks or jinja templates"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        UserData::parse(text, "cfg/extra.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_yaml_names_source_line_and_column() {
        let m = error("#cloud-config\npackages: [a, b\nruncmd: [x]\n");
        assert!(m.starts_with("cfg/extra.yaml, line 3, column"), "{m}");
        assert!(m.contains("not valid YAML"), "{m}");
        let m = error("#cloud-config\na: 1\n  b: 2\n");
        assert!(
            m.starts_with("cfg/extra.yaml, line 3, column 4: not valid YAML"),
            "{m}"
        );
    }

    #[test]
    fn top_level_must_be_a_mapping() {
        let m = error("#cloud-config\n- a\n- b\n");
        assert!(
            m.starts_with("cfg/extra.yaml, line 2: a cloud-config must be a mapping"),
            "{m}"
        );
        assert!(m.contains("not a list"), "{m}");
        let m = error("#cloud-config\n\njust text\n");
        assert!(
            m.starts_with("cfg/extra.yaml, line 3:") && m.contains("not a single value"),
            "{m}"
        );
    }

    #[test]
    fn header_is_required() {
        for (text, hint) in [
            ("#!/bin/sh\necho hi\n", "looks like a script"),
            ("Content-Type: multipart/mixed; boundary=x\n", "MIME"),
            ("#cloud-config-archive\n- x\n", "shares the prefix"),
            ("## template: jinja\n#cloud-config\n", "jinja"),
            ("packages: [a]\n", "only cloud-config"),
            ("", "exactly `#cloud-config`"),
        ] {
            let m = error(text);
            assert!(
                m.starts_with("cfg/extra.yaml, line 1: user-data must start with"),
                "{m}"
            );
            assert!(
                m.contains("hvbox accepts only cloud-config user-data") && m.contains(hint),
                "{text:?}: {m}"
            );
        }
    }

    #[test]
    fn accepted_forms() {
        for text in [
            "#cloud-config",
            "#cloud-config  \r\n",
            "\u{feff}#cloud-config\n# empty\n",
        ] {
            assert!(
                UserData::parse(text, "x").unwrap().to_json().is_empty(),
                "{text:?}"
            );
        }
        let ud = UserData::parse("#cloud-config\nruncmd: [ls]\n", "hvbox.yaml:12").unwrap();
        assert_eq!(ud.source(), "hvbox.yaml:12");
        assert_eq!(ud.to_json()["runcmd"], serde_json::json!(["ls"]));
    }
}
