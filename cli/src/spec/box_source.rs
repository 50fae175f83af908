//! `box:` in the spec: a catalog name (optionally pinned to a version and digest), or
//! the box's artifacts given by URL and digest.
//!
//! ```yaml
//! box: debian-12
//! box: {name: debian-12, version: 20240211-1654, digest: "sha512:…"}
//! box: {disk: {url: https://…/disk.qcow2, digest: "sha256:…", format: qcow2}}
//! ```

use hvbox_boxes::catalog::BoxRequest;
use hvbox_boxes::{Artifact, Digest, Format};
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// A box named in a catalog, or artifacts given explicitly with their digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoxSource {
    Catalog(BoxRequest),
    Artifacts(BoxArtifactsSpec),
}

/// A box given by its artifacts, each pinned by its digest.
// Read by `BoxSource`'s own code; the derives describe it for the JSON Schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BoxArtifactsSpec {
    /// The disk image.
    pub disk: ArtifactSpec,
    /// A kernel to boot instead of the disk's own (not supported yet).
    #[serde(default)]
    #[schemars(with = "ArtifactSpec")]
    pub kernel: Option<ArtifactSpec>,
    /// An initrd to boot instead of the disk's own (not supported yet).
    #[serde(default)]
    #[schemars(with = "ArtifactSpec")]
    pub initrd: Option<ArtifactSpec>,
}

/// A file to download, pinned by its digest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSpec {
    /// http, https or file:// URL.
    pub url: String,
    /// `sha256:` or `sha512:` and the digest in lowercase hex.
    #[serde(deserialize_with = "deserialize_digest")]
    #[schemars(schema_with = "super::schema::digest")]
    pub digest: Digest,
    /// Checked against the bytes; hvbox finds the format itself when absent.
    #[serde(default, deserialize_with = "deserialize_format")]
    #[schemars(schema_with = "super::schema::format")]
    pub format: Option<Format>,
}

impl ArtifactSpec {
    pub fn to_artifact(&self) -> Artifact {
        let mut a = Artifact::new(self.url.clone(), self.digest.clone());
        a.format = self.format;
        a
    }
}

fn deserialize_digest<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
    struct DigestVisitor;
    impl Visitor<'_> for DigestVisitor {
        type Value = Digest;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "a digest such as \"sha256:<64 hex digits>\" or \"sha512:<128 hex digits>\"",
            )
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Digest, E> {
            s.parse().map_err(|e: hvbox_boxes::Error| E::custom(e))
        }
    }
    d.deserialize_str(DigestVisitor)
}

fn deserialize_format<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Format>, D::Error> {
    struct FormatVisitor;
    impl Visitor<'_> for FormatVisitor {
        type Value = Option<Format>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a disk format such as qcow2, raw, raw.xz or tar.gz")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<Format>, E> {
            s.parse().map(Some).map_err(E::custom)
        }
    }
    d.deserialize_str(FormatVisitor)
}

/// A plain string that is a version: YAML may read `version: 2024.06` as a number.
fn version_string<'de, A: MapAccess<'de>>(map: &mut A) -> Result<String, A::Error> {
    struct VersionVisitor;
    impl Visitor<'_> for VersionVisitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a version such as \"20240211-1654\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
            if s.trim().is_empty() {
                return Err(E::custom("the version is empty; remove the key instead"));
            }
            Ok(s.to_string())
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
            Err(E::custom(
                "this version reads as a number; quote it (version: \"2024.06\")",
            ))
        }
    }
    struct Wrapper(String);
    impl<'de> Deserialize<'de> for Wrapper {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(VersionVisitor).map(Wrapper)
        }
    }
    map.next_value::<Wrapper>().map(|w| w.0)
}

const CATALOG_KEYS: &[&str] = &["name", "version", "digest"];
const ARTIFACT_KEYS: &[&str] = &["disk", "kernel", "initrd"];
/// Both, for serde's "expected one of" (which wants a `'static` list).
const BOX_KEYS: &[&str] = &["name", "version", "digest", "disk", "kernel", "initrd"];

impl<'de> Deserialize<'de> for BoxSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BoxVisitor;
        impl<'de> Visitor<'de> for BoxVisitor {
            type Value = BoxSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a box name such as \"debian-12\", a mapping with `name` (and optionally `version` and `digest`), or a mapping with `disk` (url and digest) and optionally `kernel` and `initrd`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<BoxSource, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("the box name is empty"));
                }
                Ok(BoxSource::Catalog(BoxRequest::named(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BoxSource, A::Error> {
                let mut request = BoxRequest::default();
                let mut has_name = false;
                let mut disk = None;
                let mut kernel = None;
                let mut initrd = None;
                // Which form the first key chose; a key of the other form is an
                // error at that key's position.
                let mut catalog_form: Option<bool> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let is_catalog = CATALOG_KEYS.contains(&key.as_str());
                    let is_artifact = ARTIFACT_KEYS.contains(&key.as_str());
                    if !is_catalog && !is_artifact {
                        return Err(de::Error::unknown_field(&key, BOX_KEYS));
                    }
                    match catalog_form {
                        Some(form) if form != is_catalog => {
                            return Err(de::Error::custom(format!(
                                "`{key}` cannot be mixed with {}: a box is either a catalog name (name, version, digest) or artifacts (disk, kernel, initrd)",
                                if form { "`name`/`version`/`digest`" } else { "`disk`/`kernel`/`initrd`" }
                            )))
                        }
                        _ => catalog_form = Some(is_catalog),
                    }
                    match key.as_str() {
                        "name" => {
                            let name: String = map.next_value()?;
                            if name.trim().is_empty() {
                                return Err(de::Error::custom("the box name is empty"));
                            }
                            request.name = name;
                            has_name = true;
                        }
                        "version" => request.version = Some(version_string(&mut map)?),
                        "digest" => {
                            let DigestValue(d) = map.next_value()?;
                            request.digest = Some(d);
                        }
                        "disk" => disk = Some(map.next_value::<ArtifactSpec>()?),
                        "kernel" => kernel = Some(map.next_value::<ArtifactSpec>()?),
                        "initrd" => initrd = Some(map.next_value::<ArtifactSpec>()?),
                        _ => unreachable!("keys are checked above"),
                    }
                }
                match catalog_form {
                    Some(true) if has_name => Ok(BoxSource::Catalog(request)),
                    Some(true) => Err(de::Error::missing_field("name")),
                    Some(false) => match disk {
                        Some(disk) => Ok(BoxSource::Artifacts(BoxArtifactsSpec {
                            disk,
                            kernel,
                            initrd,
                        })),
                        None => Err(de::Error::missing_field("disk")),
                    },
                    None => Err(de::Error::custom(
                        "the box mapping is empty: give `name` (a catalog box) or `disk` (url and digest)",
                    )),
                }
            }
        }
        d.deserialize_any(BoxVisitor)
    }
}

struct DigestValue(Digest);

impl<'de> Deserialize<'de> for DigestValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_digest(d).map(DigestValue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown key used to leak the list of expected keys (found by the spec
    /// fuzz target); the list is now a constant, which must hold both forms' keys.
    #[test]
    fn box_keys_are_the_catalog_and_artifact_keys() {
        let both: Vec<&str> = CATALOG_KEYS.iter().chain(ARTIFACT_KEYS).copied().collect();
        assert_eq!(BOX_KEYS, both);
        let err = parse("box: {name: debian-12, size: 3}").unwrap_err();
        assert!(
            err.contains("unknown field `size`, expected one of `name`, `version`, `digest`, `disk`, `kernel`, `initrd`"),
            "{err}"
        );
    }

    fn parse(yaml: &str) -> Result<BoxSource, String> {
        #[derive(Deserialize)]
        struct W {
            #[serde(rename = "box")]
            b: BoxSource,
        }
        serde_yaml::from_str::<W>(yaml)
            .map(|w| w.b)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn catalog_forms() {
        assert_eq!(
            parse("box: debian-12").unwrap(),
            BoxSource::Catalog(BoxRequest::named("debian-12"))
        );
        let d = format!("sha512:{}", "a".repeat(128));
        let b = parse(&format!(
            "box:\n  name: debian-12\n  version: 20240211-1654\n  digest: \"{d}\"\n"
        ))
        .unwrap();
        let BoxSource::Catalog(req) = b else {
            panic!("catalog form expected")
        };
        assert_eq!(req.version.as_deref(), Some("20240211-1654"));
        assert_eq!(req.digest.unwrap().to_string(), d);
        let BoxSource::Catalog(req) = parse("box: {name: team, version: 20240211}").unwrap() else {
            panic!()
        };
        assert_eq!(req.version.as_deref(), Some("20240211"));
    }

    #[test]
    fn artifact_form_with_format() {
        let d = format!("sha256:{}", "b".repeat(64));
        let b = parse(&format!(
            "box:\n  disk:\n    url: http://x/d.qcow2\n    digest: \"{d}\"\n    format: qcow2\n"
        ))
        .unwrap();
        let BoxSource::Artifacts(a) = b else { panic!() };
        assert_eq!(a.disk.to_artifact().format, Some("qcow2".parse().unwrap()));
    }

    #[test]
    fn mistakes_are_located() {
        let e = parse("box:\n  name: debian-12\n  disk: {url: x, digest: y}\n").unwrap_err();
        assert!(e.contains("cannot be mixed"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = parse("box:\n  name: debian-12\n  versoin: 1\n").unwrap_err();
        assert!(e.contains("unknown field `versoin`"), "{e}");
        let e = parse("box:\n  version: \"1\"\n").unwrap_err();
        assert!(e.contains("missing field `name`"), "{e}");
        let e = parse("box:\n  name: x\n  version: 2024.06\n").unwrap_err();
        assert!(e.contains("quote it"), "{e}");
        let d = format!("sha256:{}", "c".repeat(64));
        let e = parse(&format!(
            "box:\n  disk: {{url: x, digest: \"{d}\", format: vmdk}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("unknown format"), "{e}");
    }
}
