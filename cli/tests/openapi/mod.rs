//! A strict validator for objects against the definitions of an OpenAPI (Swagger
//! 2.0) document, as the API server's strict field validation judges them: a field
//! the schema does not name is an error, as are a missing required field, a value
//! of the wrong type, a value outside an `enum` and an int32 out of range.
//!
//! Written for the tests rather than taken from a JSON Schema crate: Swagger 2.0's
//! definitions leave `additionalProperties` out where Kubernetes means "no other
//! fields", which a JSON Schema validator reads as "anything goes"; its list of
//! types (`Quantity`: string, integer or number) and `nullable` need handling too.
//! The definitions come from `scripts/extract-openapi-defs` (under `data/openapi/`).
#![allow(dead_code)]

use serde_json::{Map, Value};
use std::path::Path;

pub struct Definitions {
    pub source: String,
    pub version: String,
    pub root: String,
    defs: Map<String, Value>,
}

impl Definitions {
    /// A document `scripts/extract-openapi-defs` wrote.
    pub fn load(path: &Path) -> Definitions {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("valid JSON");
        let field = |k: &str| doc[k].as_str().expect(k).to_string();
        Definitions {
            source: field("source"),
            version: field("version"),
            root: field("root"),
            defs: doc["definitions"].as_object().expect("definitions").clone(),
        }
    }

    /// Every problem of `value` as an instance of the root definition, each as
    /// `PATH: what`; empty when it conforms.
    pub fn check(&self, value: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let root = Value::String(format!("#/definitions/{}", self.root));
        let schema = serde_json::json!({"$ref": root});
        self.walk(&schema, value, "$", &mut problems);
        problems
    }

    fn walk(&self, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            let Some(target) = self.defs.get(name) else {
                out.push(format!(
                    "{path}: the schema refers to {name}, which is missing"
                ));
                return;
            };
            return self.walk(target, value, path, out);
        }
        if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                out.push(format!("{path}: {value} is not one of {allowed:?}"));
            }
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            // No type: the schema leaves the value free (none of ours is such).
            _ => return,
        };
        let Some(kind) = types.iter().find(|t| is_a(t, value)) else {
            out.push(format!(
                "{path}: {value} is not of type {}",
                types.join(" or ")
            ));
            return;
        };
        match *kind {
            "integer"
                if schema.get("format").and_then(Value::as_str) == Some("int32")
                    && value.as_i64().and_then(|n| i32::try_from(n).ok()).is_none() =>
            {
                out.push(format!("{path}: {value} is out of the int32 range"));
            }
            "array" => {
                if let Some(items) = schema.get("items") {
                    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                        self.walk(items, item, &format!("{path}[{i}]"), out);
                    }
                }
            }
            "object" => self.object(schema, value, path, out),
            _ => {}
        }
    }

    fn object(&self, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
        let fields = value.as_object().expect("checked to be an object");
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(name) {
                out.push(format!("{path}: the required field `{name}` is missing"));
            }
        }
        for (name, field) in fields {
            let at = format!("{path}.{name}");
            match (properties.and_then(|p| p.get(name)), additional) {
                (Some(s), _) => self.walk(s, field, &at, out),
                // A map: its values all have one schema.
                (None, Some(Value::Object(s))) => {
                    self.walk(&Value::Object(s.clone()), field, &at, out)
                }
                (None, Some(Value::Bool(true))) => {}
                _ => out.push(format!("{at}: unknown field `{name}`")),
            }
        }
    }
}

fn is_a(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}
