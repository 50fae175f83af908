use serde_json::{json, Value};

use super::*;

fn value(doc: &str) -> Value {
    load(doc).unwrap().unwrap().to_json()
}

/// The value of `k` in a one-key document `k: {text}`.
fn typed(text: &str) -> Value {
    value(&format!("k: {text}\n"))["k"].clone()
}

#[test]
fn plain_scalars_follow_yaml_1_1() {
    for (text, want) in [
        ("yes", json!(true)),
        ("On", json!(true)),
        ("TRUE", json!(true)),
        ("no", json!(false)),
        ("off", json!(false)),
        ("y", json!("y")), // PyYAML's resolver leaves y/n as text
        ("n", json!("n")),
        ("~", Value::Null),
        ("", Value::Null),
        ("Null", Value::Null),
        ("0644", json!(420)),
        ("0", json!(0)),
        ("-17", json!(-17)),
        ("1_000", json!(1000)),
        ("0x1F", json!(31)),
        ("0b101", json!(5)),
        ("190:20:30", json!(685230)),
        (
            "52:54:00:12:34:56",
            json!(52u64 * 60u64.pow(5) + 54 * 60u64.pow(4) + 12 * 3600 + 34 * 60 + 56),
        ),
        ("52:54:00:ab:cd:ef", json!("52:54:00:ab:cd:ef")),
        ("09", json!("09")), // not octal, not decimal: text
        ("3.10", json!(3.1)),
        ("-1.5", json!(-1.5)),
        ("1.", json!(1.0)),
        (".5", json!(0.5)),
        ("6.8523015e+5", json!(685230.15)),
        ("1:30.5", json!(90.5)),
        ("1e3", json!("1e3")),     // YAML 1.1 floats need a dot
        ("1.0e3", json!("1.0e3")), // ... and a signed exponent
        ("1.2.3", json!("1.2.3")),
        ("2024-01-01", json!("2024-01-01")), // timestamps stay text
        ("hello world", json!("hello world")),
    ] {
        assert_eq!(typed(text), want, "{text:?}");
    }
}

#[test]
fn quoted_and_block_scalars_are_text() {
    let v = value("a: 'yes'\nb: \"0644\"\nc: |\n  on\nd: >\n  12\n");
    assert_eq!(
        v,
        json!({"a": "yes", "b": "0644", "c": "on\n", "d": "12\n"})
    );
}

#[test]
fn tags() {
    let v = value(
        "a: !!str 0644\nb: !!int \"0644\"\nc: !!bool 'yes'\nd: !!float '1'\ne: !!null x\nf: ! 12\n",
    );
    assert_eq!(
        v,
        json!({"a": "0644", "b": 420, "c": true, "d": 1.0, "e": null, "f": "12"})
    );
    for bad in [
        "a: !!binary aGk=\n",
        "a: !custom x\n",
        "a: !!set {x}\n",
        "a: !!int x\n",
    ] {
        let e = load(bad).unwrap_err();
        assert_eq!(e.line, 1, "{bad}: {e:?}");
    }
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let doc = "\
base: &b {x: 1, y: 2}
other: &o {y: 20, z: 30}
one: {<<: *b, y: 3}
two:
  <<: [*b, *o]
  w: 0
list: &l [1, 2]
again: *l
none: {<<: [], k: v}
";
    let v = value(doc);
    assert_eq!(v["one"], json!({"x": 1, "y": 3}));
    assert_eq!(v["two"], json!({"x": 1, "y": 2, "z": 30, "w": 0}));
    assert_eq!(v["again"], json!([1, 2]));
    assert_eq!(v["none"], json!({"k": "v"}));
}

#[test]
fn later_duplicate_key_wins() {
    assert_eq!(value("a: 1\nb: 2\na: 3\n"), json!({"a": 3, "b": 2}));
}

#[test]
fn lines_are_recorded() {
    let root = load("#cloud-config\nusers:\n  - name: hv\n\npackages: [a]\n")
        .unwrap()
        .unwrap();
    let Kind::Map(entries) = &root.kind else {
        panic!()
    };
    let lines: Vec<(&str, usize)> = entries.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(lines, [("users", 2), ("packages", 5)]);
    let Kind::Seq(users) = &entries[0].value.kind else {
        panic!()
    };
    assert_eq!(users[0].line, 3);
}

#[test]
fn errors_name_line_and_column() {
    let e = load("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
    assert!(e.message.starts_with("not valid YAML"), "{e:?}");
    assert!(e.line >= 2, "{e:?}");
    let e = load("a: 1\n  b: 2\n").unwrap_err();
    assert_eq!((e.line, e.column), (2, Some(4)), "{e:?}");
}

#[test]
fn rejects_what_json_cannot_carry() {
    for (doc, line) in [
        ("a: 1\nyes: 2\n", 2), // a boolean key
        ("a:\n  12: x\n", 2),  // an integer key
        ("a: .inf\n", 1),
        ("a: 99999999999999999999\n", 1), // beyond 64 bits
        ("a: 1\n---\nb: 2\n", 2),         // a second document
        ("a: &x [*x]\n", 1),              // a recursive alias
        ("a: {<<: 1}\n", 1),              // merge of a non-mapping
    ] {
        let e = load(doc).unwrap_err();
        assert_eq!(e.line, line, "{doc:?}: {e:?}");
    }
}

#[test]
fn alias_bombs_are_bounded() {
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        doc += &format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        );
    }
    let e = load(&doc).unwrap_err();
    assert!(e.message.contains("expand"), "{e:?}");
}

#[test]
fn empty_document_is_none() {
    assert_eq!(load("#cloud-config\n# nothing else\n").unwrap(), None);
}
