//! The kernel release a bzImage carries in its setup header, so a kernel is
//! identified by what it is rather than by what its file is called.
//!
//! x86 boot protocol: `HdrS` at 0x202, protocol version (u16) at 0x206, and
//! from protocol 2.00 on a u16 at 0x20E giving the offset (from 0x200) of a
//! NUL-terminated string such as
//! `6.1.0-9-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP …`.

/// Bytes to read from the start of a kernel to be sure to cover the string:
/// the offset is a u16 counted from 0x200.
pub(crate) const HEAD_LEN: usize = 0x200 + 0xFFFF + MAX_STRING;

/// Longest version string we read; real ones are well under 200 bytes.
const MAX_STRING: usize = 512;

/// The release (first word of the version string), or `None` when `head`
/// has no usable setup header (e.g. a compressed arm64 `Image.gz`).
pub(crate) fn kernel_version(head: &[u8]) -> Option<String> {
    let u16_at = |off: usize| Some(u16::from_le_bytes(head.get(off..off + 2)?.try_into().ok()?));
    if head.get(0x202..0x206)? != b"HdrS" || u16_at(0x206)? < 0x200 {
        return None;
    }
    let offset = u16_at(0x20E)?;
    if offset == 0 {
        return None;
    }
    let start = 0x200 + usize::from(offset);
    let tail = head.get(start..)?;
    let tail = &tail[..tail.len().min(MAX_STRING)];
    let end = tail.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&tail[..end]).ok()?;
    let release = text.split_ascii_whitespace().next()?;
    is_release(release).then(|| release.to_string())
}

/// Plausible kernel release text: printable ASCII, no path separators.
pub(crate) fn is_release(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(protocol: u16, offset: u16, text: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
        img[0x20E..0x210].copy_from_slice(&offset.to_le_bytes());
        let at = 0x200 + usize::from(offset);
        img[at..at + text.len()].copy_from_slice(text);
        img
    }

    #[test]
    fn reads_release_from_header() {
        let img = image(
            0x20F,
            0x0C00,
            b"6.1.0-9-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0junk",
        );
        assert_eq!(kernel_version(&img).as_deref(), Some("6.1.0-9-cloud-amd64"));
    }

    #[test]
    fn rejects_missing_or_bad_headers() {
        assert_eq!(kernel_version(b""), None);
        assert_eq!(kernel_version(&[0u8; 0x1000]), None);
        // Protocol too old for a version string.
        assert_eq!(kernel_version(&image(0x1FF, 0x0C00, b"6.1 x\0")), None);
        // No offset, no terminator, not text, offset beyond the data read.
        assert_eq!(kernel_version(&image(0x20F, 0, b"")), None);
        let mut unterminated = image(0x20F, 0x0C00, b"");
        unterminated[0xE00..].fill(b'a');
        assert_eq!(kernel_version(&unterminated), None);
        assert_eq!(kernel_version(&image(0x20F, 0x0C00, b"\xff\xfe x\0")), None);
        assert_eq!(kernel_version(&image(0x20F, 0x0C00, b" \0")), None);
        let mut short = image(0x20F, 0x0C00, b"");
        short[0x20E..0x210].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert_eq!(kernel_version(&short), None);
    }
}
