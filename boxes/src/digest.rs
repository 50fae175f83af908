//! Content digests in the `<algorithm>:<hex>` form used throughout hvbox.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use sha2::Digest as _;

use crate::Error;

/// Supported hash algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Name used in digest strings and in the cache layout.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Number of hex characters in a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(Error::InvalidDigest {
                input: s.to_string(),
                reason: format!("unknown algorithm {other:?} (expected sha256 or sha512)"),
            }),
        }
    }
}

/// A digest such as `sha256:<64 lowercase hex>`.
///
/// The fields are public for convenience; values obtained through `FromStr`
/// or [`Hasher`] are always well-formed, which the store relies on to build
/// file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl Digest {
    /// Build a digest from an algorithm and hex string, validating the hex.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Digest, Error> {
        check_hex(algorithm, hex, &format!("{algorithm}:{hex}"))?;
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// Hash a local file.
    pub fn of_file(algorithm: Algorithm, path: &Path) -> Result<Digest, Error> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            action: "hashing file",
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io_err)?;
        let mut hasher = Hasher::new(algorithm);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }

    /// Whether `hex` is well-formed for this digest's algorithm. Guards
    /// against hand-built values being used as file names.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        check_hex(self.algorithm, &self.hex, &self.to_string())
    }
}

fn check_hex(algorithm: Algorithm, hex: &str, input: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidDigest {
        input: input.to_string(),
        reason,
    };
    if let Some((i, c)) = hex
        .char_indices()
        .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        let what = if c.is_ascii_hexdigit() {
            "uppercase hex digit (digests must be lowercase)"
        } else {
            "non-hex character"
        };
        return Err(invalid(format!(
            "{what} {c:?} at position {i} of the hex part"
        )));
    }
    if hex.len() != algorithm.hex_len() {
        return Err(invalid(format!(
            "{algorithm} digest must have {} hex characters, got {}",
            algorithm.hex_len(),
            hex.len()
        )));
    }
    Ok(())
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(Error::InvalidDigest {
                input: s.to_string(),
                reason: "expected <algorithm>:<hex>, e.g. sha256:<64 hex characters>".into(),
            });
        };
        let algorithm = alg.parse::<Algorithm>().map_err(|_| Error::InvalidDigest {
            input: s.to_string(),
            reason: format!("unknown algorithm {alg:?} (expected sha256 or sha512)"),
        })?;
        check_hex(algorithm, hex, s)?;
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hasher producing a [`Digest`].
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest { algorithm, hex }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hasher::Sha256(_) => f.write_str("Hasher(sha256)"),
            Hasher::Sha512(_) => f.write_str("Hasher(sha512)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_known_vector() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"abc");
        assert_eq!(
            h.finish().to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
