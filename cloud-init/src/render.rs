//! Serializes seed documents so PyYAML reads back exactly what was meant.

use serde::Serialize;

/// Renders a document as JSON, which is YAML too. YAML emitters (serde_yaml
/// included) write YAML 1.2 plain scalars, but cloud-init reads with PyYAML's
/// YAML 1.1 rules, where an all-digit MAC such as 52:54:00:12:34:56 is a
/// base-60 integer and `on`/`yes` are booleans (canonical/cloud-init#3703).
/// JSON double-quotes every string, so each value reaches the guest intact.
pub(crate) fn render(value: &impl Serialize) -> String {
    let json = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    let mut doc = yaml11_safe(&json);
    doc.push('\n');
    doc
}

/// Rewrites the two things PyYAML would read differently from JSON. Inside
/// strings, serde_json leaves some characters raw that YAML 1.1 treats
/// specially: outside its printable set (DEL, C1 controls, U+FFFE/U+FFFF)
/// PyYAML refuses the whole stream, and NEL, U+2028 and U+2029 are line
/// breaks it folds away. A `\u` escape means the same to both readers.
/// Outside strings: a YAML 1.1 float needs a dot and a signed exponent, so
/// serde_json's `1e+16` or `1e-7` would be read as text; they become `1.0e+16`.
fn yaml11_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped, mut number) = (false, false, String::new());
    for c in json.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            if matches!(
                c,
                '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{fffe}' | '\u{ffff}'
            ) {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push(c);
            }
            continue;
        }
        // A JSON number starts with a digit or '-'; `true`/`false` hold an 'e' too.
        let continues = !number.is_empty() && "+-.eE".contains(c);
        if c.is_ascii_digit() || c == '-' || continues {
            number.push(c);
            continue;
        }
        out.push_str(&float_for_yaml11(&std::mem::take(&mut number)));
        in_string = c == '"';
        out.push(c);
    }
    out.push_str(&float_for_yaml11(&number));
    out
}

fn float_for_yaml11(number: &str) -> String {
    let Some(i) = number.find(['e', 'E']) else {
        return number.to_owned();
    };
    let (mantissa, exponent) = (&number[..i], &number[i + 1..]);
    let dot = if mantissa.contains('.') { "" } else { ".0" };
    let sign = if exponent.starts_with(['+', '-']) {
        ""
    } else {
        "+"
    };
    format!("{mantissa}{dot}e{sign}{exponent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprintable_and_line_break_characters_are_escaped() {
        let raw = "a\u{7f}b\u{85}c\u{9b}d\u{fffe}e\u{2028}f\u{a0}g";
        let doc = render(&serde_json::json!({ "k": raw }));
        assert!(
            doc.contains(r"a\u007fb\u0085c\u009bd\ufffee\u2028f"),
            "{doc}"
        );
        assert!(doc.contains("f\u{a0}g"), "NBSP is printable: {doc}");
        let back: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(back["k"], raw);
    }

    #[test]
    fn floats_keep_a_dot_and_a_signed_exponent() {
        let doc = render(&serde_json::json!([
            1e16,
            1e-7,
            2.5e300,
            100.0,
            -0.25,
            7,
            true,
            false,
            null,
            "1e5 \"x\" 2e3"
        ]));
        let compact: String = doc.split_whitespace().collect();
        assert_eq!(
            compact,
            r#"[1.0e+16,1.0e-7,2.5e+300,100.0,-0.25,7,true,false,null,"1e5\"x\"2e3"]"#
        );
    }
}
