//! Debian version ordering (as in `dpkg --compare-versions`), used to pick
//! the newest `vmlinuz-<version>`: digit runs compare numerically, so
//! `6.1.0-10` is newer than `6.1.0-9`.

use std::cmp::Ordering;

/// Compare two version strings the way dpkg compares upstream versions.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        let (a_text, a_rest) = split_run(a, |c| !c.is_ascii_digit());
        let (b_text, b_rest) = split_run(b, |c| !c.is_ascii_digit());
        let ord = compare_text(a_text, b_text);
        if ord != Ordering::Equal {
            return ord;
        }
        let (a_num, a_rest) = split_run(a_rest, |c| c.is_ascii_digit());
        let (b_num, b_rest) = split_run(b_rest, |c| c.is_ascii_digit());
        let ord = compare_digits(a_num, b_num);
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (a_rest, b_rest);
    }
    Ordering::Equal
}

fn split_run(s: &[u8], pred: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().position(|&c| !pred(c)).unwrap_or(s.len());
    s.split_at(n)
}

/// dpkg's character order: `~` sorts before everything (even the end of
/// the string), then letters, then other characters.
fn char_weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_text(a: &[u8], b: &[u8]) -> Ordering {
    (0..a.len().max(b.len()))
        .map(|i| char_weight(a.get(i).copied()).cmp(&char_weight(b.get(i).copied())))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Numeric comparison without parsing, so arbitrarily long runs work.
fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    fn trim(s: &[u8]) -> &[u8] {
        let n = s.iter().position(|&c| c != b'0').unwrap_or(s.len());
        &s[n..]
    }
    let (a, b) = (trim(a), trim(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::*;

    #[test]
    fn numeric_runs_compare_numerically() {
        assert_eq!(
            compare("6.1.0-10-cloud-amd64", "6.1.0-9-cloud-amd64"),
            Greater
        );
        assert_eq!(compare("6.1.0-9-cloud-amd64", "6.1.0-10-cloud-amd64"), Less);
        assert_eq!(compare("5.10.0-28-amd64", "6.1.0-9-amd64"), Less);
        assert_eq!(compare("6.10.1", "6.9.12"), Greater);
        assert_eq!(compare("6.1.0-010", "6.1.0-10"), Equal);
        assert_eq!(compare("99999999999999999999999", "1"), Greater);
    }

    #[test]
    fn text_and_tilde() {
        assert_eq!(compare("6.1.0", "6.1.0"), Equal);
        assert_eq!(compare("6.1.0~rc1", "6.1.0"), Less);
        assert_eq!(compare("6.1.0", "6.1.0+b1"), Less);
        assert_eq!(compare("6.1.0a", "6.1.0+"), Less);
        assert_eq!(compare("6.1.0-generic", "6.1.0"), Greater);
    }

    #[test]
    fn picks_newest_when_sorting() {
        let mut v = vec!["6.1.0-9", "6.1.0-10", "6.1.0-2", "5.19.0-45"];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(v, ["5.19.0-45", "6.1.0-2", "6.1.0-9", "6.1.0-10"]);
    }
}
