//! Checksum files (`SHA512SUMS`, `SHA256SUMS`), directory listings, and version order.

use std::cmp::Ordering;

use crate::{Algorithm, Digest};

/// Parse a SHA512SUMS/SHA256SUMS file (`<hex>  <name>` or `<hex> *<name>`
/// lines) and return the digest listed for file `name`. Lines that are
/// malformed or have the wrong length for `algorithm` are ignored.
pub fn digest_from_sums(text: &str, name: &str, algorithm: Algorithm) -> Option<Digest> {
    text.lines().find_map(|line| {
        let (hex, rest) = line.trim().split_once(' ')?;
        // GNU format: one space, then ' ' (text mode) or '*' (binary mode).
        let file = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .unwrap_or(rest);
        let file = file.strip_prefix("./").unwrap_or(file);
        if file != name {
            return None;
        }
        Digest::new(algorithm, &hex.to_ascii_lowercase()).ok()
    })
}

/// The digest listed for `name`, trying SHA-512 then SHA-256 (a file may hold either).
pub fn any_digest_from_sums(text: &str, name: &str) -> Option<Digest> {
    digest_from_sums(text, name, Algorithm::Sha512)
        .or_else(|| digest_from_sums(text, name, Algorithm::Sha256))
}

/// The link targets (`href="…"`) of an HTML directory listing, with a trailing `/`
/// and a leading `./` removed.
pub(crate) fn listing_entries(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut rest = 0;
    while let Some(i) = lower[rest..].find("href=") {
        let start = rest + i + 5;
        let quote = html[start..].chars().next();
        let (begin, end) = match quote {
            Some(q @ ('"' | '\'')) => {
                let begin = start + 1;
                match html[begin..].find(q) {
                    Some(len) => (begin, begin + len),
                    None => break,
                }
            }
            _ => {
                let len = html[start..]
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .unwrap_or(html.len() - start);
                (start, start + len)
            }
        };
        let target = &html[begin..end];
        let target = target.strip_prefix("./").unwrap_or(target);
        let target = target.strip_suffix('/').unwrap_or(target);
        if !target.is_empty() && !target.contains('/') && !target.contains('?') {
            out.push(target.to_string());
        }
        rest = end;
    }
    out
}

/// Order versions such as `20240211-1654`, `20240207.1` or `2.10` by their numbers:
/// runs of digits compare as numbers, everything else as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let pieces = |s: &str| -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match out.last_mut() {
                Some((d, run)) if *d == digit => run.push(c),
                _ => out.push((digit, c.to_string())),
            }
        }
        out
    };
    let (pa, pb) = (pieces(a), pieces(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apache_listings() {
        let html = r#"<html><body><a href="?C=N;O=D">Name</a> <a href="/images/cloud/">Parent</a>
<a href="20240102-1614/">20240102-1614/</a> <a href='20240211-1654/'>x</a>
<a href=daily/>daily/</a> <A HREF="latest/">latest/</A> <a href="SHA512SUMS">SHA512SUMS</a>"#;
        assert_eq!(
            listing_entries(html),
            [
                "20240102-1614",
                "20240211-1654",
                "daily",
                "latest",
                "SHA512SUMS"
            ]
        );
    }

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(
            compare_versions("20240211-1654", "20240102-1614"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("20240211-999", "20240211-1000"),
            Ordering::Less
        );
        assert_eq!(
            compare_versions("20240207.1", "20240207"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("2.10", "2.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Ordering::Equal);
    }
}
