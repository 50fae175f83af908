//! The JSON Schema of hvbox.yaml (`hvbox schema`), made by schemars from the types
//! the parser reads, so the two cannot drift. Types read by hand-written code get
//! their schema here, saying what that code accepts as far as JSON Schema can:
//! ranges, patterns for sizes and names, one of the forms of a box or a step.

use super::box_source::BoxArtifactsSpec;
use super::layer::{Layer, SpecFile};
use super::machines::{Machines, MAX_NAME};
use super::mounts::GuestPath;
use super::provision::ProvisionStep;
use super::values::{Cidr, Hostname, KernelArgs, UserName};
use super::{BoxSource, Cpus, MemorySize, Port, PortEntry, PortForward, Size};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};
use std::borrow::Cow;

/// The schema of hvbox.yaml (draft 2020-12).
pub fn schema() -> Value {
    let mut schema = schemars::schema_for!(SpecFile);
    let root = schema.ensure_object();
    root.insert(
        "description".into(),
        json!("hvbox.yaml: the machines of a project. The top-level keys are the settings of every machine; `machines:` names several, each a layer over them."),
    );
    // What the types cannot say, as the parser's checks between keys say it: a box
    // at the top or in every machine, and no top-level hostname beside `machines`.
    root.insert(
        "anyOf".into(),
        json!([
            {"required": ["box"]},
            {
                "required": ["machines"],
                "properties": {
                    "machines": {"additionalProperties": {"type": "object", "required": ["box"]}}
                }
            }
        ]),
    );
    root.insert(
        "dependentSchemas".into(),
        json!({"machines": {"not": {"required": ["hostname"]}}}),
    );
    let mut schema = schema.to_value();
    tidy(&mut schema);
    schema
}

/// Doc comments as one line each, and no `null` default for keys that take no null
/// (an absent optional key).
fn tidy(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            if let Some(Value::String(text)) = map.get_mut("description") {
                *text = text.replace('\n', " ");
            }
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

/// [`schema`] as the text `hvbox schema` prints and `.hvbox/` keeps.
pub fn text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a JSON value prints");
    text.push('\n');
    text
}

/// Unicode control characters, which `char::is_control` finds.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// One line of printable text, not only blanks.
fn printable_line() -> String {
    format!("^[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$")
}

/// Something besides blanks.
const NOT_BLANK: &str = r"\S";

/// As [`Size::parse`] reads it: a number (not zero) and a binary unit.
const SIZE: &str = r"^\s*(?=[0-9.]*[1-9])([0-9]+\.?[0-9]*|\.[0-9]+)\s*[KkMmGgTt]([Ii]?[Bb])?\s*$";

const LABEL: &str = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

const IPV4: &str = r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";

/// The digest of an artifact or of a pinned catalog box.
pub fn digest(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "`sha256:` or `sha512:` and the digest in lowercase hex.",
        "pattern": "^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$"
    })
}

/// A disk image's format, as `Format`'s parser reads it.
pub fn format(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "The image's format, checked against its bytes: raw, img, qcow2 or tar, optionally compressed (.xz, .gz, .zst), e.g. qcow2 or raw.xz.",
        "pattern": "^(raw|img|qcow2|tar)(\\.(xz|gz|zst))?$"
    })
}

/// A schema for one of the spec's types: its name and the schema itself.
macro_rules! schema {
    ($ty:ty, $name:literal, |$generator:ident| $body:expr) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema($generator: &mut SchemaGenerator) -> Schema {
                $body
            }
        }
    };
}

schema!(GuestPath, "GuestPath", |_g| json_schema!({
    "type": "string",
    "description": "An absolute path in the guest, without `.` or `..`, that is not a system folder (/, /etc, /usr, /home, …).",
    "pattern": "^/[^/]"
}));

schema!(Cpus, "Cpus", |_g| json_schema!({
    "type": "integer",
    "minimum": 1,
    "maximum": 255
}));

schema!(Port, "Port", |_g| json_schema!({
    "type": "integer",
    "minimum": 1,
    "maximum": 65535
}));

schema!(PortEntry, "PortEntry", |g| json_schema!({
    "description": "A host port forwarded to a guest port, or `auto: false`: no automatic forwarding of the ports the guest listens on.",
    "anyOf": [
        g.subschema_for::<PortForward>(),
        {
            "type": "object",
            "properties": {
                "auto": {
                    "type": "boolean",
                    "description": "Forward each TCP port the guest starts listening on to the same port on the host's 127.0.0.1 (another when that one is taken), through ssh (default true)."
                }
            },
            "required": ["auto"],
            "additionalProperties": false
        }
    ]
}));

schema!(Size, "Size", |_g| json_schema!({
    "type": "string",
    "description": "A size with a binary unit (1G = 1024M): K, M, G or T, optionally with B or iB, such as 512M or 20GiB.",
    "pattern": SIZE
}));

schema!(MemorySize, "MemorySize", |_g| json_schema!({
    "type": "string",
    "description": format!("A size with a binary unit such as 512M or 2G, at least {}, the least a Debian cloud guest's first boot runs in, and a whole number of MiB.", MemorySize::MIN),
    "pattern": SIZE
}));

schema!(Hostname, "Hostname", |_g| json_schema!({
    "type": "string",
    "description": "An RFC 1123 host name: labels of letters, digits and inner hyphens, at most 63 characters each.",
    "maxLength": 253,
    "pattern": format!("^{LABEL}(\\.{LABEL})*$")
}));

schema!(UserName, "UserName", |_g| json_schema!({
    "type": "string",
    "description": "A login name: a lowercase letter or '_', then lowercase letters, digits, '_' or '-', at most 32; not root.",
    "pattern": "^[a-z_][a-z0-9_-]{0,31}$",
    "not": {"const": "root"}
}));

schema!(KernelArgs, "KernelArgs", |_g| json_schema!({
    "type": "string",
    "description": "Kernel arguments: one line of printable text, at most 1024 bytes.",
    "maxLength": 1024,
    "pattern": printable_line()
}));

schema!(Cidr, "Cidr", |_g| json_schema!({
    "type": "string",
    "description": "An address with its prefix length, such as 10.0.2.20/24 or fd00::20/64.",
    "anyOf": [
        {"pattern": format!("^{IPV4}/\\+?0*([0-9]|[12][0-9]|3[0-2])$")},
        {"pattern": "^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/\\+?0*([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$"}
    ]
}));

schema!(Machines, "Machines", |g| json_schema!({
    "type": "object",
    "description": "The project's machines by name, in the order commands go through them; each a layer over the top-level keys (nothing: the top level's settings).",
    "minProperties": 1,
    "propertyNames": {
        "description": format!("Lowercase letters, digits and '-', starting with a letter and not ending with '-', at most {MAX_NAME} characters."),
        "pattern": format!("^[a-z]([a-z0-9-]{{0,{}}}[a-z0-9])?$", MAX_NAME - 2)
    },
    "additionalProperties": {"anyOf": [g.subschema_for::<Layer>(), {"type": "null"}]}
}));

schema!(BoxSource, "Box", |g| json_schema!({
    "description": "A catalog box (its name, or a mapping pinning a version and digest), or the box's artifacts, each pinned by its digest.",
    "oneOf": [
        {
            "type": "string",
            "description": "A catalog name: built-in (debian-12, debian-13, ubuntu-22.04, ubuntu-24.04), from a catalog file, or built here by `hvbox box build`.",
            "pattern": NOT_BLANK
        },
        {
            "type": "object",
            "description": "A catalog box pinned to a version and/or a digest.",
            "properties": {
                "name": {"type": "string", "pattern": NOT_BLANK},
                "version": {
                    "description": "A version of the box, such as \"20240211-1654\" (quote one that reads as a number with a point).",
                    "anyOf": [{"type": "string", "pattern": NOT_BLANK}, {"type": "integer", "minimum": 0}]
                },
                "digest": digest(g)
            },
            "required": ["name"],
            "additionalProperties": false
        },
        g.subschema_for::<BoxArtifactsSpec>()
    ]
}));

schema!(ProvisionStep, "ProvisionStep", |_g| {
    let privileged = json!({
        "type": "boolean",
        "description": "Run as root through sudo (default true), or as the ssh user."
    });
    let name = json!({
        "type": "string",
        "description": "A label for the step's output.",
        "pattern": format!("^\\s*[^\\s{CONTROL}]([^{CONTROL}]*[^\\s{CONTROL}])?\\s*$")
    });
    let args = json!({
        "type": "array",
        "description": "Arguments, each passed exactly as written.",
        "items": {"type": ["string", "number", "boolean"]}
    });
    let local = |what: &str| {
        json!({
            "type": "string",
            "description": format!("{what}, relative to hvbox.yaml's folder (`~` is not expanded)."),
            "pattern": "^(?!~)[\\s\\S]*\\S"
        })
    };
    let step = |required: Vec<&str>, own: Value| {
        let mut properties = json!({"privileged": privileged, "name": name});
        for (k, v) in own.as_object().expect("an object") {
            properties[k] = v.clone();
        }
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false
        })
    };
    json_schema!({
        "description": "A step run over ssh once the machine is up: exactly one of `shell` (an inline script), `script` (a script file) or `file` (a file or folder copied into the guest).",
        "oneOf": [
            step(vec!["shell"], json!({
                "shell": {"type": "string", "description": "An inline script: `sh -e` unless it starts with #!.", "pattern": NOT_BLANK},
                "args": args
            })),
            step(vec!["script"], json!({"script": local("A script file"), "args": args})),
            step(vec!["file", "destination"], json!({
                "file": local("A file or folder"),
                "destination": {
                    "type": "string",
                    "description": "Where it goes in the guest; relative to the ssh user's home folder unless absolute.",
                    "pattern": format!("^(?!~)[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$")
                }
            }))
        ]
    })
});
