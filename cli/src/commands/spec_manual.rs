//! hvbox.yaml(5): the spec reference, written from the JSON Schema of hvbox.yaml
//! (itself made from the types the parser reads), so the page names every key
//! there is and no key there is not; and the environment hvbox reads.

use serde_json::Value;

/// What hvbox reads from its environment, for the ENVIRONMENT section.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("HVBOX_DATA_DIR", "Where boxes built here (`hvbox box build`) and the links to each machine's ssh_config (ssh/) live; default $XDG_DATA_HOME/hvbox, else ~/.local/share/hvbox."),
    ("HVBOX_CACHE_DIR", "The box cache; default $XDG_CACHE_HOME/hvbox, else ~/.cache/hvbox."),
    ("HVBOX_CONFIG_DIR", "Where the user's catalog.yaml is read; default $XDG_CONFIG_HOME/hvbox, else ~/.config/hvbox."),
    ("HVBOX_MIRRORS", "FROM=TO,... URL prefixes: a box URL starting with FROM is downloaded from TO instead (the digest is still checked)."),
    ("HVBOX_HTTP_TIMEOUT", "Seconds a download may stall before it is retried."),
    ("HVBOX_HTTP_ATTEMPTS", "How many times a download is tried."),
    ("HVBOX_MAX_BOX_SIZE", "The largest box disk hvbox accepts, such as 512G."),
    ("HVBOX_VIRTIOFSD", "The virtiofsd program serving `mounts:`, instead of the one found on PATH or in /usr/libexec."),
    ("http_proxy, https_proxy, no_proxy", "Proxies for box downloads (also HTTP_PROXY, HTTPS_PROXY, NO_PROXY)."),
    ("XDG_DATA_HOME, XDG_CACHE_HOME, XDG_CONFIG_HOME", "Used for the folders above when the HVBOX_ variables are unset; relative values are ignored, as the XDG specification says."),
    ("XDG_RUNTIME_DIR", "Running machines keep their sockets in its hvbox/ folder; without it, in /tmp/hvbox-UID/hvbox."),
    ("NO_COLOR", "No colours in hvbox's help; hvbox's other output has none."),
    ("TERM", "With TERM=dumb, `up` prints a plain line per boot stage instead of its live status line."),
];

/// hvbox.yaml(5) in roff, from the schema `hvbox schema` prints.
pub fn page(schema: &Value, version: &str) -> String {
    let mut out = format!(
        ".TH HVBOX.YAML 5 \"\" \"hvbox {version}\"\n.SH NAME\nhvbox.yaml \\- the machines of an hvbox project\n"
    );
    out.push_str(".SH DESCRIPTION\n");
    text(&mut out, schema["description"].as_str().unwrap_or_default());
    out.push_str(".PP\n");
    text(&mut out, "hvbox finds hvbox.yaml in the current folder or its nearest parent (or in the folder -C names). `hvbox validate` checks it, naming each problem by line and column; `hvbox schema` prints its JSON Schema for editors. `hvbox init` writes a commented starter.");
    out.push_str(".SH KEYS\n");
    text(&mut out, "Each key of the top level, then the keys inside it. Under `machines:`, each machine NAME takes the top-level keys again.");
    let defs = &schema["$defs"];
    if let Some(props) = schema["properties"].as_object() {
        for (key, node) in props {
            keys(&mut out, defs, key, node, &mut Vec::new());
        }
    }
    out.push_str(".SH ENVIRONMENT\n");
    for (name, what) in ENVIRONMENT {
        out.push_str(".TP\n");
        out.push_str(&format!(".B {}\n", escape(name)));
        text(&mut out, what);
    }
    out.push_str(".SH FILES\n.TP\n.B hvbox.yaml\nThe project's spec.\n.TP\n.B .hvbox/machines/NAME/\nA machine's disk, seed, keys, logs (serial.log) and ssh_config.\n");
    out.push_str(".SH SEE ALSO\n.BR hvbox (1),\n.BR hvbox\\-up (1),\n.BR hvbox\\-validate (1)\n");
    out
}

/// One key (`ports[].host`), and the keys inside it.
fn keys(out: &mut String, defs: &Value, path: &str, node: &Value, seen: &mut Vec<String>) {
    let (target, def) = resolve(defs, node);
    // A type that holds itself (none today) ends the walk instead of looping.
    if def.as_ref().is_some_and(|d| seen.contains(d)) {
        return;
    }
    out.push_str(".TP\n");
    out.push_str(&format!(".B {}\n", escape(path)));
    let mut about = Vec::new();
    if let Some(kind) = kind(defs, node) {
        about.push(format!("({kind})"));
    }
    // The key's own description, else its type's.
    if let Some(d) = node["description"]
        .as_str()
        .or(target["description"].as_str())
    {
        about.push(d.to_string());
    }
    // Unless the description says it already.
    let said = about.iter().any(|a| a.to_lowercase().contains("default"));
    if let Some(d) = node
        .get("default")
        .or(target.get("default"))
        .filter(|d| !is_empty(d) && !said)
    {
        about.push(format!("Default: {d}."));
    }
    text(out, &about.join(" "));
    if path == "machines" {
        return;
    }
    seen.extend(def.clone());
    for (child, sub) in children(defs, target) {
        keys(out, defs, &format!("{path}{child}"), sub, seen);
    }
    if def.is_some() {
        seen.pop();
    }
}

/// The keys inside `node`: its properties, its variants' properties, its items'.
fn children<'a>(defs: &'a Value, node: &'a Value) -> Vec<(String, &'a Value)> {
    let mut out: Vec<(String, &Value)> = Vec::new();
    if let Some(props) = node["properties"].as_object() {
        out.extend(props.iter().map(|(k, v)| (format!(".{k}"), v)));
    }
    for variants in ["oneOf", "anyOf"] {
        for v in node[variants].as_array().into_iter().flatten() {
            let (v, _) = resolve(defs, v);
            for (k, p) in v["properties"].as_object().into_iter().flatten() {
                let name = format!(".{k}");
                if !out.iter().any(|(n, _)| n == &name) {
                    out.push((name, p));
                }
            }
        }
    }
    if let Some(items) = node.get("items") {
        let (items, _) = resolve(defs, items);
        out.extend(
            children(defs, items)
                .into_iter()
                .map(|(k, v)| (format!("[]{k}"), v)),
        );
    }
    out
}

/// The definition `node`'s `$ref` names, with its name; else `node` itself.
fn resolve<'a>(defs: &'a Value, node: &'a Value) -> (&'a Value, Option<String>) {
    match node["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => (&defs[name], Some(name.to_string())),
        None => (node, None),
    }
}

/// A short type: `string`, `integer`, `list`, `mapping`, or its variants'.
fn kind(defs: &Value, node: &Value) -> Option<String> {
    let target = match node["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => &defs[name],
        None => node,
    };
    let one = |t: &str| {
        match t {
            "array" => "list",
            "object" => "mapping",
            "null" => "",
            other => other,
        }
        .to_string()
    };
    let names: Vec<String> = match &target["type"] {
        Value::String(t) => vec![one(t)],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).map(one).collect(),
        _ => target["oneOf"]
            .as_array()
            .or(target["anyOf"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| kind(defs, v))
            .collect(),
    };
    let mut names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
    names.dedup();
    (!names.is_empty()).then(|| names.join(" or "))
}

fn is_empty(v: &Value) -> bool {
    v.is_null()
        || v.as_array().is_some_and(Vec::is_empty)
        || v.as_object().is_some_and(|o| o.is_empty())
}

/// A paragraph of plain text.
fn text(out: &mut String, s: &str) {
    out.push_str(&escape(s));
    out.push('\n');
}

/// Text roff prints as it is: backslashes doubled, hyphens kept as hyphens, and no
/// line starting with a control character.
pub fn escape(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    s.lines()
        .map(|l| match l.starts_with('.') || l.starts_with('\'') {
            true => format!("\\&{l}"),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_key_and_nested_keys_are_described() {
        let page = page(&crate::spec::schema::schema(), "0");
        for key in [
            "box",
            "cpus",
            "memory",
            "ports",
            "mounts",
            "provision",
            "machines",
            "cloud_init",
        ] {
            assert!(page.contains(&format!("\n.B {key}\n")), "no {key}:\n{page}");
        }
        assert!(page.contains(".B ports[].host\n"), "{page}");
        assert!(page.contains(".B cloud_init.packages\n"), "{page}");
        assert!(page.contains(".SH ENVIRONMENT\n"));
        assert!(page.contains(".B HVBOX_MIRRORS\n"));
    }

    #[test]
    fn roff_controls_in_text_are_escaped() {
        assert_eq!(
            escape(".hidden\n'x\na\\b-c"),
            "\\&.hidden\n\\&'x\na\\eb\\-c"
        );
    }
}
