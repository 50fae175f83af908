//! Disk image formats: what a downloaded artifact is, and turning it into the sparse raw
//! disk the cache holds.
//!
//! A format is a container (raw bytes, a qcow2 image, or a tarball holding `disk.raw`)
//! optionally inside one compression wrapper (xz, gzip, zstd). The format is read from
//! the first bytes of the download (magic numbers), not trusted from a file name: Ubuntu
//! names its qcow2 images `.img`, and a server that answers with an error page must not
//! be mistaken for a raw disk. A format declared in a spec or catalog is checked against
//! what the bytes say.

mod decompress;
pub(crate) mod qcow2;
pub(crate) mod tar;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::str::FromStr;

pub(crate) use decompress::decoder;
pub(crate) use qcow2::Qcow2Error;

use crate::bounds::Bounds;
use crate::sparse_writer::SparseWriter;
use crate::spool::{ScratchDir, SpoolReader};

/// The outer compression of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Xz,
    Gzip,
    Zstd,
}

/// What the (decompressed) bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// A raw disk image, stored as it is.
    Raw,
    Qcow2,
    /// A tar archive holding [`TAR_DISK_NAME`].
    Tar,
}

/// Name of the disk inside a tarball (the Google Compute Engine convention Debian's
/// `.tar.xz` images follow).
pub const TAR_DISK_NAME: &str = "disk.raw";

/// A container in an optional compression wrapper, written like a file suffix:
/// `raw`, `qcow2`, `tar`, `raw.xz`, `tar.gz`, `qcow2.zst`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    pub container: Container,
    pub compression: Option<Compression>,
}

impl Format {
    pub const RAW: Format = Format {
        container: Container::Raw,
        compression: None,
    };

    /// Whether the downloaded bytes are stored unchanged.
    pub fn is_raw(self) -> bool {
        self == Format::RAW
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let container = match self.container {
            Container::Raw => "raw",
            Container::Qcow2 => "qcow2",
            Container::Tar => "tar",
        };
        f.write_str(container)?;
        match self.compression {
            None => Ok(()),
            Some(Compression::Xz) => f.write_str(".xz"),
            Some(Compression::Gzip) => f.write_str(".gz"),
            Some(Compression::Zstd) => f.write_str(".zst"),
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        let (container, compression) = match s.split_once('.') {
            Some((c, z)) => (c, Some(z)),
            None => (s, None),
        };
        let container = match container {
            "raw" | "img" => Container::Raw,
            "qcow2" => Container::Qcow2,
            "tar" => Container::Tar,
            _ => return Err(format!("unknown format {s:?}: {}", Format::EXPECTED)),
        };
        let compression = match compression {
            None => None,
            Some("xz") => Some(Compression::Xz),
            Some("gz") => Some(Compression::Gzip),
            Some("zst") => Some(Compression::Zstd),
            Some(_) => return Err(format!("unknown format {s:?}: {}", Format::EXPECTED)),
        };
        Ok(Format {
            container,
            compression,
        })
    }
}

impl Format {
    const EXPECTED: &'static str =
        "use raw, qcow2 or tar, optionally with .xz, .gz or .zst (e.g. tar.xz)";
}

impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Bytes needed to recognise every format (the tar magic sits at offset 257).
pub(crate) const SNIFF_LEN: usize = 512;

/// What the first bytes of a download are: a compression wrapper, a container, or
/// something that is certainly not a disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    Compressed(Compression),
    Container(Container),
    /// An HTML document: an error or login page served with status 200.
    Html,
}

pub(crate) fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Sniffed::Compressed(Compression::Xz);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Sniffed::Compressed(Compression::Gzip);
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Sniffed::Compressed(Compression::Zstd);
    }
    sniff_container(head)
}

pub(crate) fn sniff_container(head: &[u8]) -> Sniffed {
    if head.starts_with(qcow2::MAGIC) {
        return Sniffed::Container(Container::Qcow2);
    }
    if head.len() >= 263 && &head[257..262] == b"ustar" {
        return Sniffed::Container(Container::Tar);
    }
    if looks_like_html(head) {
        return Sniffed::Html;
    }
    Sniffed::Container(Container::Raw)
}

/// An HTML page starts, after optional whitespace and a byte-order mark, with a
/// doctype, `<html` or a comment; a disk image starts with boot code or zeros.
fn looks_like_html(head: &[u8]) -> bool {
    let head = head.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let rest = &head[start..];
    let lower: Vec<u8> = rest.iter().take(15).map(u8::to_ascii_lowercase).collect();
    lower.starts_with(b"<!doctype html")
        || lower.starts_with(b"<html")
        || lower.starts_with(b"<head")
        || lower.starts_with(b"<!--")
}

/// Why a download could not be turned into a disk.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "it is an HTML page, not a disk image (the server answered with an error or login page?)"
    )]
    Html,
    #[error("the format is declared as {declared} but the file is {detected}")]
    DeclaredMismatch { declared: Format, detected: String },
    #[error("not a valid qcow2 image: {0}")]
    Qcow2(#[from] Qcow2Error),
    #[error("the tarball holds no {TAR_DISK_NAME} (found: {found})")]
    TarWithoutDisk { found: String },
    #[error("the tarball is damaged: {0}")]
    Tar(String),
    #[error("{compression} data is damaged: {detail}")]
    Decompress {
        compression: &'static str,
        detail: String,
    },
    #[error("writing the disk: {0}")]
    Write(#[source] std::io::Error),
    #[error("reading the download back: {0}")]
    ReadBack(#[source] std::io::Error),
    #[error("{what} is more than the cap of {} ({cap} bytes), {why}", crate::progress::format_bytes(*cap))]
    OverCap {
        what: String,
        cap: u64,
        why: &'static str,
    },
    #[error("it needs {} of disk space but only {} is free on {} ({needed} bytes needed, {free} free)", crate::progress::format_bytes(*needed), crate::progress::format_bytes(*free), path.display())]
    NoSpace {
        needed: u64,
        free: u64,
        path: std::path::PathBuf,
    },
    /// The download failed while the converter waited for bytes; the download's own
    /// error is the one reported.
    #[error("the download stopped")]
    SourceFailed,
}

/// Convert the download `src` delivers into a sparse raw disk in `out`, which starts
/// empty. The format is read from the bytes (checked against `declared`, if any).
/// Returns the format and the disk's size in bytes. `bounds` caps what it may write
/// and stops it when the download fails verification.
pub(crate) fn convert(
    declared: Option<Format>,
    src: SpoolReader,
    out: &File,
    scratch: &ScratchDir,
    bounds: &Bounds,
) -> Result<(Format, u64), FormatError> {
    let canceller = src.clone_handle();
    let result = convert_inner(declared, src, out, scratch, bounds);
    if result.is_err() {
        // Stop the download: its bytes cannot become a disk.
        canceller.cancel();
    }
    result
}

fn convert_inner(
    declared: Option<Format>,
    src: SpoolReader,
    out: &File,
    scratch: &ScratchDir,
    bounds: &Bounds,
) -> Result<(Format, u64), FormatError> {
    let available = src.wait_for(SNIFF_LEN as u64)?;
    let mut head = vec![0u8; available.min(SNIFF_LEN as u64) as usize];
    src.read_exact_at(&mut head, 0)?;
    let (compression, container, stream): (_, _, Box<dyn Read + Send>) = match sniff(&head) {
        Sniffed::Html => return Err(FormatError::Html),
        Sniffed::Container(Container::Qcow2) => {
            let format = Format {
                container: Container::Qcow2,
                compression: None,
            };
            check_declared(declared, format, &head)?;
            return qcow2::convert(&src, out, bounds).map(|size| (format, size));
        }
        Sniffed::Container(c) => (None, c, Box::new(src)),
        Sniffed::Compressed(z) => {
            let mut stream = decoder(z, src);
            let mut inner_head = Vec::with_capacity(SNIFF_LEN);
            (&mut stream)
                .take(SNIFF_LEN as u64)
                .read_to_end(&mut inner_head)
                .map_err(|e| read_error(compression_name(z), e))?;
            let container = match sniff_container(&inner_head) {
                Sniffed::Html => return Err(FormatError::Html),
                Sniffed::Container(c) => c,
                Sniffed::Compressed(_) => unreachable!("sniff_container reports containers only"),
            };
            let format = Format {
                container,
                compression: Some(z),
            };
            check_declared(declared, format, &inner_head)?;
            let stream = std::io::Cursor::new(inner_head).chain(stream);
            (Some(z), container, Box::new(stream))
        }
    };
    let format = Format {
        container,
        compression,
    };
    if compression.is_none() {
        check_declared(declared, format, &head)?;
    }
    let what = compression.map_or("raw", compression_name);
    let size = match container {
        Container::Raw => copy_sparse(stream, out, what, bounds)?,
        Container::Tar => tar::extract_disk(stream, out, bounds)?,
        Container::Qcow2 => {
            // qcow2 needs random access: decompress into a second spool it can read
            // back, while it converts what has arrived.
            let inner = scratch.spool("qcow2")?;
            let reader = inner.reader();
            std::thread::scope(|s| {
                // The image file, not only its disk, stays within bounds: a qcow2
                // file holds its disk's clusters and tables, nothing near twice that.
                let limit = bounds.cap.saturating_mul(2);
                let filler = s.spawn(move || inner.fill_from(stream, limit, bounds));
                let converted = qcow2::convert(&reader, out, bounds);
                if converted.is_err() {
                    reader.cancel();
                }
                let filled = filler.join().expect("decompression thread panicked");
                match (converted, filled) {
                    (Err(FormatError::SourceFailed), Err(e)) => Err(e),
                    (converted, _) => converted,
                }
            })?
        }
    };
    Ok((format, size))
}

pub(crate) fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Xz => "xz",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}

/// Copy a stream into `out`, leaving zero blocks as holes; past the cap of `bounds`
/// it fails before writing more.
pub(crate) fn copy_sparse(
    mut reader: impl Read,
    out: &File,
    what: &'static str,
    bounds: &Bounds,
) -> Result<u64, FormatError> {
    let mut writer = SparseWriter::new(out);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        // Zeros (holes of a sparse tarball) cost no download: check between reads.
        bounds.check_stop()?;
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(what, e)),
        };
        total += n as u64;
        bounds.check_size(total, || format!("the {what} data inflates to a disk that"))?;
        writer.write_all(&buf[..n]).map_err(FormatError::Write)?;
    }
    writer.finish().map_err(FormatError::Write)
}

/// A read error from a decoder: the source failing (its own error is reported) or
/// damaged data.
pub(crate) fn read_error(what: &'static str, e: std::io::Error) -> FormatError {
    if crate::spool::is_source_failure(&e) {
        FormatError::SourceFailed
    } else {
        FormatError::Decompress {
            compression: what,
            detail: e.to_string(),
        }
    }
}

/// Check a declared format against what the bytes are; `None` declared means any.
/// `head` is the start of the (decompressed) container, for a declared qcow2 image
/// that does not start like one: that is a qcow2 image with a bad magic.
pub(crate) fn check_declared(
    declared: Option<Format>,
    detected: Format,
    head: &[u8],
) -> Result<(), FormatError> {
    match declared {
        Some(d) if d != detected => {
            if d.container == Container::Qcow2
                && detected.container != Container::Qcow2
                && d.compression == detected.compression
            {
                let mut magic = [0u8; 4];
                let n = head.len().min(4);
                magic[..n].copy_from_slice(&head[..n]);
                return Err(Qcow2Error::BadMagic(magic).into());
            }
            Err(FormatError::DeclaredMismatch {
                declared: d,
                detected: detected.to_string(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_through_strings() {
        for s in [
            "raw",
            "qcow2",
            "tar",
            "raw.xz",
            "tar.gz",
            "qcow2.zst",
            "tar.xz",
        ] {
            assert_eq!(s.parse::<Format>().unwrap().to_string(), s);
        }
        assert_eq!("img".parse::<Format>().unwrap(), Format::RAW);
        assert!("vmdk".parse::<Format>().is_err());
        assert!("raw.bz2".parse::<Format>().is_err());
    }

    #[test]
    fn sniffs_magic_numbers() {
        assert_eq!(
            sniff(b"QFI\xfb\0\0\0\x03"),
            Sniffed::Container(Container::Qcow2)
        );
        assert_eq!(
            sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Sniffed::Compressed(Compression::Xz)
        );
        assert_eq!(
            sniff(&[0x1f, 0x8b, 8]),
            Sniffed::Compressed(Compression::Gzip)
        );
        assert_eq!(
            sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Sniffed::Compressed(Compression::Zstd)
        );
        let mut tar = vec![0u8; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(sniff(&tar), Sniffed::Container(Container::Tar));
        assert_eq!(sniff(b"\n  <!DOCTYPE html><html>"), Sniffed::Html);
        assert_eq!(sniff(b"<HTML><body>404</body>"), Sniffed::Html);
        assert_eq!(sniff(&[0u8; 512]), Sniffed::Container(Container::Raw));
        assert_eq!(
            sniff(&[0xeb, 0x63, 0x90]),
            Sniffed::Container(Container::Raw)
        );
    }
}
