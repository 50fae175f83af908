//! `hvbox box search [TERM] [--json]`: the boxes a spec can name, without the
//! network: the project's and the user's catalog files, boxes built here and the
//! built-in boxes, each with the versions known here (listed by a catalog file,
//! in the box cache, pinned by this project's `hvbox.lock`).

use super::box_fetch::catalog;
use super::table::print_table;
use crate::lockfile;
use crate::project::Project;
use anyhow::Result;
use hvbox_boxes::catalog::{compare_versions, Listing};
use hvbox_boxes::Store;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

/// One name as one place knows it.
#[derive(Debug, Serialize)]
struct Found {
    name: String,
    /// "built-in", "built here" or the catalog file.
    source: String,
    description: Option<String>,
    /// Newest first.
    versions: Vec<Version>,
    /// Where a built-in box's versions come from: the distribution's server, asked
    /// when a spec names it without a lock entry.
    resolved_online: bool,
    /// A place looked up before this one that knows the name too, and so answers.
    shadowed_by: Option<String>,
}

#[derive(Debug, Serialize)]
struct Version {
    version: String,
    /// A download of this version is in the box cache.
    cached: bool,
    /// This project's hvbox.lock pins it.
    locked: bool,
}

pub fn run(term: Option<&str>, json: bool) -> Result<ExitCode> {
    let project = Project::discover().ok();
    let root = project.as_ref().map(|p| p.root.as_path());
    let store = Store::open_default()?;
    let listings = catalog(root, &store)?.list();
    let mut cached: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in store.entries()? {
        if let Some(meta) = entry.meta.filter(|m| !m.file) {
            if let (Some(name), Some(version)) = (meta.name, meta.version) {
                cached.entry(name).or_default().insert(version);
            }
        }
    }
    let mut locked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(lock) = root.and_then(|r| lockfile::load(r).ok().flatten()) {
        for b in lock.boxes() {
            if let Some(v) = &b.version {
                locked.entry(b.name.clone()).or_default().insert(v.clone());
            }
        }
    }
    let found: Vec<Found> = gather(listings, &cached, &locked)
        .into_iter()
        .filter(|f| term.is_none_or(|t| matches(f, t)))
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        match term {
            Some(t) => println!("no box known here matches {t:?}"),
            None => println!("no boxes known here"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = found.iter().map(row).collect();
    print_table(["NAME", "VERSIONS", "SOURCE", "DESCRIPTION"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// The catalog's listings, one per name and place, in lookup order, with the
/// versions known here.
fn gather(
    listings: Vec<Listing>,
    cached: &BTreeMap<String, BTreeSet<String>>,
    locked: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for l in listings {
        if let Some(same) = out
            .iter_mut()
            .find(|f| f.name == l.name && f.source == l.source)
        {
            // A catalog file lists each version of a name as an entry of its own.
            if let Some(v) = l.version {
                same.versions.push(version(&l.name, v, cached, locked));
            }
            if same.description.is_none() {
                same.description = l.description;
            }
            continue;
        }
        let shadowed_by = out
            .iter()
            .find(|f| f.name == l.name)
            .map(|f| f.source.clone());
        let builtin = l.source == "built-in";
        let mut versions: Vec<Version> = l
            .version
            .into_iter()
            .map(|v| version(&l.name, v, cached, locked))
            .collect();
        if builtin {
            // What this host has seen of the distribution's builds.
            let seen: BTreeSet<&String> = cached
                .get(&l.name)
                .into_iter()
                .chain(locked.get(&l.name))
                .flatten()
                .collect();
            versions.extend(
                seen.into_iter()
                    .map(|v| version(&l.name, v.clone(), cached, locked)),
            );
        }
        out.push(Found {
            name: l.name,
            source: l.source,
            description: l.description,
            versions,
            resolved_online: builtin,
            shadowed_by,
        });
    }
    for f in &mut out {
        f.versions
            .sort_by(|a, b| compare_versions(&b.version, &a.version));
        f.versions.dedup_by(|a, b| a.version == b.version);
    }
    out
}

fn version(
    name: &str,
    version: String,
    cached: &BTreeMap<String, BTreeSet<String>>,
    locked: &BTreeMap<String, BTreeSet<String>>,
) -> Version {
    let has =
        |m: &BTreeMap<String, BTreeSet<String>>| m.get(name).is_some_and(|s| s.contains(&version));
    Version {
        cached: has(cached),
        locked: has(locked),
        version,
    }
}

/// A term matches a name or a description, ignoring case.
fn matches(f: &Found, term: &str) -> bool {
    let term = term.to_lowercase();
    f.name.to_lowercase().contains(&term)
        || f.description
            .as_deref()
            .is_some_and(|d| d.to_lowercase().contains(&term))
}

fn row(f: &Found) -> [String; 4] {
    let mut versions: Vec<String> = f
        .versions
        .iter()
        .map(|v| {
            let marks: Vec<&str> = [(v.cached, "cached"), (v.locked, "locked")]
                .into_iter()
                .filter_map(|(on, mark)| on.then_some(mark))
                .collect();
            if marks.is_empty() {
                v.version.clone()
            } else {
                format!("{} ({})", v.version, marks.join(", "))
            }
        })
        .collect();
    if f.resolved_online {
        versions.push("newest online".into());
    }
    let versions = if versions.is_empty() {
        "-".to_string()
    } else {
        versions.join(", ")
    };
    let source = match &f.shadowed_by {
        Some(by) => format!("{} (hidden by {by})", f.source),
        None => f.source.clone(),
    };
    [
        f.name.as_str(),
        &versions,
        &source,
        f.description.as_deref().unwrap_or("-"),
    ]
    .map(cell)
}

/// A table cell as a terminal shows it: a catalog file may come with a cloned
/// repository, so its text's control characters are shown, not obeyed, and a
/// line break does not start a row of its own.
fn cell(text: &str) -> String {
    crate::guest_text::sanitize(text).replace(['\r', '\n', '\t'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(name: &str, version: Option<&str>, source: &str) -> Listing {
        Listing {
            name: name.into(),
            version: version.map(Into::into),
            description: Some(format!("{name} box")),
            source: source.into(),
        }
    }

    #[test]
    fn versions_are_grouped_marked_and_newest_first() {
        let listings = vec![
            listing("team", Some("2024.06"), "/p/hvbox-catalog.yaml"),
            listing("team", Some("2024.10"), "/p/hvbox-catalog.yaml"),
            listing("debian-12", Some("1"), "/p/hvbox-catalog.yaml"),
            listing("debian-12", None, "built-in"),
            listing("ubuntu-24.04", None, "built-in"),
        ];
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let cached = BTreeMap::from([
            ("team".to_string(), set(&["2024.06"])),
            (
                "debian-12".to_string(),
                set(&["20240211-1654", "20231013-1532"]),
            ),
        ]);
        let locked = BTreeMap::from([("debian-12".to_string(), set(&["20240211-1654"]))]);
        let found = gather(listings, &cached, &locked);
        assert_eq!(found.len(), 4);
        assert_eq!(
            row(&found[0]),
            [
                "team".to_string(),
                "2024.10, 2024.06 (cached)".into(),
                "/p/hvbox-catalog.yaml".into(),
                "team box".into()
            ]
        );
        assert_eq!(
            row(&found[2])[1..3],
            [
                "20240211-1654 (cached, locked), 20231013-1532 (cached), newest online".to_string(),
                "built-in (hidden by /p/hvbox-catalog.yaml)".into()
            ]
        );
        assert_eq!(row(&found[3])[1], "newest online");
        assert!(matches(&found[0], "TEAM") && matches(&found[3], "24.04 box"));
        assert!(!matches(&found[0], "debian"));
    }

    /// A catalog's text reaches the terminal with its escape sequences shown.
    #[test]
    fn catalog_text_is_sanitized_in_the_table() {
        let mut l = listing("evil\u{1b}]0;title\u{7}", Some("1\u{1b}[2J"), "/p/c.yaml");
        l.description = Some("line\r\nfake row\u{1b}[31m red\u{9b}".into());
        let found = gather(vec![l], &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(
            row(&found[0]),
            [
                "evil\\x1b]0;title\\x07".to_string(),
                "1\\x1b[2J".into(),
                "/p/c.yaml".into(),
                "line  fake row\\x1b[31m red\\u{9b}".into()
            ]
        );
    }
}
