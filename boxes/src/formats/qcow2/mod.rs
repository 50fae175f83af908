//! qcow2 (versions 2 and 3) to sparse raw, while the image downloads.
//!
//! The format (QEMU's `docs/interop/qcow2.txt`): a header in cluster 0, an L1 table
//! whose entries point at L2 tables (one cluster each), whose entries point at data
//! clusters — stored as they are, or compressed (deflate or zstd), or marked as reading
//! zeros. `qemu-img convert` writes the header, the L1 table and then each L2 table
//! shortly before the data it maps, but not always: the last L2 table of our 1 GiB
//! test image sits *after* its data, and parallel writers leave clusters out of order.
//!
//! So the converter walks the L2 tables in file order as the download brings them
//! in, and keeps the clusters they map in a queue ordered by where they end in the
//! file. A cluster is converted as soon as the download has passed its end: read
//! back from the spool (the download as it lands on disk, see `spool.rs`), which also
//! serves clusters that went by before their L2 table did. Memory holds the L1 table,
//! one L2 table and the queue (capped: past the cap the converter waits for the
//! download before reading more tables), never the image. Decompression runs on a
//! few worker threads, each writing its clusters straight to their place in the
//! output, so a compressed image converts about as fast as the download arrives.
//!
//! Anything that does not add up is an error naming what and where: a backing file,
//! encryption, an external data file, a cluster or table past the end of the file,
//! L1 entries sharing an L2 table, a table or cluster pointing into metadata, or two
//! guest clusters sharing one stored cluster (a few KiB would otherwise expand to the
//! whole virtual size). The virtual size must be within the cap, and before the
//! clusters an L2 table maps are written, the filesystem must have room for them.

mod header;
mod workers;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;

pub use header::Qcow2Error;
pub(crate) use header::MAGIC;
pub(crate) use workers::is_zero;

use super::FormatError;
use crate::bounds::Bounds;
use crate::spool::SpoolReader;
use header::{Header, HEADER_READ, L1_OFFSET_MASK, L2_COMPRESSED, L2_OFFSET_MASK, L2_ZERO};
use workers::{Job, Workers};

/// Mapped clusters waiting for the download, at most; ~32 bytes each.
const MAX_PENDING: usize = 256 * 1024;

/// A piece of the file that maps to guest data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Extent {
    /// Where it ends in the file: the queue's order.
    end: u64,
    start: u64,
    guest: u64,
    compressed: bool,
}

/// What lives where in the file, to catch tables and clusters that point into it.
struct Metadata {
    cluster_size: u64,
    l1: (u64, u64),
    /// L2 table offsets, sorted.
    l2: Vec<u64>,
}

/// Where each stored cluster (or compressed cluster's first byte) is used, so that
/// a second guest cluster pointing at it is caught. ~40 bytes per mapped cluster:
/// 3 MiB for a 4 GiB disk of 64 KiB clusters.
#[derive(Default)]
struct Owners(HashMap<u64, u64>);

impl Owners {
    fn claim(&mut self, host: u64, guest: u64) -> Result<(), FormatError> {
        if let Some(&first) = self.0.get(&host) {
            return Err(Qcow2Error::Aliased {
                first,
                second: guest,
                offset: host,
            }
            .into());
        }
        self.0.insert(host, guest);
        Ok(())
    }
}

impl Metadata {
    /// The header or L1 table, if `[start, end)` overlaps them.
    fn overlap_fixed(&self, start: u64, end: u64) -> Option<String> {
        if start < self.cluster_size {
            return Some("the header".into());
        }
        if start < self.l1.1 && self.l1.0 < end {
            return Some(format!("the L1 table at {:#x}", self.l1.0));
        }
        None
    }

    /// The metadata that `[start, end)` overlaps, if any.
    fn overlap(&self, start: u64, end: u64) -> Option<String> {
        if let Some(fixed) = self.overlap_fixed(start, end) {
            return Some(fixed);
        }
        // The last table starting before `end`.
        let i = self.l2.partition_point(|&t| t < end);
        if i > 0 {
            let t = self.l2[i - 1];
            if t + self.cluster_size > start {
                return Some(format!("the L2 table at {t:#x}"));
            }
        }
        None
    }
}

/// Convert the qcow2 image `src` delivers into a sparse raw disk in `out`.
pub(crate) fn convert(src: &SpoolReader, out: &File, bounds: &Bounds) -> Result<u64, FormatError> {
    let result = convert_inner(src, out, bounds);
    if result.is_err() {
        src.cancel();
    }
    result
}

fn convert_inner(src: &SpoolReader, out: &File, bounds: &Bounds) -> Result<u64, FormatError> {
    let available = src.wait_for(HEADER_READ)?;
    let mut head = vec![0u8; available.min(HEADER_READ) as usize];
    src.read_exact_at(&mut head, 0)?;
    let header = Header::parse(&head)?;
    bounds.check_size(header.size, || {
        format!("the image's virtual size of {} bytes", header.size)
    })?;
    let cs = header.cluster_size();
    out.set_len(header.size).map_err(FormatError::Write)?;

    // The L1 table: the file offsets of the L2 tables, by guest region.
    let l1_bytes = header.l1_size * 8;
    let file_len = src.wait_for(header.l1_offset + l1_bytes)?;
    if file_len < header.l1_offset + l1_bytes {
        return Err(Qcow2Error::BeyondEof {
            what: "the L1 table".into(),
            offset: header.l1_offset,
            len: l1_bytes,
            file_len,
        }
        .into());
    }
    let mut raw = vec![0u8; l1_bytes as usize];
    src.read_exact_at(&mut raw, header.l1_offset)?;
    let mut tables: Vec<(u64, u64)> = Vec::new();
    for (index, chunk) in raw.chunks_exact(8).enumerate() {
        let entry = u64::from_be_bytes(chunk.try_into().unwrap());
        let offset = entry & L1_OFFSET_MASK;
        if offset == 0 {
            continue;
        }
        if offset % cs != 0 {
            return Err(Qcow2Error::Misaligned {
                what: format!("the L2 table of L1 entry {index}"),
                offset,
                cluster_size: cs,
            }
            .into());
        }
        tables.push((offset, index as u64));
    }
    drop(raw);
    tables.sort_unstable();
    for pair in tables.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(Qcow2Error::SharedL2 {
                first: pair[0].1.min(pair[1].1),
                second: pair[0].1.max(pair[1].1),
                offset: pair[0].0,
            }
            .into());
        }
    }
    let meta = Metadata {
        cluster_size: cs,
        l1: (header.l1_offset, header.l1_offset + l1_bytes),
        l2: tables.iter().map(|t| t.0).collect(),
    };
    for &(offset, index) in &tables {
        if let Some(target) = meta.overlap_fixed(offset, offset + cs) {
            return Err(Qcow2Error::IntoMetadata {
                what: format!("the L2 table of L1 entry {index}"),
                offset,
                target,
            }
            .into());
        }
    }

    let workers = Workers::start(out, &header);
    let mut pending: BinaryHeap<Reverse<Extent>> = BinaryHeap::new();
    let mut owners = Owners::default();
    let mut table = vec![0u8; cs as usize];
    let mut result = (|| -> Result<(), FormatError> {
        for &(offset, index) in &tables {
            bounds.check_stop()?;
            // Clusters that end before this table come first in the download; so do
            // all of them while the queue is full.
            while let Some(Reverse(next)) = pending.peek().copied() {
                if next.end > offset + cs && pending.len() < MAX_PENDING {
                    break;
                }
                pending.pop();
                wait_and_convert(src, &workers, next)?;
            }
            let file_len = src.wait_for(offset + cs)?;
            if file_len < offset + cs {
                return Err(Qcow2Error::BeyondEof {
                    what: format!("the L2 table of L1 entry {index}"),
                    offset,
                    len: cs,
                    file_len,
                }
                .into());
            }
            src.read_exact_at(&mut table, offset)?;
            map_table(&header, &meta, index, &table, &mut pending, &mut owners)?;
            // Room for what is mapped and not written yet (at most a cluster each).
            bounds.check_space(pending.len() as u64 * cs)?;
            // Clusters that went by before their table: convert them now.
            let (available, _) = src.available();
            while let Some(Reverse(next)) = pending.peek().copied() {
                if next.end > available {
                    break;
                }
                pending.pop();
                convert_extent(src, &workers, next)?;
            }
            workers.check()?;
        }
        while let Some(Reverse(next)) = pending.pop() {
            bounds.check_stop()?;
            wait_and_convert(src, &workers, next)?;
        }
        Ok(())
    })();
    let finished = workers.finish();
    if result.is_ok() {
        result = finished;
    }
    result.map(|()| header.size)
}

/// Queue the clusters one L2 table maps.
fn map_table(
    header: &Header,
    meta: &Metadata,
    l1_index: u64,
    table: &[u8],
    pending: &mut BinaryHeap<Reverse<Extent>>,
    owners: &mut Owners,
) -> Result<(), FormatError> {
    let cs = header.cluster_size();
    let entry_bytes = header.l2_entry_bytes() as usize;
    // Compressed descriptors: x = 62 - (cluster_bits - 8) bits of byte offset, then the
    // number of 512-byte sectors beyond the first.
    let offset_bits = 62 - (header.cluster_bits - 8);
    let offset_mask = (1u64 << offset_bits) - 1;
    let sectors_mask = (1u64 << (62 - offset_bits)) - 1;
    for (j, e) in table.chunks_exact(entry_bytes).enumerate() {
        let guest = (l1_index * header.l2_entries() + j as u64) * cs;
        if guest >= header.size {
            break;
        }
        let entry = u64::from_be_bytes(e[..8].try_into().unwrap());
        let what = || format!("the cluster for guest offset {guest:#x}");
        if entry & L2_COMPRESSED != 0 {
            let start = entry & offset_mask;
            let sectors = (entry >> offset_bits) & sectors_mask;
            let end = (start & !511) + (sectors + 1) * 512;
            if let Some(target) = meta.overlap(start, end.min(start + cs + 512)) {
                return Err(Qcow2Error::IntoMetadata {
                    what: what(),
                    offset: start,
                    target,
                }
                .into());
            }
            owners.claim(start, guest)?;
            pending.push(Reverse(Extent {
                end,
                start,
                guest,
                compressed: true,
            }));
            continue;
        }
        let host = entry & L2_OFFSET_MASK;
        if host == 0 {
            // Unallocated, or zeros: a hole (no backing file to read through to).
            continue;
        }
        if host % cs != 0 {
            return Err(Qcow2Error::Misaligned {
                what: what(),
                offset: host,
                cluster_size: cs,
            }
            .into());
        }
        if let Some(target) = meta.overlap(host, host + cs) {
            return Err(Qcow2Error::IntoMetadata {
                what: what(),
                offset: host,
                target,
            }
            .into());
        }
        owners.claim(host, guest)?;
        if !header.extended_l2 {
            if entry & L2_ZERO == 0 {
                pending.push(Reverse(Extent {
                    end: host + cs,
                    start: host,
                    guest,
                    compressed: false,
                }));
            }
            continue;
        }
        // Extended L2: 32 subclusters, each allocated (bits 0-31), zero (32-63) or
        // unallocated. Runs of allocated subclusters become extents.
        let bitmap = u64::from_be_bytes(e[8..16].try_into().unwrap());
        let sub = cs / 32;
        let mut i = 0u64;
        while i < 32 {
            if bitmap & (1 << i) == 0 || bitmap & (1 << (i + 32)) != 0 {
                i += 1;
                continue;
            }
            let first = i;
            while i < 32 && bitmap & (1 << i) != 0 && bitmap & (1 << (i + 32)) == 0 {
                i += 1;
            }
            pending.push(Reverse(Extent {
                end: host + i * sub,
                start: host + first * sub,
                guest: guest + first * sub,
                compressed: false,
            }));
        }
    }
    Ok(())
}

/// Wait for the download to pass the end of `e`, then convert it.
fn wait_and_convert(src: &SpoolReader, workers: &Workers, e: Extent) -> Result<(), FormatError> {
    let file_len = src.wait_for(e.end)?;
    if file_len >= e.end {
        return convert_extent(src, workers, e);
    }
    // A compressed cluster's length is rounded up to whole sectors, so its end may
    // pass the end of the file; its start may not.
    if e.compressed && e.start < file_len {
        return convert_extent(src, workers, Extent { end: file_len, ..e });
    }
    Err(Qcow2Error::BeyondEof {
        what: format!("the cluster for guest offset {:#x}", e.guest),
        offset: e.start,
        len: e.end - e.start,
        file_len,
    }
    .into())
}

fn convert_extent(src: &SpoolReader, workers: &Workers, e: Extent) -> Result<(), FormatError> {
    let mut data = vec![0u8; (e.end - e.start) as usize];
    src.read_exact_at(&mut data, e.start)?;
    workers.submit(Job {
        guest: e.guest,
        data,
        compressed: e.compressed,
    })
}
