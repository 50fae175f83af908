//! Transfers from http(s):// and file:// URLs that survive bad networks.
//!
//! A transfer hands each chunk to a sink as it arrives (the caller hashes and spools
//! it), starting at any byte offset. When the connection drops, stalls past the read
//! timeout, or the server answers 5xx, the transfer waits (exponential backoff) and
//! asks for the rest with `Range: bytes=N-` — with `If-Range`, so a file replaced on
//! the server is sent whole instead of spliced. The caller verifies the digest of the
//! whole once the last byte is in, so a resumed download is checked end to end.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::StatusCode;

use crate::error::chain;
use crate::progress::Reporter;
use crate::{Error, Progress};

const USER_AGENT: &str = concat!("hvbox/", env!("CARGO_PKG_VERSION"));
/// Checksum lists are tiny; anything bigger is not what we asked for.
const TEXT_LIMIT: u64 = 1 << 20;
const FILE_CHUNK: usize = 1 << 20;

/// Timeouts and retries of network transfers.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub connect_timeout: Duration,
    /// Longest silence between two reads; a stalled mirror fails instead of hanging,
    /// while slow-but-alive transfers go on.
    pub read_timeout: Duration,
    /// Attempts in a row that may fail without receiving a byte.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one, up to 30 s.
    pub backoff: Duration,
    /// The largest disk a download may convert to, when no lock file records its size.
    pub max_disk_size: u64,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_disk_size: crate::bounds::DEFAULT_MAX_DISK_SIZE,
        }
    }
}

impl FetchOptions {
    /// The defaults, adjusted by `HVBOX_HTTP_TIMEOUT` (read timeout, seconds) and
    /// `HVBOX_HTTP_ATTEMPTS`; the disk size cap by `HVBOX_MAX_BOX_SIZE` (e.g. `512G`).
    pub fn from_env() -> FetchOptions {
        let mut o = FetchOptions::default();
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let Some(secs) = num("HVBOX_HTTP_TIMEOUT").filter(|&s| s > 0) {
            o.read_timeout = Duration::from_secs(secs);
            o.connect_timeout = o.connect_timeout.min(o.read_timeout);
        }
        if let Some(n) = num("HVBOX_HTTP_ATTEMPTS").filter(|&n| n > 0) {
            o.attempts = n.min(100) as u32;
        }
        if let Some(cap) = std::env::var("HVBOX_MAX_BOX_SIZE")
            .ok()
            .and_then(|v| crate::bounds::parse_size(&v))
            .filter(|&c| c > 0)
        {
            o.max_disk_size = cap;
        }
        o
    }

    fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(10);
        (self.backoff * factor).min(Duration::from_secs(30))
    }
}

/// What the server said about the resource, for resuming it later.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Validator {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validator {
    fn from_headers(h: &HeaderMap) -> Validator {
        let get = |name| {
            h.get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        Validator {
            // A weak ETag may not be used in If-Range.
            etag: get(header::ETAG).filter(|e| !e.starts_with("W/")),
            last_modified: get(header::LAST_MODIFIED),
        }
    }

    fn if_range(&self) -> Option<&str> {
        self.etag.as_deref().or(self.last_modified.as_deref())
    }
}

/// The first response of a transfer.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// Size of the whole resource, when the server said.
    pub total: Option<u64>,
    pub validator: Validator,
}

/// Where a transfer's bytes go. `Err` stops the transfer with that error.
pub(crate) trait Sink {
    fn started(&mut self, started: &Started) -> Result<(), Error>;
    fn chunk(&mut self, data: &[u8]) -> Result<(), Error>;
}

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

/// Check that `url` is one hvbox can fetch, without fetching it.
pub fn check_url(url: &str) -> Result<(), Error> {
    classify(url).map(|_| ())
}

/// Transfer `url` from byte `offset` on into `sink`; returns the total length.
/// `validator` (from an earlier, interrupted transfer) makes the server send the
/// whole resource again if it changed since.
pub(crate) fn transfer(
    url: &str,
    offset: u64,
    validator: Option<&Validator>,
    options: &FetchOptions,
    reporter: &mut Reporter,
    sink: &mut dyn Sink,
) -> Result<u64, Error> {
    match classify(url)? {
        Source::File(path) => file_transfer(url, &path, offset, reporter, sink),
        Source::Http => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::Runtime)?;
            runtime.block_on(http_transfer(
                url, offset, validator, options, reporter, sink,
            ))
        }
    }
}

fn file_transfer(
    url: &str,
    path: &std::path::Path,
    offset: u64,
    reporter: &mut Reporter,
    sink: &mut dyn Sink,
) -> Result<u64, Error> {
    let mut file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::LocalFileMissing {
                url: url.to_string(),
                path: path.to_path_buf(),
            }
        } else {
            Error::io(path, "opening", e)
        }
    })?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(path, "reading metadata of", e))?
        .len();
    let offset = offset.min(len);
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, "seeking in", e))?;
    sink.started(&Started {
        total: Some(len),
        validator: Validator::default(),
    })?;
    reporter.set_total(Some(len));
    reporter.set_position(offset);
    let mut buf = vec![0u8; FILE_CHUNK];
    let mut pos = offset;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, "reading", e)),
        };
        sink.chunk(&buf[..n])?;
        pos += n as u64;
        reporter.advance(n as u64);
    }
    Ok(pos)
}

/// Why one request failed, and whether another may succeed.
enum Attempt {
    /// Give up with this error.
    Fatal(Error),
    /// Try again (after a pause) with this error if there are no attempts left.
    Retry(Error),
}

async fn http_transfer(
    url: &str,
    offset: u64,
    validator: Option<&Validator>,
    options: &FetchOptions,
    reporter: &mut Reporter,
    sink: &mut dyn Sink,
) -> Result<u64, Error> {
    let client = http_client(url, options)?;
    let mut state = TransferState {
        pos: offset,
        total: None,
        validator: validator.cloned(),
        started: false,
    };
    reporter.set_position(offset);
    let mut failures = 0u32;
    loop {
        let before = state.pos;
        match attempt(&client, url, options, &mut state, reporter, sink).await {
            Ok(total) => return Ok(total),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Retry(e)) => {
                // Progress resets the count: a link that drops every few hundred
                // MiB still gets there.
                failures = if state.pos > before { 1 } else { failures + 1 };
                if failures >= options.attempts {
                    return Err(e);
                }
                let delay = options.delay(failures);
                reporter.note(&format!(
                    "{e}; retrying in {:.1}s (attempt {} of {})",
                    delay.as_secs_f64(),
                    failures + 1,
                    options.attempts
                ));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

struct TransferState {
    /// Bytes the sink has.
    pos: u64,
    total: Option<u64>,
    validator: Option<Validator>,
    started: bool,
}

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    options: &FetchOptions,
    state: &mut TransferState,
    reporter: &mut Reporter,
    sink: &mut dyn Sink,
) -> Result<u64, Attempt> {
    let net_error = |e: reqwest::Error| {
        let err = if e.is_timeout() {
            Error::Timeout {
                url: url.to_string(),
                secs: options.read_timeout.as_secs_f64(),
            }
        } else {
            Error::Http {
                url: url.to_string(),
                detail: with_proxy_hint(&e, url),
            }
        };
        // Connection refused, reset, timed out, cut mid-body: all worth another try.
        if e.is_builder() || e.is_redirect() {
            Attempt::Fatal(err)
        } else {
            Attempt::Retry(err)
        }
    };
    let mut request = client.get(url);
    if state.pos > 0 {
        request = request.header(header::RANGE, format!("bytes={}-", state.pos));
        if let Some(v) = state.validator.as_ref().and_then(Validator::if_range) {
            request = request.header(header::IF_RANGE, v);
        }
    }
    let mut response = request.send().await.map_err(net_error)?;
    let status = response.status();
    // Bytes of this response to drop before the sink gets any: a server that ignores
    // Range sends everything again.
    let mut skip = 0u64;
    match status {
        StatusCode::PARTIAL_CONTENT if state.pos > 0 => {
            let (start, total) = content_range(response.headers()).ok_or_else(|| {
                Attempt::Fatal(Error::Http {
                    url: url.to_string(),
                    detail: "a 206 response without a valid Content-Range".into(),
                })
            })?;
            if start > state.pos {
                return Err(Attempt::Fatal(Error::Http {
                    url: url.to_string(),
                    detail: format!("asked for bytes from {} on, got from {start}", state.pos),
                }));
            }
            skip = state.pos - start;
            state.total = total.or(state.total);
        }
        s if s.is_success() => {
            if state.pos > 0 {
                // Range ignored, or If-Range said the file changed: it comes whole.
                // If it changed, the digest check at the end says so.
                skip = state.pos;
            }
            state.total = response.content_length();
        }
        StatusCode::RANGE_NOT_SATISFIABLE if state.pos > 0 && state.total == Some(state.pos) => {
            return Ok(state.pos);
        }
        s => {
            let err = Error::HttpStatus {
                url: url.to_string(),
                status: s.as_u16(),
                reason: s.canonical_reason().unwrap_or(""),
            };
            let transient = s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS;
            return Err(if transient {
                Attempt::Retry(err)
            } else {
                Attempt::Fatal(err)
            });
        }
    }
    if is_html(response.headers()) {
        return Err(Attempt::Fatal(Error::HtmlPage {
            url: url.to_string(),
        }));
    }
    let validator = Validator::from_headers(response.headers());
    if !state.started {
        state.started = true;
        state.validator = Some(validator.clone());
        sink.started(&Started {
            total: state.total,
            validator,
        })
        .map_err(Attempt::Fatal)?;
        reporter.set_total(state.total);
    }
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                // The connection closed (or stalled) before Content-Length bytes.
                return Err(match state.total {
                    Some(total) if !e.is_timeout() => Attempt::Retry(Error::Truncated {
                        url: url.to_string(),
                        received: state.pos,
                        expected: total,
                    }),
                    _ => net_error(e),
                });
            }
        };
        let mut data = &chunk[..];
        if skip > 0 {
            let n = skip.min(data.len() as u64) as usize;
            data = &data[n..];
            skip -= n as u64;
        }
        if data.is_empty() {
            continue;
        }
        sink.chunk(data).map_err(Attempt::Fatal)?;
        state.pos += data.len() as u64;
        reporter.advance(data.len() as u64);
    }
    match state.total {
        Some(total) if state.pos < total => Err(Attempt::Retry(Error::Truncated {
            url: url.to_string(),
            received: state.pos,
            expected: total,
        })),
        _ => Ok(state.pos),
    }
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
fn content_range(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

fn is_html(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            ct.starts_with("text/html") || ct.starts_with("application/xhtml")
        })
}

/// Fetch a small text document (such as a SHA512SUMS file or a directory listing)
/// into memory, with the same retries as any download. Responses over 1 MiB are
/// rejected.
pub fn fetch_text(url: &str, progress: Progress) -> Result<String, Error> {
    fetch_text_with(url, progress, &FetchOptions::from_env(), false)
}

/// [`fetch_text`] with explicit options; `html_ok` accepts `text/html` (directory
/// listings are HTML).
pub(crate) fn fetch_text_with(
    url: &str,
    progress: Progress,
    options: &FetchOptions,
    html_ok: bool,
) -> Result<String, Error> {
    struct Text {
        url: String,
        body: Vec<u8>,
    }
    impl Sink for Text {
        fn started(&mut self, _: &Started) -> Result<(), Error> {
            Ok(())
        }
        fn chunk(&mut self, data: &[u8]) -> Result<(), Error> {
            if self.body.len() as u64 + data.len() as u64 > TEXT_LIMIT {
                return Err(Error::TooLarge {
                    url: self.url.clone(),
                    limit: TEXT_LIMIT,
                });
            }
            self.body.extend_from_slice(data);
            Ok(())
        }
    }
    let mut reporter = Reporter::new(progress, url);
    let mut sink = Text {
        url: url.to_string(),
        body: Vec::new(),
    };
    let result = transfer(url, 0, None, options, &mut reporter, &mut sink);
    let result = match result {
        Err(Error::HtmlPage { .. }) if html_ok => {
            let mut sink = Text {
                url: url.to_string(),
                body: Vec::new(),
            };
            transfer_html(url, options, &mut reporter, &mut sink).map(|_| sink.body)
        }
        other => other.map(|_| sink.body),
    };
    let body = result?;
    reporter.finish();
    String::from_utf8(body).map_err(|_| Error::NotText {
        url: url.to_string(),
    })
}

/// A transfer that accepts HTML (for directory listings).
fn transfer_html(
    url: &str,
    options: &FetchOptions,
    reporter: &mut Reporter,
    sink: &mut dyn Sink,
) -> Result<u64, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async {
        let client = http_client(url, options)?;
        let http = |e: reqwest::Error| Error::Http {
            url: url.to_string(),
            detail: with_proxy_hint(&e, url),
        };
        let response = client.get(url).send().await.map_err(http)?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::HttpStatus {
                url: url.to_string(),
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or(""),
            });
        }
        let body = response.bytes().await.map_err(http)?;
        reporter.advance(body.len() as u64);
        sink.chunk(&body)?;
        Ok(body.len() as u64)
    })
}

/// A connection error, and the proxy variable that made it one to a proxy: the
/// client takes the proxies from the environment as curl does (`HTTP_PROXY` or
/// `http_proxy` for http URLs, `HTTPS_PROXY`/`https_proxy`, `ALL_PROXY`, minus
/// the hosts `NO_PROXY`/`no_proxy` lists), and the address refused is then the
/// proxy's, not the URL's.
fn with_proxy_hint(e: &reqwest::Error, url: &str) -> String {
    let detail = chain(e);
    if !e.is_connect() {
        return detail;
    }
    let scheme = url
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    let names = [format!("{scheme}_proxy"), "all_proxy".to_string()];
    let set = names.iter().find_map(|n| {
        [n.to_ascii_uppercase(), n.clone()]
            .into_iter()
            .find_map(|v| {
                std::env::var(&v)
                    .ok()
                    .filter(|x| !x.is_empty())
                    .map(|x| (v, x))
            })
    });
    match set {
        Some((var, value)) => format!(
            "{detail} ({var} is set to {}: downloads go through that proxy unless NO_PROXY lists the host)",
            crate::masked_proxy(&value)
        ),
        None => detail,
    }
}

/// The HTTP client every request of a fetch uses: hvbox's user agent and the
/// options' timeouts.
fn http_client(url: &str, options: &FetchOptions) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .build()
        .map_err(|e| Error::Http {
            url: url.to_string(),
            detail: chain(&e),
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

    #[test]
    fn parses_content_range() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, "bytes 100-199/200".parse().unwrap());
        assert_eq!(content_range(&h), Some((100, Some(200))));
        h.insert(header::CONTENT_RANGE, "bytes 5-9/*".parse().unwrap());
        assert_eq!(content_range(&h), Some((5, None)));
        h.insert(header::CONTENT_RANGE, "items 1-2/3".parse().unwrap());
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let o = FetchOptions::default();
        assert_eq!(o.delay(1), Duration::from_secs(1));
        assert_eq!(o.delay(3), Duration::from_secs(4));
        assert_eq!(o.delay(9), Duration::from_secs(30));
    }
}
