//! Which apt sources a built box installs from: the host's own entries for the
//! box's suite, so the box comes from the archive the host already trusts and no
//! address is written into hvbox.

use crate::build::BuildError;
use std::fs;
use std::path::{Path, PathBuf};

/// apt entries in the two formats apt reads: one-line `.list` and deb822 `.sources`.
#[derive(Debug, Default)]
pub struct AptSources {
    pub one_line: String,
    pub deb822: String,
}

impl AptSources {
    pub(crate) fn from_file(path: &Path, text: String) -> AptSources {
        if path.extension().is_some_and(|e| e == "sources") {
            AptSources {
                deb822: text,
                ..Default::default()
            }
        } else {
            AptSources {
                one_line: text,
                ..Default::default()
            }
        }
    }
}

/// The host's apt entries for `suite` (and its -updates/-security pockets), so the box
/// comes from the same archive the host trusts and no address is baked into hvbox.
pub fn host_sources_for(suite: &str) -> Result<AptSources, BuildError> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut extra: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        extra.sort();
        files.extend(extra);
    }
    let mut out = AptSources::default();
    for file in files {
        let name = file.to_string_lossy();
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        if name.ends_with(".sources") {
            out.deb822.push_str(&deb822_entries_for(&text, suite));
        } else if name.ends_with(".list") {
            out.one_line.push_str(&one_line_entries_for(&text, suite));
        }
    }
    if out.one_line.trim().is_empty() && out.deb822.trim().is_empty() {
        return Err(BuildError::NoSources {
            suite: suite.to_string(),
        });
    }
    Ok(out)
}

fn suite_matches(candidate: &str, suite: &str) -> bool {
    candidate == suite
        || candidate
            .strip_prefix(suite)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('/'))
}

/// `deb [opts] URI SUITE COMPONENTS…` lines whose suite belongs to `suite`.
fn one_line_entries_for(text: &str, suite: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if !trimmed.starts_with("deb ") {
            continue;
        }
        // Skip the bracketed options to find the suite field.
        let rest = match trimmed[4..].trim_start().strip_prefix('[') {
            Some(opts) => opts.split_once(']').map(|(_, r)| r).unwrap_or(""),
            None => &trimmed[4..],
        };
        let mut fields = rest.split_whitespace();
        let _uri = fields.next();
        if fields.next().is_some_and(|s| suite_matches(s, suite)) {
            out.push_str(trimmed);
            out.push('\n');
        }
    }
    out
}

/// deb822 stanzas with `Types: deb` and at least one suite of `suite`; other suites
/// in the same stanza are dropped.
fn deb822_entries_for(text: &str, suite: &str) -> String {
    let mut out = String::new();
    for stanza in text.split("\n\n") {
        let mut keep = Vec::new();
        let mut is_deb = false;
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some(v) = line.strip_prefix("Types:") {
                is_deb = v.split_whitespace().any(|t| t == "deb");
                keep.push("Types: deb".to_string());
            } else if let Some(v) = line.strip_prefix("Suites:") {
                suites = v
                    .split_whitespace()
                    .filter(|s| suite_matches(s, suite))
                    .map(str::to_string)
                    .collect();
            } else if let Some(v) = line.strip_prefix("Enabled:") {
                enabled = !v.trim().eq_ignore_ascii_case("no");
            } else {
                keep.push(line.to_string());
            }
        }
        if is_deb && enabled && !suites.is_empty() {
            keep.push(format!("Suites: {}", suites.join(" ")));
            out.push_str(&keep.join("\n"));
            out.push_str("\n\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_keeps_only_the_suite_pockets() {
        let text = "Types: deb\nURIs: http://archive.example/debian\nSuites: bookworm bookworm-updates trixie\nComponents: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: https://other.example/apt\nSuites: nodistro\nComponents: main\n";
        let out = deb822_entries_for(text, "bookworm");
        assert!(out.contains("Suites: bookworm bookworm-updates\n"), "{out}");
        assert!(!out.contains("trixie"));
        assert!(!out.contains("nodistro"));
        assert!(out.contains("Signed-By: /k.gpg"));
        let disabled = "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n";
        assert_eq!(deb822_entries_for(disabled, "bookworm"), "");
    }

    #[test]
    fn one_line_entries_match_suite_field_not_substrings() {
        let text = "deb http://a.example/debian bookworm main\n# deb http://x bookworm main\ndeb [signed-by=/k] https://b.example/apt cloud-sdk-bookworm main\ndeb http://c.example/debian-security bookworm-security main\n";
        let out = one_line_entries_for(text, "bookworm");
        assert_eq!(
            out,
            "deb http://a.example/debian bookworm main\ndeb http://c.example/debian-security bookworm-security main\n"
        );
    }
}
