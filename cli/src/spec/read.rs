//! The spec's structure, read key by key (see [`entries`](super::entries)) into the
//! top-level layer and each machine's own, with every problem found on the way:
//! keys written twice, unknown keys, bad values, bad machine names.

use super::entries::{Cut, Shape};
use super::layer::{Layer, SpecFile};
use super::locate::{error_at, Step};
use super::machines::check_name;
use super::{duplicates, entries};
use serde::de::{DeserializeOwned, Error as _, IgnoredAny};

type Error = serde_yaml::Error;

/// The spec's layers, as written (a key that could not be read is left out).
pub struct Layers {
    pub top: Layer,
    /// The top-level keys as written, read or not.
    pub top_keys: Vec<String>,
    /// The named machines in the spec's order, when it has `machines:`.
    pub machines: Option<Vec<MachineLayer>>,
}

/// A machine under `machines:`, with the keys it sets itself.
pub struct MachineLayer {
    pub name: String,
    pub layer: Layer,
    pub keys: Vec<String>,
}

const MACHINES: &str = "machines";

/// The layers of `text` with every problem in its structure: the keys that read
/// well are in the layers, so the checks after this one still run on them. Only a
/// text that is not YAML, or holds no settings, gives no layers.
pub fn read(text: &str) -> Result<(Layers, Vec<Error>), Vec<Error>> {
    // Nothing can be read from text that is not YAML.
    serde_yaml::from_str::<IgnoredAny>(text).map_err(|e| vec![e])?;
    let mut problems = duplicates::duplicates(text);
    let duplicated = !problems.is_empty();
    let keys = match entries::keys(text, &[], "a mapping of settings such as `box: debian-12`") {
        Ok(Some(keys)) if !keys.is_empty() => keys,
        Ok(_) => {
            return Err(vec![Error::custom(
                "the spec is empty; it needs at least `box:` (run `hvbox init` for a starter)",
            )])
        }
        Err(e) => return Err(vec![e]),
    };
    let mut top = Layer::default();
    let mut machines = None;
    for index in first_occurrences(&keys) {
        let Some(file) = read_entry::<SpecFile>(text, &[], index, &mut problems) else {
            continue;
        };
        let (layer, names) = file.split();
        top = layer.over(&top);
        if let (Some(names), None) = (names, &machines) {
            machines = Some(read_machines(text, names, &mut problems));
        }
    }
    if duplicated {
        // serde's own "duplicate field" is located at the mapping, not at the key;
        // the walk for duplicates reported each at its key.
        problems.retain(|e| !e.to_string().contains("duplicate field `"));
    }
    let layers = Layers {
        top,
        top_keys: keys,
        machines,
    };
    Ok((layers, problems))
}

/// Each machine's own layer, read key by key like the top level.
fn read_machines(text: &str, names: Vec<String>, problems: &mut Vec<Error>) -> Vec<MachineLayer> {
    let mut machines: Vec<MachineLayer> = Vec::new();
    for name in names {
        // A name written twice was reported as a duplicate key; its path leads to
        // the first.
        if machines.iter().any(|m| m.name == name) {
            continue;
        }
        if let Err(message) = check_name(&name) {
            let at = [Step::Key(MACHINES.into()), Step::AtKey(name.clone())];
            problems.push(error_at(text, &at, &message));
        }
        let path = [Step::Key(MACHINES.into()), Step::Key(name.clone())];
        let expecting = "a machine's settings such as `memory: 2G`, or nothing";
        let keys = match entries::keys(text, &path, expecting) {
            Ok(keys) => keys.unwrap_or_default(),
            Err(e) => {
                problems.push(e);
                Vec::new()
            }
        };
        let mut layer = Layer::default();
        for index in first_occurrences(&keys) {
            if let Some(one) = read_entry::<Layer>(text, &path, index, problems) {
                layer = one.over(&layer);
            }
        }
        machines.push(MachineLayer { name, layer, keys });
    }
    machines
}

/// The indexes of the keys not written before: a key written again was reported
/// as a duplicate, and is not read a second time.
fn first_occurrences(keys: &[String]) -> impl Iterator<Item = usize> + '_ {
    (0..keys.len()).filter(|&i| !keys[..i].contains(&keys[i]))
}

/// The `index`th entry of the mapping at `path` read alone; when it fails, each
/// element of its list, or each key of its mapping, is read alone, so that every
/// bad one is reported.
fn read_entry<T: DeserializeOwned>(
    text: &str,
    path: &[Step],
    index: usize,
    problems: &mut Vec<Error>,
) -> Option<T> {
    let whole = match entries::entry::<T>(text, path, index, None) {
        Ok(found) => return found,
        Err(e) => e,
    };
    let parts = match entries::entry_shape(text, path, index) {
        Some(Shape::Seq(len)) => (0..len).map(Cut::Element).collect(),
        Some(Shape::Map(len)) => (0..len).map(Cut::Key).collect(),
        None => Vec::new(),
    };
    let mut each: Vec<Error> = parts
        .into_iter()
        .filter_map(|cut| entries::entry::<T>(text, path, index, Some(cut)).err())
        // One key of a mapping alone lacks the others: not a problem of the spec.
        .filter(|e| !e.to_string().contains("missing field `"))
        .collect();
    if each.is_empty() {
        problems.push(whole);
    } else {
        problems.append(&mut each);
    }
    None
}
