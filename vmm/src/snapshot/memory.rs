//! Guest RAM in a state file: every region at its own offset, pages that hold only
//! zeros left as holes, and one checksum over the pages that do not. Restored by
//! mapping the file copy-on-write: nothing is copied into the VMM, the guest's first
//! touch of a page reads it from the page cache, and the file is never written.

use crate::memory::{ram_regions, Backing, GuestMemory};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestRegionMmap,
    MemoryRegionAddress,
};

pub const PAGE: usize = 4096;
/// Memory is read and written in pieces of this size.
const CHUNK: usize = 1 << 20;

/// Where each RAM region is in the file, and the checksum of its non-zero pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryImage {
    pub regions: Vec<RegionImage>,
    /// CRC-32 over (guest address, bytes) of every page that is not all zeros, in
    /// address order: the same whether a copy of the file kept its holes or not.
    pub checksum: u32,
    /// Pages written (not zero).
    pub pages: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionImage {
    pub guest_addr: u64,
    pub len: u64,
    /// From the start of the state file; a multiple of [`PAGE`].
    pub file_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryImageError {
    #[error("writing guest memory to the state file: {0}")]
    Write(io::Error),
    #[error("reading guest memory: {0}")]
    Read(String),
    #[error("the state's memory layout {found:?} is not that of {ram} bytes of RAM at offset {data_start}")]
    Layout {
        found: Vec<RegionImage>,
        ram: u64,
        data_start: u64,
    },
    #[error("the state file is {len} bytes, shorter than the guest memory it must hold ({needed} bytes)")]
    Truncated { len: u64, needed: u64 },
    #[error("mapping guest memory from the state file: {0}")]
    Map(String),
    #[error("guest memory in the state file is damaged: its checksum is {found:#010x}, not {expected:#010x}")]
    Checksum { expected: u32, found: u32 },
}

/// Feeds pages to the checksum and tells zero pages apart.
struct Digest {
    crc: crc32fast::Hasher,
    pages: u64,
}

impl Digest {
    fn new() -> Digest {
        Digest {
            crc: crc32fast::Hasher::new(),
            pages: 0,
        }
    }

    /// Adds the page at `addr` unless it is all zeros; whether it was added.
    fn page(&mut self, addr: u64, bytes: &[u8]) -> bool {
        if is_zero(bytes) {
            return false;
        }
        self.crc.update(&addr.to_le_bytes());
        self.crc.update(bytes);
        self.pages += 1;
        true
    }
}

fn is_zero(bytes: &[u8]) -> bool {
    // Whole aligned words make the test several times faster than bytes.
    // SAFETY: every bit pattern is a valid u64, and align_to keeps the alignment.
    let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Write every region of `mem` (with every vCPU and device stopped) into `file`
/// from `data_start` on, skipping zero pages; the file ends where memory does.
pub fn write(
    mem: &GuestMemory,
    file: &File,
    data_start: u64,
) -> Result<MemoryImage, MemoryImageError> {
    let mut digest = Digest::new();
    let mut regions = Vec::new();
    let mut offset = data_start;
    let mut buf = vec![0u8; CHUNK];
    for region in mem.iter() {
        let len = region.len();
        regions.push(RegionImage {
            guest_addr: region.start_addr().0,
            len,
            file_offset: offset,
        });
        let mut at = 0u64;
        while at < len {
            let n = CHUNK.min((len - at) as usize);
            let chunk = &mut buf[..n];
            region
                .read_slice(chunk, MemoryRegionAddress(at))
                .map_err(|e| MemoryImageError::Read(e.to_string()))?;
            write_nonzero_runs(
                chunk,
                region.start_addr().0 + at,
                offset + at,
                file,
                &mut digest,
            )
            .map_err(MemoryImageError::Write)?;
            at += n as u64;
        }
        offset += len;
    }
    file.set_len(offset).map_err(MemoryImageError::Write)?;
    Ok(MemoryImage {
        regions,
        checksum: digest.crc.finalize(),
        pages: digest.pages,
    })
}

/// Each run of consecutive non-zero pages of `chunk` in one write.
fn write_nonzero_runs(
    chunk: &[u8],
    guest_addr: u64,
    file_offset: u64,
    file: &File,
    digest: &mut Digest,
) -> io::Result<()> {
    let mut run: Option<usize> = None;
    for (i, page) in chunk.chunks(PAGE).enumerate() {
        let at = i * PAGE;
        let data = digest.page(guest_addr + at as u64, page);
        match (data, run) {
            (true, None) => run = Some(at),
            (false, Some(start)) => {
                file.write_all_at(&chunk[start..at], file_offset + start as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        file.write_all_at(&chunk[start..], file_offset + start as u64)?;
    }
    Ok(())
}

/// Check that `image` lays out exactly the RAM of a `ram`-byte machine, packed from
/// `data_start`, and that `file_len` holds it.
pub fn check_layout(
    image: &MemoryImage,
    ram: u64,
    data_start: u64,
    file_len: u64,
) -> Result<(), MemoryImageError> {
    let mut offset = data_start;
    let expected: Vec<RegionImage> = ram_regions(ram)
        .into_iter()
        .map(|(addr, len)| {
            let region = RegionImage {
                guest_addr: addr.0,
                len: len as u64,
                file_offset: offset,
            };
            offset += len as u64;
            region
        })
        .collect();
    if image.regions != expected || data_start % PAGE as u64 != 0 {
        return Err(MemoryImageError::Layout {
            found: image.regions.clone(),
            ram,
            data_start,
        });
    }
    if file_len < offset {
        return Err(MemoryImageError::Truncated {
            len: file_len,
            needed: offset,
        });
    }
    Ok(())
}

/// Guest RAM for a machine continued from `file` (its layout checked with
/// [`check_layout`]), in `backing`: mapped copy-on-write from the file when private,
/// read into a new memfd when a vhost-user backend must share it. Verified against
/// the checksum before it is returned.
pub fn restore(
    file: &File,
    image: &MemoryImage,
    backing: Backing,
    ram: u64,
) -> Result<GuestMemory, MemoryImageError> {
    let mem = match backing {
        Backing::Anonymous => map_private(file, image)?,
        Backing::SharedMemfd => {
            let mem = crate::memory::create_guest_memory_in(ram, backing)
                .map_err(|e| MemoryImageError::Map(e.to_string()))?;
            copy_data(file, image, &mem)?;
            mem
        }
    };
    let found = checksum_of(file, image, &mem)?;
    if found != image.checksum {
        return Err(MemoryImageError::Checksum {
            expected: image.checksum,
            found,
        });
    }
    Ok(mem)
}

fn map_private(file: &File, image: &MemoryImage) -> Result<GuestMemory, MemoryImageError> {
    let shared = Arc::new(
        file.try_clone()
            .map_err(|e| MemoryImageError::Map(e.to_string()))?,
    );
    let mut regions = Vec::new();
    for r in &image.regions {
        let mapping = MmapRegionBuilder::new(r.len as usize)
            .with_file_offset(FileOffset::from_arc(Arc::clone(&shared), r.file_offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| MemoryImageError::Map(e.to_string()))?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(r.guest_addr))
            .ok_or_else(|| MemoryImageError::Map("a region overflows the address space".into()))?;
        regions.push(region);
    }
    GuestMemory::from_regions(regions).map_err(|e| MemoryImageError::Map(e.to_string()))
}

/// The byte ranges of `file` between `start` and `end` that hold data (not holes),
/// as the file system reports them; all of it where it cannot tell.
fn data_ranges(file: &File, start: u64, end: u64) -> Vec<(u64, u64)> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut at = start;
    while at < end {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(fd, at as i64, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return vec![(start, end)];
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as i64, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        ranges.push((data, hole));
        at = hole;
    }
    ranges
}

/// The pages of each region that the file holds as data, page-aligned, as
/// (region, offset in region, length).
fn data_pages<'a>(file: &File, image: &'a MemoryImage) -> Vec<(&'a RegionImage, u64, u64)> {
    let mut out = Vec::new();
    for r in &image.regions {
        for (from, to) in data_ranges(file, r.file_offset, r.file_offset + r.len) {
            let from = (from - r.file_offset) / PAGE as u64 * PAGE as u64;
            let to = (to - r.file_offset).div_ceil(PAGE as u64) * PAGE as u64;
            out.push((r, from, to.min(r.len)));
        }
    }
    out
}

fn copy_data(file: &File, image: &MemoryImage, mem: &GuestMemory) -> Result<(), MemoryImageError> {
    let mut buf = vec![0u8; CHUNK];
    for (r, from, to) in data_pages(file, image) {
        let mut at = from;
        while at < to {
            let n = CHUNK.min((to - at) as usize);
            file.read_exact_at(&mut buf[..n], r.file_offset + at)
                .map_err(|e| MemoryImageError::Map(format!("reading the state file: {e}")))?;
            mem.write_slice(&buf[..n], GuestAddress(r.guest_addr + at))
                .map_err(|e| MemoryImageError::Map(e.to_string()))?;
            at += n as u64;
        }
    }
    Ok(())
}

/// The checksum of `mem` as [`write`] computes it, reading only the pages the file
/// holds as data (holes are zero pages, which the checksum leaves out).
fn checksum_of(
    file: &File,
    image: &MemoryImage,
    mem: &GuestMemory,
) -> Result<u32, MemoryImageError> {
    let mut digest = Digest::new();
    let mut buf = vec![0u8; CHUNK];
    for (r, from, to) in data_pages(file, image) {
        let mut at = from;
        while at < to {
            let n = CHUNK.min((to - at) as usize);
            let chunk = &mut buf[..n];
            mem.read_slice(chunk, GuestAddress(r.guest_addr + at))
                .map_err(|e| MemoryImageError::Read(e.to_string()))?;
            for (i, page) in chunk.chunks(PAGE).enumerate() {
                digest.page(r.guest_addr + at + (i * PAGE) as u64, page);
            }
            at += n as u64;
        }
    }
    Ok(digest.crc.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;

    fn sample() -> GuestMemory {
        let mem = create_guest_memory(16 << 20).unwrap();
        mem.write_slice(b"first page", GuestAddress(0)).unwrap();
        mem.write_slice(&[7u8; 3 * PAGE], GuestAddress(0x10_0000))
            .unwrap();
        mem.write_obj(0xdead_beefu32, GuestAddress((16 << 20) - 4))
            .unwrap();
        mem
    }

    #[test]
    fn memory_round_trips_sparsely_and_mapped() {
        let mem = sample();
        let file = tempfile::tempfile().unwrap();
        let image = write(&mem, &file, 8 * PAGE as u64).unwrap();
        assert_eq!(image.pages, 1 + 3 + 1);
        let len = file.metadata().unwrap().len();
        assert_eq!(len, 8 * PAGE as u64 + (16 << 20));
        check_layout(&image, 16 << 20, 8 * PAGE as u64, len).unwrap();
        // Holes where memory was zero (on file systems that keep them).
        let allocated = std::os::unix::fs::MetadataExt::blocks(&file.metadata().unwrap()) * 512;
        assert!(allocated < (1 << 20), "{allocated} bytes allocated");

        let restored = restore(&file, &image, Backing::Anonymous, 16 << 20).unwrap();
        let mut word = [0u8; 10];
        restored.read_slice(&mut word, GuestAddress(0)).unwrap();
        assert_eq!(&word, b"first page");
        assert_eq!(
            restored
                .read_obj::<u32>(GuestAddress((16 << 20) - 4))
                .unwrap(),
            0xdead_beef
        );
        // Writes go to the mapping, never to the file.
        restored.write_obj(1u8, GuestAddress(0)).unwrap();
        let mut first = [0u8; 1];
        file.read_exact_at(&mut first, 8 * PAGE as u64).unwrap();
        assert_eq!(first[0], b'f');

        let shared = restore(&file, &image, Backing::SharedMemfd, 16 << 20).unwrap();
        assert_eq!(
            shared.read_obj::<u8>(GuestAddress(0x10_0000 + 5)).unwrap(),
            7
        );
    }

    #[test]
    fn a_flipped_byte_in_memory_is_found() {
        let mem = sample();
        let file = tempfile::tempfile().unwrap();
        let image = write(&mem, &file, PAGE as u64).unwrap();
        file.write_all_at(&[8], PAGE as u64 + 0x10_0000 + 100)
            .unwrap();
        let err = restore(&file, &image, Backing::Anonymous, 16 << 20)
            .err()
            .unwrap();
        assert!(matches!(err, MemoryImageError::Checksum { .. }), "{err}");
        // A byte written into a hole counts too.
        let file = tempfile::tempfile().unwrap();
        let image = write(&mem, &file, PAGE as u64).unwrap();
        file.write_all_at(&[1], PAGE as u64 + (8 << 20)).unwrap();
        let err = restore(&file, &image, Backing::Anonymous, 16 << 20)
            .err()
            .unwrap();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn a_layout_for_other_ram_or_a_short_file_is_refused() {
        let mem = sample();
        let file = tempfile::tempfile().unwrap();
        let image = write(&mem, &file, PAGE as u64).unwrap();
        let len = file.metadata().unwrap().len();
        assert!(matches!(
            check_layout(&image, 32 << 20, PAGE as u64, len),
            Err(MemoryImageError::Layout { .. })
        ));
        let err = check_layout(&image, 16 << 20, PAGE as u64, len - 1)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("shorter than the guest memory"),
            "{err}"
        );
    }
}
