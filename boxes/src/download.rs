//! Streaming transfers from http(s):// and file:// URLs.
//!
//! Both schemes go through [`transfer`], which hands each chunk to a callback;
//! callers hash and write as the data arrives, so multi-GiB images never sit
//! in memory.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;

use crate::error::chain;
use crate::progress::Reporter;
use crate::sparse_writer::SparseWriter;
use crate::{Algorithm, Digest, Error, Hasher, Progress};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Maximum silence between two reads of the body; a stalled mirror fails
/// instead of hanging forever, while slow-but-alive transfers continue.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("hvbox/", env!("CARGO_PKG_VERSION"));
/// Checksum lists are tiny; anything bigger is not what we asked for.
const TEXT_LIMIT: u64 = 1 << 20;
const CHUNK: usize = 1 << 20;

enum Source {
    Http,
    File(PathBuf),
}

fn classify(url: &str) -> Result<Source, Error> {
    let scheme_is = |prefix: &str| {
        url.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    if scheme_is("http://") || scheme_is("https://") {
        return Ok(Source::Http);
    }
    if scheme_is("file://") {
        // Only absolute paths, optionally with an explicit "localhost" host.
        // No percent-decoding: hvbox writes these URLs itself from raw paths.
        let rest = &url["file://".len()..];
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        if rest.starts_with('/') {
            return Ok(Source::File(PathBuf::from(rest)));
        }
    }
    Err(Error::UnsupportedUrl {
        url: url.to_string(),
    })
}

/// Stream `url` into `on_chunk`, reporting progress as bytes arrive.
fn transfer(
    url: &str,
    reporter: &mut Reporter,
    mut on_chunk: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    match classify(url)? {
        Source::File(path) => {
            let mut file = File::open(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::LocalFileMissing {
                        url: url.to_string(),
                        path: path.clone(),
                    }
                } else {
                    Error::io(&path, "opening", e)
                }
            })?;
            let len = file.metadata().map(|m| m.len()).ok();
            reporter.set_total(len);
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(&path, "reading", e)),
                };
                on_chunk(&buf[..n])?;
                reporter.advance(n as u64);
            }
            Ok(())
        }
        Source::Http => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::Runtime)?;
            runtime.block_on(http_transfer(url, reporter, &mut on_chunk))
        }
    }
}

async fn http_transfer(
    url: &str,
    reporter: &mut Reporter,
    on_chunk: &mut impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let http_err = |e: reqwest::Error| Error::Http {
        url: url.to_string(),
        detail: chain(&e),
    };
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(http_err)?;
    let response = client.get(url).send().await.map_err(http_err)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::HttpStatus {
            url: url.to_string(),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or(""),
        });
    }
    reporter.set_total(response.content_length());
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(http_err)?;
        on_chunk(&chunk)?;
        reporter.advance(chunk.len() as u64);
    }
    Ok(())
}

/// Download `url` into `out` (whose path is `out_path`, for messages),
/// returning the digest of what was written. The caller fsyncs and verifies.
pub(crate) fn download_to_file(
    url: &str,
    algorithm: Algorithm,
    out: &File,
    out_path: &Path,
    reporter: &mut Reporter,
) -> Result<Digest, Error> {
    let mut hasher = Hasher::new(algorithm);
    let mut writer = SparseWriter::new(out);
    transfer(url, reporter, |chunk| {
        hasher.update(chunk);
        writer
            .write_all(chunk)
            .map_err(|e| Error::io(out_path, "writing", e))
    })?;
    writer
        .finish()
        .map_err(|e| Error::io(out_path, "writing", e))?;
    Ok(hasher.finish())
}

/// Fetch a small text document (such as a SHA512SUMS file) into memory.
/// Nothing is cached; responses over 1 MiB are rejected.
pub fn fetch_text(url: &str, progress: Progress) -> Result<String, Error> {
    let mut reporter = Reporter::new(progress, url);
    let mut body = Vec::new();
    transfer(url, &mut reporter, |chunk| {
        if body.len() as u64 + chunk.len() as u64 > TEXT_LIMIT {
            return Err(Error::TooLarge {
                url: url.to_string(),
                limit: TEXT_LIMIT,
            });
        }
        body.extend_from_slice(chunk);
        Ok(())
    })?;
    reporter.finish();
    String::from_utf8(body).map_err(|_| Error::NotText {
        url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        assert!(matches!(classify("https://x/y"), Ok(Source::Http)));
        assert!(matches!(classify("HTTP://x/y"), Ok(Source::Http)));
        match classify("file:///tmp/a b") {
            Ok(Source::File(p)) => assert_eq!(p, PathBuf::from("/tmp/a b")),
            _ => panic!("expected file source"),
        }
        match classify("file://localhost/tmp/x") {
            Ok(Source::File(p)) => assert_eq!(p, PathBuf::from("/tmp/x")),
            _ => panic!("expected file source"),
        }
        assert!(matches!(
            classify("file://relative/x"),
            Err(Error::UnsupportedUrl { .. })
        ));
        assert!(matches!(
            classify("ftp://x/y"),
            Err(Error::UnsupportedUrl { .. })
        ));
    }
}
