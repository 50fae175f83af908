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
const LZMA_MAGIC: &[u8] = &[0x5d, 0x00, 0x00];
const LZO_MAGIC: &[u8] = &[0x89, 0x4c, 0x5a, 0x4f];

/// Uncompressed size of every block of the LZ4 legacy format but the last.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// Largest compressed LZ4 block for `LZ4_LEGACY_BLOCK` input (LZ4_compressBound).
const LZ4_LEGACY_MAX_COMPRESSED: usize = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK / 255 + 16;
/// zstd window limit: the kernel builds with `zstd -22 --ultra` (128 MiB windows at most).
const ZSTD_MAX_WINDOW: u64 = 256 << 20;

/// Extract the uncompressed ELF vmlinux from a bzImage's payload (setup header
/// payload_offset/payload_length), for PVH boot.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>, BootError> {
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

    let vmlinux = if payload.starts_with(&LZ4_LEGACY_MAGIC) {
        unlz4_legacy(payload)?
    } else if payload.starts_with(GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(payload)
            .read_to_end(&mut out)
            .map_err(|e| decompress_err("gzip", e))?;
        out
    } else if payload.starts_with(ZSTD_MAGIC) {
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new_with_max_window_size(payload, ZSTD_MAX_WINDOW)
            .map_err(|e| decompress_err("zstd", e))?
            .read_to_end(&mut out)
            .map_err(|e| decompress_err("zstd", e))?;
        out
    } else if payload.starts_with(ELF_MAGIC) {
        // CONFIG_KERNEL_UNCOMPRESSED.
        payload.to_vec()
    } else {
        let format = [
            (XZ_MAGIC, "xz"),
            (BZIP2_MAGIC, "bzip2"),
            (LZMA_MAGIC, "lzma"),
            (LZO_MAGIC, "lzo"),
        ]
        .iter()
        .find(|(magic, _)| payload.starts_with(magic))
        .map_or("an unknown format", |&(_, name)| name);
        return Err(BootError::UnsupportedCompression(format));
    };

    if !vmlinux.starts_with(ELF_MAGIC) {
        return Err(BootError::NotElf);
    }
    Ok(vmlinux)
}

fn decompress_err(format: &'static str, e: impl std::fmt::Display) -> BootError {
    BootError::Decompress {
        format,
        reason: e.to_string(),
    }
}

/// Decode the LZ4 legacy frame format (`lz4 -l`): the magic, then blocks of
/// [u32 LE compressed size][LZ4 block] each inflating to at most 8 MiB. The magic may recur
/// (concatenated streams). The kernel appends the 4-byte uncompressed size, which reads as a
/// block size running past the end; that, or the end of the data, finishes the stream.
fn unlz4_legacy(data: &[u8]) -> Result<Vec<u8>, BootError> {
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut pos = LZ4_LEGACY_MAGIC.len();
    while let Some(size_bytes) = data.get(pos..pos + 4) {
        pos += 4;
        if size_bytes == LZ4_LEGACY_MAGIC {
            continue;
        }
        let size = u32::from_le_bytes(size_bytes.try_into().unwrap()) as usize;
        if size == 0 || size > LZ4_LEGACY_MAX_COMPRESSED || size > data.len() - pos {
            break;
        }
        let n = lz4_flex::block::decompress_into(&data[pos..pos + size], &mut block)
            .map_err(|e| decompress_err("lz4", format!("block at payload offset {pos:#x}: {e}")))?;
        out.extend_from_slice(&block[..n]);
        pos += size;
    }
    if out.is_empty() {
        return Err(decompress_err("lz4", "no data blocks"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::linux::tests::fake_bzimage;
    use std::io::Write;

    /// Something ELF-looking and compressible, over several 8 MiB LZ4 blocks.
    fn fake_elf(len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|i| ((i / 7) % 251) as u8).collect();
        v[..4].copy_from_slice(ELF_MAGIC);
        v
    }

    /// Payload placed `gap` bytes into the protected-mode part, as real images do.
    fn wrap(payload: &[u8], trailer: &[u8]) -> Vec<u8> {
        let gap = 0x3c0;
        let mut pm = vec![0x90u8; gap];
        pm.extend_from_slice(payload);
        pm.extend_from_slice(trailer);
        pm.extend_from_slice(&[0xcc; 100]); // code after the payload
        fake_bzimage(&pm, gap as u32, (payload.len() + trailer.len()) as u32)
    }

    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
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

    #[test]
    fn lz4_legacy_with_size_trailer() {
        let elf = fake_elf(LZ4_LEGACY_BLOCK * 2 + 12345);
        let size = (elf.len() as u32).to_le_bytes();
        let img = wrap(&lz4_legacy(&elf), &size);
        assert_eq!(extract_vmlinux(&img).unwrap(), elf);
    }

    #[test]
    fn lz4_legacy_without_trailer() {
        let elf = fake_elf(100_000);
        assert_eq!(extract_vmlinux(&wrap(&lz4_legacy(&elf), &[])).unwrap(), elf);
    }

    #[test]
    fn gzip_payload() {
        let elf = fake_elf(300_000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&elf).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(extract_vmlinux(&wrap(&gz, &[])).unwrap(), elf);
    }

    #[test]
    fn zstd_payload() {
        let elf = fake_elf(300_000);
        let z = ruzstd::encoding::compress_to_vec(
            elf.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let size = (elf.len() as u32).to_le_bytes();
        assert_eq!(extract_vmlinux(&wrap(&z, &size)).unwrap(), elf);
    }

    #[test]
    fn rejects_unsupported_and_non_elf() {
        let xz = [XZ_MAGIC, &[0u8; 64][..]].concat();
        assert!(matches!(
            extract_vmlinux(&wrap(&xz, &[])),
            Err(BootError::UnsupportedCompression("xz"))
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
