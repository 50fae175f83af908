use hvbox_boxes::{Algorithm, Digest, Error};

fn reason(input: &str) -> String {
    match input.parse::<Digest>() {
        Err(Error::InvalidDigest { reason, .. }) => reason,
        other => panic!("expected InvalidDigest for {input:?}, got {other:?}"),
    }
}

#[test]
fn parses_and_displays_both_algorithms() {
    let s256 = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let d: Digest = s256.parse().unwrap();
    assert_eq!(d.algorithm, Algorithm::Sha256);
    assert_eq!(d.to_string(), s256);

    let s512 = format!("sha512:{}", "f".repeat(128));
    let d: Digest = s512.parse().unwrap();
    assert_eq!(d.algorithm, Algorithm::Sha512);
    assert_eq!(d.to_string(), s512);
}

#[test]
fn parse_errors_are_precise() {
    assert!(reason(&format!("md5:{}", "0".repeat(32))).contains("unknown algorithm \"md5\""));
    assert!(reason("deadbeef").contains("expected <algorithm>:<hex>"));
    let r = reason(&format!("sha256:{}", "0".repeat(63)));
    assert!(r.contains("64 hex characters, got 63"), "{r}");
    let r = reason(&format!("sha512:{}", "0".repeat(64)));
    assert!(r.contains("128 hex characters, got 64"), "{r}");
    let r = reason(&format!("sha256:{}g", "0".repeat(63)));
    assert!(r.contains("non-hex character 'g' at position 63"), "{r}");
    let r = reason(&format!("sha256:{}", "A".repeat(64)));
    assert!(r.contains("lowercase"), "{r}");
    // The whole input is quoted in the message.
    let err = "sha1:00".parse::<Digest>().unwrap_err().to_string();
    assert!(err.contains("\"sha1:00\""), "{err}");
}

#[test]
fn serde_uses_the_string_form() {
    let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
    let yaml = serde_yaml::to_string(&d).unwrap();
    assert_eq!(yaml.trim(), format!("sha256:{}", "a".repeat(64)));
    let back: Digest = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, d);
    assert!(serde_yaml::from_str::<Digest>("sha256:xyz").is_err());
}

#[test]
fn hashes_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"abc").unwrap();
    assert_eq!(
        Digest::of_file(Algorithm::Sha256, &path).unwrap().hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
