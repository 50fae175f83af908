//! Recover the uncompressed ELF vmlinux from a bzImage, so distribution kernels (which ship
//! only a bzImage) can boot through PVH.

use std::io::Read;

use super::linux::setup_header_of;
use super::BootError;

pub(super) const ELF_MAGIC: &[u8] = b"\x7fELF";

const LZ4_LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";
/// .lzma header: properties lc=3 lp=0 pb=2 (what `lzma -9` writes), then the dictionary size.
const LZMA_MAGIC: &[u8] = &[0x5d, 0x00, 0x00];
const LZO_MAGIC: &[u8] = &[0x89, 0x4c, 0x5a, 0x4f];

/// Largest vmlinux accepted: real ones are 20-100 MiB, and a corrupt or hostile payload must
/// not make the VMM allocate without bound.
const MAX_VMLINUX: usize = 512 << 20;
/// Uncompressed size of every block of the LZ4 legacy format but the last.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// Largest compressed LZ4 block for `LZ4_LEGACY_BLOCK` input (LZ4_compressBound).
const LZ4_LEGACY_MAX_COMPRESSED: usize = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;
/// zstd window limit: the kernel builds with `zstd -22 --ultra` (128 MiB windows at most).
const ZSTD_MAX_WINDOW: u64 = 256 << 20;
/// xz/lzma decoder memory limit in KiB (mostly the dictionary: the kernel uses 32 MiB for xz,
/// `lzma -9` 64 MiB). A dictionary larger than the largest output is never needed.
const LZMA_MEM_LIMIT_KB: u32 = (MAX_VMLINUX >> 10) as u32;

/// Extract the uncompressed ELF vmlinux from a bzImage's payload (setup header
/// payload_offset/payload_length), for PVH boot.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, BootError> {
    extract_vmlinux_within(bzimage, MAX_VMLINUX)
}

/// [`extract_vmlinux`] with a smaller bound on the vmlinux (for fuzzing, where a
/// 512 MiB decompression per input would only slow the search down).
#[doc(hidden)]
pub fn extract_vmlinux_within(bzimage: &[u8], limit: usize) -> Result<Vec<u8>, BootError> {
    let limit = limit.min(MAX_VMLINUX);
    let bad = |msg: &str| BootError::BadBzImage(msg.to_owned());
    let hdr = setup_header_of(bzimage).ok_or_else(|| bad("no \"HdrS\" setup header"))?;
    if hdr.version < 0x0208 {
        return Err(bad("boot protocol older than 2.08 has no payload fields"));
    }
    // The protected-mode code follows the boot sector and setup_sects sectors of setup
    // (0 meaning 4, for ancient images); payload_offset is relative to it.
    let setup_sects = match hdr.setup_sects {
        0 => 4,
        n => n as usize,
    };
    let pm_start = (setup_sects + 1) * 512;
    let start = pm_start + hdr.payload_offset as usize;
    let payload = start
        .checked_add(hdr.payload_length as usize)
        .and_then(|end| bzimage.get(start..end))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            BootError::BadBzImage(format!(
                "payload {:#x}+{:#x} lies outside the {:#x}-byte image",
                start,
                { hdr.payload_length },
                bzimage.len()
            ))
        })?;
    let vmlinux = decompress(payload, limit)?;
    if !vmlinux.starts_with(ELF_MAGIC) {
        return Err(BootError::NotElf);
    }
    Ok(vmlinux)
}

/// Decompress a payload as the kernel's own decompressor would, into at most `limit` bytes.
/// Every compressed payload ends with the 4-byte little-endian vmlinux size (scripts/
/// Makefile.lib size_append), which the stream decoders leave unread as trailing bytes.
fn decompress(payload: &[u8], limit: usize) -> Result<Vec<u8>, BootError> {
    // That trailer presizes the output, saving reallocations of a ~50 MiB buffer.
    let hint = payload
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes(payload[at..].try_into().unwrap()) as usize)
        .filter(|&n| n <= limit)
        .unwrap_or(0);
    if payload.starts_with(&LZ4_LEGACY_MAGIC) {
        unlz4_legacy(payload, hint, limit)
    } else if payload.starts_with(GZIP_MAGIC) {
        read_bounded("gzip", flate2::read::GzDecoder::new(payload), hint, limit)
    } else if payload.starts_with(XZ_MAGIC) {
        // Single stream: the trailer is not stream padding nor a next stream.
        let xz = lzma_rust2::XzReader::new_mem_limit(payload, false, LZMA_MEM_LIMIT_KB);
        read_bounded("xz", xz, hint, limit)
    } else if payload.starts_with(ZSTD_MAGIC) {
        unzstd(payload, hint, limit)
    } else if payload.starts_with(BZIP2_MAGIC) {
        read_bounded("bzip2", bzip2::read::BzDecoder::new(payload), hint, limit)
    } else if payload.starts_with(LZMA_MAGIC) {
        unlzma(payload, hint, limit)
    } else if payload.starts_with(ELF_MAGIC) {
        // CONFIG_KERNEL_UNCOMPRESSED.
        Ok(payload.to_vec())
    } else if payload.starts_with(LZO_MAGIC) {
        // The LZO decoder crates are GPL (not for this Apache-2.0 crate) or unmaintained, and
        // lzo kernels are rare.
        Err(BootError::UnsupportedCompression("lzo"))
    } else {
        Err(BootError::UnsupportedCompression("an unknown format"))
    }
}

fn decompress_err(format: &'static str, e: impl std::fmt::Display) -> BootError {
    BootError::Decompress {
        format,
        reason: e.to_string(),
    }
}

fn too_large(format: &'static str, limit: usize) -> BootError {
    let limit = if limit % (1 << 20) == 0 {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{limit}-byte")
    };
    decompress_err(format, format!("vmlinux would exceed the {limit} limit"))
}

/// Read a decoder to its end, failing as soon as it yields more than `limit` bytes.
fn read_bounded(
    format: &'static str,
    decoder: impl Read,
    hint: usize,
    limit: usize,
) -> Result<Vec<u8>, BootError> {
    let mut out = Vec::with_capacity(hint);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| match e.kind() {
            // Some decoders say no more than "failed to fill whole buffer".
            std::io::ErrorKind::UnexpectedEof => {
                decompress_err(format, format!("payload is truncated ({e})"))
            }
            _ => decompress_err(format, e),
        })?;
    if out.len() > limit {
        return Err(too_large(format, limit));
    }
    Ok(out)
}

/// ruzstd leaves checking the content checksum (zstd writes one by default) to its caller.
fn unzstd(payload: &[u8], hint: usize, limit: usize) -> Result<Vec<u8>, BootError> {
    let err = |e: &dyn std::fmt::Display| decompress_err("zstd", e);
    let mut dec =
        ruzstd::decoding::StreamingDecoder::new_with_max_window_size(payload, ZSTD_MAX_WINDOW)
            .map_err(|e| err(&e))?;
    if dec.decoder.content_size() > limit as u64 {
        return Err(too_large("zstd", limit));
    }
    let out = read_bounded("zstd", &mut dec, hint, limit)?;
    match (
        dec.decoder.get_checksum_from_data(),
        dec.decoder.get_calculated_checksum(),
    ) {
        (Some(want), Some(got)) if want != got => Err(err(&"content checksum mismatch")),
        _ => Ok(out),
    }
}

/// The .lzma ("alone") header: properties byte, u32 dictionary size, u64 uncompressed size
/// (all ones when unknown, as when `lzma` compresses a pipe: then an end marker ends it).
fn unlzma(payload: &[u8], hint: usize, limit: usize) -> Result<Vec<u8>, BootError> {
    let declared = payload
        .get(5..13)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if matches!(declared, Some(n) if n != u64::MAX && n > limit as u64) {
        return Err(too_large("lzma", limit));
    }
    let lzma = lzma_rust2::LzmaReader::new_mem_limit(payload, LZMA_MEM_LIMIT_KB, None)
        .map_err(|e| decompress_err("lzma", e))?;
    read_bounded("lzma", lzma, hint, limit)
}

/// Decode the LZ4 legacy frame format (`lz4 -l`): the magic, then blocks of
/// [u32 LE compressed size][LZ4 block], each inflating to 8 MiB but the last. The magic may
/// recur (concatenated streams). The format has no end mark nor checksum: the data ends at
/// the payload's end or at the kernel's 4-byte size trailer, recognised by matching the
/// output size, so that a payload cut short mid-block is an error, not a short vmlinux.
fn unlz4_legacy(data: &[u8], hint: usize, limit: usize) -> Result<Vec<u8>, BootError> {
    let err = |pos: usize, what: &str| {
        decompress_err("lz4", format!("{what} at payload offset {pos:#x}"))
    };
    let mut out = Vec::with_capacity(hint);
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut pos = LZ4_LEGACY_MAGIC.len();
    loop {
        let rest = &data[pos..];
        let word = rest
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        match word {
            None if rest.is_empty() => break,
            Some(n) if rest.len() == 4 && n as usize == out.len() => break,
            None => return Err(err(pos, "truncated block header")),
            Some(_) if rest[..4] == LZ4_LEGACY_MAGIC => {
                pos += 4;
                continue;
            }
            Some(size) => {
                let size = size as usize;
                if size == 0 || size > LZ4_LEGACY_MAX_COMPRESSED {
                    return Err(err(pos, &format!("invalid block size {size:#x}")));
                }
                if size > rest.len() - 4 {
                    return Err(err(pos, "truncated block"));
                }
                pos += 4;
                let n = lz4_flex::block::decompress_into(&data[pos..pos + size], &mut block)
                    .map_err(|e| err(pos, &format!("block: {e}")))?;
                if out.len() + n > limit {
                    return Err(too_large("lz4", limit));
                }
                out.extend_from_slice(&block[..n]);
                pos += size;
            }
        }
    }
    if out.is_empty() {
        return Err(decompress_err("lz4", "no data blocks"));
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::boot::linux::tests::fake_bzimage;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    /// Something ELF-looking and compressible, with an x86 `call rel32` every 64 bytes so that
    /// xz's BCJ filter has addresses to convert.
    pub(crate) fn fake_elf(len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|i| ((i / 7) % 251) as u8).collect();
        for at in (64..len.saturating_sub(5)).step_by(64) {
            v[at..at + 5].copy_from_slice(&[0xe8, (at >> 6) as u8, (at >> 14) as u8, 0, 0]);
        }
        v[..4].copy_from_slice(ELF_MAGIC);
        v
    }

    /// Payload placed `gap` bytes into the protected-mode part, as real images do.
    pub(crate) fn wrap(payload: &[u8], trailer: &[u8]) -> Vec<u8> {
        let gap = 0x3c0;
        let mut pm = vec![0x90u8; gap];
        pm.extend_from_slice(payload);
        pm.extend_from_slice(trailer);
        pm.extend_from_slice(&[0xcc; 100]); // code after the payload
        fake_bzimage(&pm, gap as u32, (payload.len() + trailer.len()) as u32)
    }

    /// The kernel's size_append.
    fn size_of_elf(elf: &[u8]) -> [u8; 4] {
        (elf.len() as u32).to_le_bytes()
    }

    pub(crate) fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_vec();
        for (i, chunk) in data.chunks(LZ4_LEGACY_BLOCK).enumerate() {
            if i == 1 {
                // A repeated magic between blocks must be skipped.
                out.extend_from_slice(&LZ4_LEGACY_MAGIC);
            }
            let c = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    /// `cat vmlinux.bin | TOOL ARGS` as scripts/Makefile.lib runs it for each CONFIG_KERNEL_*
    /// (xz through scripts/xz_wrap.sh, which adds the x86 BCJ filter), with the Debian package
    /// that ships the tool.
    fn kernel_compress(format: &str, data: &[u8]) -> Vec<u8> {
        let (tool, args, package): (&str, &[&str], &str) = match format {
            "gzip" => ("gzip", &["-n", "-f", "-9"], "gzip"),
            "bzip2" => ("bzip2", &["-9"], "bzip2"),
            "lzma" => ("lzma", &["-9"], "xz-utils"),
            "xz" => (
                "xz",
                &["--check=crc32", "--x86", "--lzma2=,dict=32MiB"],
                "xz-utils",
            ),
            "lz4" => ("lz4", &["-l", "-9", "-", "-"], "lz4"),
            "zstd" => ("zstd", &["-22", "--ultra"], "zstd"),
            _ => unreachable!("{format}"),
        };
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {tool} ({e}): install the Debian package {package} (scripts/install-deps)")
            });
        let mut stdin = child.stdin.take().unwrap();
        let out = std::thread::scope(|s| {
            s.spawn(move || stdin.write_all(data).unwrap());
            child.wait_with_output().unwrap()
        });
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn assert_decompress_err(r: Result<Vec<u8>, BootError>, format: &str, case: &str) {
        match r {
            Err(BootError::Decompress { format: f, .. }) if f == format => {}
            other => panic!("{format}, {case}: want a {format} Decompress error, got {other:?}"),
        }
    }

    /// A payload made by the kernel's own tool and command: decoded exactly with the size
    /// trailer after it, refused past the size limit, and an error when cut short or damaged.
    fn check_kernel_format(format: &str) {
        let elf = fake_elf((1 << 20) + 4321);
        let payload = kernel_compress(format, &elf);
        let with_size = [&payload[..], &size_of_elf(&elf)].concat();
        assert_eq!(
            extract_vmlinux(&wrap(&payload, &size_of_elf(&elf))).unwrap(),
            elf
        );

        assert_eq!(decompress(&with_size, elf.len()).unwrap(), elf);
        let over = decompress(&with_size, elf.len() - 1).unwrap_err();
        assert!(over.to_string().contains("exceed"), "{format}: {over}");
        assert_decompress_err(Err(over), format, "limit");

        // Cut anywhere, and notably within the end marks and checksums of the last bytes.
        let len = payload.len();
        for cut in (1..16).map(|i| len * i / 16).chain(len - 8..len) {
            let r = extract_vmlinux(&wrap(&payload[..cut], &[]));
            assert_decompress_err(r, format, &format!("cut at {cut} of {len}"));
        }
        let mut bad = with_size.clone();
        if format == "lz4" {
            // The legacy format has no checksum: only damage to its structure can be seen.
            // Here the block claims a byte less than it has.
            let size = u32::from_le_bytes(bad[4..8].try_into().unwrap());
            bad[4..8].copy_from_slice(&(size - 1).to_le_bytes());
        } else {
            let mid = bad.len() / 2;
            bad[mid..mid + 8].iter_mut().for_each(|b| *b ^= 0x55);
        }
        assert_decompress_err(extract_vmlinux(&wrap(&bad, &[])), format, "corrupt");
    }

    #[test]
    fn gzip_as_the_kernel_builds_it() {
        check_kernel_format("gzip");
    }

    #[test]
    fn bzip2_as_the_kernel_builds_it() {
        check_kernel_format("bzip2");
    }

    #[test]
    fn lzma_as_the_kernel_builds_it() {
        check_kernel_format("lzma");
    }

    #[test]
    fn xz_as_the_kernel_builds_it() {
        check_kernel_format("xz");
    }

    #[test]
    fn lz4_as_the_kernel_builds_it() {
        check_kernel_format("lz4");
    }

    #[test]
    fn zstd_as_the_kernel_builds_it() {
        check_kernel_format("zstd");
    }

    #[test]
    fn zstd_content_checksum_is_checked() {
        let elf = fake_elf(100_000);
        let mut z = kernel_compress("zstd", &elf);
        let last = z.len() - 1;
        z[last] ^= 1; // the frame ends with the low 32 bits of the content's XXH64
        let r = extract_vmlinux(&wrap(&z, &size_of_elf(&elf)));
        assert!(
            matches!(&r, Err(BootError::Decompress { reason, .. }) if reason.contains("checksum")),
            "{:?}",
            r.map(|v| v.len())
        );
    }

    #[test]
    fn xz_block_check_is_checked() {
        let elf = fake_elf(100_000);
        let mut xz = kernel_compress("xz", &elf);
        // The stream footer's Backward Size locates the index; the block's CRC32 precedes it.
        let len = xz.len();
        let index = (u32::from_le_bytes(xz[len - 8..len - 4].try_into().unwrap()) as usize + 1) * 4;
        xz[len - 12 - index - 1] ^= 1;
        let r = extract_vmlinux(&wrap(&xz, &size_of_elf(&elf)));
        assert!(
            matches!(&r, Err(BootError::Decompress { format: "xz", .. })),
            "{:?}",
            r.map(|v| v.len())
        );
    }

    #[test]
    fn lzma_declared_size_over_limit_is_refused_up_front() {
        let mut lzma = kernel_compress("lzma", &fake_elf(4096));
        lzma[5..13].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let e = decompress(&lzma, MAX_VMLINUX).unwrap_err();
        assert!(e.to_string().contains("512 MiB limit"), "{e}");
    }

    #[test]
    fn lz4_legacy_with_size_trailer() {
        let elf = fake_elf(LZ4_LEGACY_BLOCK * 2 + 12345);
        let img = wrap(&lz4_legacy(&elf), &size_of_elf(&elf));
        assert_eq!(extract_vmlinux(&img).unwrap(), elf);
    }

    #[test]
    fn lz4_legacy_without_trailer() {
        let elf = fake_elf(100_000);
        assert_eq!(extract_vmlinux(&wrap(&lz4_legacy(&elf), &[])).unwrap(), elf);
    }

    /// Debian's cloud kernel (LZ4) decoded, then re-compressed the way an xz kernel is built:
    /// the xz path must give back the very same vmlinux.
    #[test]
    fn debian_cloud_kernel_as_xz() {
        let kernel = std::fs::read_dir("/boot").ok().and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("vmlinuz-") && name.ends_with("-cloud-amd64")
            })
        });
        let Some(kernel) = kernel else {
            return hvbox_test_support::skip(
                "no /boot/vmlinuz-*-cloud-amd64 (Debian's linux-image-cloud-amd64)",
            );
        };
        let image = std::fs::read(&kernel).unwrap();
        let t = Instant::now();
        let vmlinux = extract_vmlinux(&image).unwrap();
        let lz4_time = t.elapsed();

        let xz = kernel_compress("xz", &vmlinux);
        let t = Instant::now();
        let again = extract_vmlinux(&wrap(&xz, &size_of_elf(&vmlinux))).unwrap();
        let xz_time = t.elapsed();
        assert!(
            again == vmlinux,
            "xz round trip of {} differs",
            kernel.display()
        );
        eprintln!(
            "{}: {} MiB vmlinux from {} MiB of LZ4 in {lz4_time:.2?}, from {} MiB of xz in {xz_time:.2?}",
            kernel.display(),
            vmlinux.len() >> 20,
            image.len() >> 20,
            xz.len() >> 20
        );
    }

    #[test]
    fn rejects_unsupported_and_non_elf() {
        let lzo = [LZO_MAGIC, &[0u8; 64][..]].concat();
        assert!(matches!(
            extract_vmlinux(&wrap(&lzo, &[])),
            Err(BootError::UnsupportedCompression("lzo"))
        ));
        assert!(matches!(
            extract_vmlinux(&wrap(&[0x42; 64], &[])),
            Err(BootError::UnsupportedCompression("an unknown format"))
        ));
        let not_elf = lz4_legacy(&[0x55u8; 4096]);
        assert!(matches!(
            extract_vmlinux(&wrap(&not_elf, &[])),
            Err(BootError::NotElf)
        ));
        assert!(matches!(
            extract_vmlinux(&[0u8; 2048]),
            Err(BootError::BadBzImage(_))
        ));
        // Payload pointing past the end of the file.
        let mut img = wrap(&lz4_legacy(&fake_elf(1000)), &[]);
        img[0x24c..0x250].copy_from_slice(&0x100_0000u32.to_le_bytes());
        assert!(matches!(
            extract_vmlinux(&img),
            Err(BootError::BadBzImage(_))
        ));
    }
}
