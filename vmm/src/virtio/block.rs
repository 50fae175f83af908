//! virtio-blk over a raw disk image (or a host block device).
//!
//! Requests are served on the device's own worker thread. Discard and write-zeroes
//! punch holes in the image, so the host file shrinks when the guest trims.
//!
//! Host trouble is not the guest's: a write that finds the host's file system full
//! waits for space instead of failing ([`queue_loop`]), and a failed flush fails
//! every later flush, since the host may have dropped the data it was to write.

use crate::memory::GuestMemory;
use crate::virtio::chain::{self, ChainError, Limits};
use crate::virtio::config_space;
use crate::virtio::device::{
    ActivateError, Activation, ActiveQueue, DeviceState, PausedQueues, VirtioDevice,
};
use crate::virtio::worker::{take_queues, Worker};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::mem::offset_of;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::Bytes;

const SECTOR_SHIFT: u32 = 9;
const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
const QUEUE_SIZE: u16 = 256;
/// Data segments per request: the queue size less the header and status
/// descriptors (we offer no indirect descriptors).
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
const SIZE_MAX: u32 = 128 << 10;
/// The most data one request may carry: what seg_max and size_max promise.
const MAX_DATA: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
const LIMITS: Limits = Limits {
    max_descriptors: SEG_MAX as usize + 2,
    // Header, data or discard segments, id or status.
    max_bytes: MAX_DATA + 4096,
};
const HEADER_SIZE: usize = 16;
const SEGMENT_SIZE: usize = 16;
const MAX_DISCARD_SEG: u32 = 32;
/// 4 GiB per discard or write-zeroes segment.
const MAX_DISCARD_SECTORS: u32 = 1 << 23;
/// Host I/O goes through a buffer of this size, whatever the request's size.
const BOUNCE_SIZE: usize = 256 << 10;

/// A disk image and what a request needs to know about it; serves one request at a
/// time ([`Disk::serve`]). The worker thread owns it while the device is active.
pub struct Disk {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    discard_alignment: u32,
    bounce: Vec<u8>,
    /// A flush failed: every later one fails too.
    flush_failed: bool,
}

/// How one request ended.
#[derive(Debug)]
pub struct Completion {
    /// Bytes written into the chain's writable buffers (the used length).
    pub used: u32,
    /// Why the request failed (its status byte says IOERR or UNSUPP), if it did.
    pub error: Option<RequestError>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("no device-writable status byte")]
    NoStatus,
    #[error("request header is {0} bytes, needs 16")]
    ShortHeader(usize),
    #[error("request type {0} is not supported")]
    Unsupported(u32),
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("sectors {sector}..+{count} are past the end of the disk ({capacity} sectors)")]
    OutOfRange {
        sector: u64,
        count: u64,
        capacity: u64,
    },
    #[error("data length {0} is not a multiple of 512")]
    Unaligned(usize),
    #[error("{0} data bytes in the wrong direction")]
    WrongDirection(usize),
    #[error(
        "{0} bytes of discard/write-zeroes segments (16 bytes each, at most {MAX_DISCARD_SEG})"
    )]
    BadSegments(usize),
    #[error("discard/write-zeroes flags {0:#x} are not allowed")]
    BadFlags(u32),
    #[error("a discard/write-zeroes segment of {0} sectors is larger than offered")]
    SegmentTooLarge(u32),
    #[error("copying request data from/to guest memory: {0}")]
    GuestMemory(io::Error),
    #[error("disk I/O: {0}")]
    Io(#[from] io::Error),
    /// The host's file system is full (or the user's quota): the request is held.
    #[error("disk full: {0}")]
    DiskFull(io::Error),
    #[error("flushing to the host's disk failed: {0}")]
    FlushFailed(io::Error),
    #[error("an earlier flush failed")]
    FlushLatched,
}

impl RequestError {
    fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) | RequestError::BadFlags(_) => VIRTIO_BLK_S_UNSUPP as u8,
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }

    /// The host's trouble rather than a guest's mistake.
    pub fn is_host(&self) -> bool {
        matches!(
            self,
            RequestError::Io(_)
                | RequestError::DiskFull(_)
                | RequestError::FlushFailed(_)
                | RequestError::FlushLatched
        )
    }

    /// A write's I/O error that means no space: the request waits for some.
    fn or_disk_full(self) -> RequestError {
        match self {
            RequestError::Io(e)
                if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) =>
            {
                RequestError::DiskFull(e)
            }
            other => other,
        }
    }
}

impl Disk {
    pub fn open(path: &Path, read_only: bool) -> io::Result<Disk> {
        let mut file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        image_lock::lock(&file, read_only)?;
        // Seeking also sizes host block devices, whose metadata length is 0. A size
        // that is not a multiple of 512 is rounded down: the guest cannot address a
        // partial sector, and the tail stays untouched.
        let size = file.seek(SeekFrom::End(0))?;
        let meta = file.metadata()?;
        Ok(Disk {
            file,
            read_only,
            sectors: size >> SECTOR_SHIFT,
            id: disk_id(meta.dev(), meta.ino()),
            discard_alignment: (meta.blksize() >> SECTOR_SHIFT).max(1) as u32,
            bounce: vec![0; BOUNCE_SIZE],
            flush_failed: false,
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Serves the request in `chain` and writes its status byte when the chain has
    /// one. Never fails: a bad request fails alone, with IOERR/UNSUPP in its status
    /// byte, or with nothing written when it has no usable status byte. A write
    /// that found the disk full ([`RequestError::DiskFull`]) writes no status: it is
    /// to be served again, whole, once there is space.
    pub fn serve(&mut self, mem: &GuestMemory, chain: DescriptorChain<&GuestMemory>) -> Completion {
        let layout = match chain::inspect(&chain, LIMITS) {
            Ok(layout) => layout,
            // Without a trustworthy layout there is no telling where the status is.
            Err(e) => return Completion::failed(0, e.into()),
        };
        if let Err(e) = layout.check_memory(mem) {
            // A data buffer outside memory; the status byte may still be fine.
            let used = match layout.last_writable_byte() {
                Some(at) if mem.write_obj(VIRTIO_BLK_S_IOERR as u8, at).is_ok() => 1,
                _ => 0,
            };
            return Completion::failed(used, e.into());
        }
        if layout.writable_bytes == 0 {
            return Completion::failed(0, RequestError::NoStatus);
        }
        // Both constructors only fail on memory checked above.
        let (mut reader, mut writer) = match (chain.clone().reader(mem), chain.writer(mem)) {
            (Ok(r), Ok(w)) => (r, w),
            _ => return Completion::failed(0, ChainError::Empty { head: layout.head }.into()),
        };
        let Ok(mut status) = writer.split_at(layout.writable_bytes as usize - 1) else {
            return Completion::failed(0, RequestError::NoStatus);
        };
        let result = self.execute(&mut reader, &mut writer);
        if let Err(e @ RequestError::DiskFull(_)) = result {
            return Completion::failed(0, e);
        }
        let code = match &result {
            Ok(()) => VIRTIO_BLK_S_OK as u8,
            Err(e) => e.status(),
        };
        let status_written = status.write_all(&[code]).is_ok() as usize;
        Completion {
            used: (writer.bytes_written() + status_written) as u32,
            error: result.err(),
        }
    }

    fn execute(&mut self, r: &mut Reader, w: &mut Writer) -> Result<(), RequestError> {
        let mut header = [0u8; HEADER_SIZE];
        if r.available_bytes() < HEADER_SIZE {
            return Err(RequestError::ShortHeader(r.available_bytes()));
        }
        r.read_exact(&mut header)
            .map_err(RequestError::GuestMemory)?;
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(header[8..16].try_into().unwrap());
        match kind {
            VIRTIO_BLK_T_IN => {
                nothing_left(r.available_bytes())?;
                self.read(sector, w)
            }
            VIRTIO_BLK_T_OUT => {
                nothing_left(w.available_bytes())?;
                if self.read_only {
                    return Err(RequestError::ReadOnly);
                }
                self.write(sector, r).map_err(RequestError::or_disk_full)
            }
            VIRTIO_BLK_T_FLUSH if !self.read_only => self.flush(),
            VIRTIO_BLK_T_FLUSH => Ok(()),
            VIRTIO_BLK_T_GET_ID => {
                let n = w.available_bytes().min(self.id.len());
                w.write_all(&self.id[..n])
                    .map_err(RequestError::GuestMemory)
            }
            VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES if !self.read_only => self
                .discard_or_zero(kind, r)
                .map_err(RequestError::or_disk_full),
            other => Err(RequestError::Unsupported(other)),
        }
    }

    /// Once fdatasync fails, the kernel may have dropped the dirty pages it could not
    /// write and will not say so again: a later flush that succeeds would tell the
    /// guest data is safe that is lost. So the failure latches.
    fn flush(&mut self) -> Result<(), RequestError> {
        if self.flush_failed {
            return Err(RequestError::FlushLatched);
        }
        self.file.sync_data().map_err(|e| {
            self.flush_failed = true;
            RequestError::FlushFailed(e)
        })
    }

    /// Byte offset of `count` bytes at `sector`, if they are whole sectors on the disk.
    fn locate(&self, sector: u64, bytes: u64) -> Result<u64, RequestError> {
        if bytes % SECTOR_SIZE != 0 {
            return Err(RequestError::Unaligned(bytes as usize));
        }
        let count = bytes >> SECTOR_SHIFT;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(sector << SECTOR_SHIFT),
            _ => Err(RequestError::OutOfRange {
                sector,
                count,
                capacity: self.sectors,
            }),
        }
    }

    fn read(&mut self, sector: u64, w: &mut Writer) -> Result<(), RequestError> {
        let mut left = w.available_bytes();
        let mut offset = self.locate(sector, left as u64)?;
        while left > 0 {
            let n = left.min(self.bounce.len());
            self.file.read_exact_at(&mut self.bounce[..n], offset)?;
            w.write_all(&self.bounce[..n])
                .map_err(RequestError::GuestMemory)?;
            left -= n;
            offset += n as u64;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, r: &mut Reader) -> Result<(), RequestError> {
        let mut left = r.available_bytes();
        let mut offset = self.locate(sector, left as u64)?;
        while left > 0 {
            let n = left.min(self.bounce.len());
            r.read_exact(&mut self.bounce[..n])
                .map_err(RequestError::GuestMemory)?;
            self.file.write_all_at(&self.bounce[..n], offset)?;
            left -= n;
            offset += n as u64;
        }
        Ok(())
    }

    /// Checks every segment before acting on any, so a bad one fails the request
    /// without half of it done.
    fn discard_or_zero(&mut self, kind: u32, r: &mut Reader) -> Result<(), RequestError> {
        let bytes = r.available_bytes();
        let count = bytes / SEGMENT_SIZE;
        if bytes % SEGMENT_SIZE != 0 || count == 0 || count > MAX_DISCARD_SEG as usize {
            return Err(RequestError::BadSegments(bytes));
        }
        let allowed_flags = match kind {
            VIRTIO_BLK_T_WRITE_ZEROES => VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
            _ => 0,
        };
        let mut ranges = Vec::with_capacity(count);
        for _ in 0..count {
            let mut seg = [0u8; SEGMENT_SIZE];
            r.read_exact(&mut seg).map_err(RequestError::GuestMemory)?;
            let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap());
            let sectors = u32::from_le_bytes(seg[8..12].try_into().unwrap());
            let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap());
            if flags & !allowed_flags != 0 {
                return Err(RequestError::BadFlags(flags));
            }
            if sectors > MAX_DISCARD_SECTORS {
                return Err(RequestError::SegmentTooLarge(sectors));
            }
            let len = u64::from(sectors) << SECTOR_SHIFT;
            let offset = self.locate(sector, len)?;
            ranges.push((offset, len, flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0));
        }
        for (offset, len, unmap) in ranges {
            match (kind, unmap) {
                // Discarded data may read back as anything, so a file system without
                // hole punching simply keeps it.
                (VIRTIO_BLK_T_DISCARD, _) => match punch_hole(&self.file, offset, len) {
                    Err(e) if unsupported(&e) => {}
                    other => other?,
                },
                (_, true) => self.zero(offset, len, true)?,
                (_, false) => self.zero(offset, len, false)?,
            }
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` read back as zeroes: by punching a hole when the
    /// guest allows unmapping, else by zeroing the range in place (which keeps its
    /// blocks allocated); plain zero writes when the file system can do neither.
    fn zero(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        let mut result = match unmap {
            true => punch_hole(&self.file, offset, len),
            false => fallocate(
                &self.file,
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            ),
        };
        if matches!(&result, Err(e) if unsupported(e)) && !unmap {
            // tmpfs, for one, punches holes but cannot zero a range.
            result = punch_hole(&self.file, offset, len);
        }
        match result {
            Err(e) if unsupported(&e) => {}
            other => return other,
        }
        self.bounce.fill(0);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(self.bounce.len() as u64) as usize;
            self.file.write_all_at(&self.bounce[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

impl Completion {
    fn failed(used: u32, error: RequestError) -> Completion {
        Completion {
            used,
            error: Some(error),
        }
    }
}

fn nothing_left(bytes: usize) -> Result<(), RequestError> {
    match bytes {
        0 => Ok(()),
        n => Err(RequestError::WrongDirection(n)),
    }
}

fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(
        file,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )
}

fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // Offsets and lengths come from checked sector ranges: far below i64::MAX.
    // SAFETY: plain syscall on an fd `file` owns; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
    )
}

/// A serial number that stays the same for the same image file: "hvbox-" and 14 hex
/// digits of a hash of its device and inode (20 bytes, the virtio-blk id size).
fn disk_id(dev: u64, ino: u64) -> [u8; VIRTIO_BLK_ID_BYTES as usize] {
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in dev.to_le_bytes().into_iter().chain(ino.to_le_bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
    }
    let text = format!("hvbox-{:014x}", hash & ((1 << 56) - 1));
    text.as_bytes().try_into().expect("20 bytes")
}

/// What the guest saw of a disk: the features offered and the configuration space
/// (capacity, limits). A restored machine must find the same disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    pub features: u64,
    pub config: Vec<u8>,
}

/// The virtio-blk device: one request queue over one [`Disk`].
pub struct Block {
    /// Here while no worker runs; the worker owns it while the device is active.
    disk: Option<Disk>,
    health: Arc<DiskHealth>,
    worker: Option<Worker<(Disk, ActiveQueue)>>,
    features: u64,
    config: Vec<u8>,
}

impl Block {
    pub fn new(path: &Path, read_only: bool) -> io::Result<Block> {
        let disk = Disk::open(path, read_only)?;
        let health = Arc::new(DiskHealth::new(path)?);
        let mut features = 1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_FLUSH;
        features |= match read_only {
            true => 1 << VIRTIO_BLK_F_RO,
            // Discarding or zeroing a read-only disk would be a write.
            false => 1 << VIRTIO_BLK_F_DISCARD | 1 << VIRTIO_BLK_F_WRITE_ZEROES,
        };
        let mut config = vec![0u8; std::mem::size_of::<virtio_blk_config>()];
        let put32 =
            |c: &mut Vec<u8>, offset: usize, v: u32| config_space::put(c, offset, v.to_le_bytes());
        config_space::put(
            &mut config,
            offset_of!(virtio_blk_config, capacity),
            disk.sectors.to_le_bytes(),
        );
        put32(
            &mut config,
            offset_of!(virtio_blk_config, size_max),
            SIZE_MAX,
        );
        put32(&mut config, offset_of!(virtio_blk_config, seg_max), SEG_MAX);
        put32(
            &mut config,
            offset_of!(virtio_blk_config, blk_size),
            SECTOR_SIZE as u32,
        );
        for (field, value) in [
            (
                offset_of!(virtio_blk_config, max_discard_sectors),
                MAX_DISCARD_SECTORS,
            ),
            (
                offset_of!(virtio_blk_config, max_discard_seg),
                MAX_DISCARD_SEG,
            ),
            (
                offset_of!(virtio_blk_config, discard_sector_alignment),
                disk.discard_alignment,
            ),
            (
                offset_of!(virtio_blk_config, max_write_zeroes_sectors),
                MAX_DISCARD_SECTORS,
            ),
            (
                offset_of!(virtio_blk_config, max_write_zeroes_seg),
                MAX_DISCARD_SEG,
            ),
        ] {
            put32(&mut config, field, value);
        }
        config[offset_of!(virtio_blk_config, write_zeroes_may_unmap)] = 1;
        Ok(Block {
            disk: Some(disk),
            health,
            worker: None,
            features,
            config,
        })
    }

    /// Whether the guest's I/O to this disk waits for space; shared with the VMM's
    /// control socket.
    pub fn health(&self) -> Arc<DiskHealth> {
        Arc::clone(&self.health)
    }

    fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            match worker.stop() {
                Some((disk, _)) => self.disk = Some(disk),
                None => eprintln!("vmm: virtio-blk: the worker thread panicked; disk lost"),
            }
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_BLOCK as u16
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        config_space::read(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Every field we offer is read-only (no CONFIG_WCE).
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.stop_worker();
        let [mut queue] = take_queues(activation.queues)?;
        let mut disk = self
            .disk
            .take()
            .ok_or_else(|| io::Error::other("the disk was lost with an earlier worker"))?;
        let (mem, interrupt) = (activation.memory, activation.interrupt);
        let health = Arc::clone(&self.health);
        let worker = Worker::spawn(crate::confine::ThreadKind::VirtioBlk, move |stop| {
            let served = queue_loop::run(stop, mem, &mut queue, &*interrupt, &mut disk, &health);
            if let Err(e) = served {
                eprintln!("vmm: virtio-blk: worker stopped: {e}");
            }
            (disk, queue)
        })?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn save_state(&self) -> Result<DeviceState, String> {
        Ok(DeviceState::Block(BlockState {
            features: self.features,
            config: self.config.clone(),
        }))
    }

    fn restore_state(&mut self, state: &DeviceState) -> Result<(), String> {
        let DeviceState::Block(saved) = state else {
            return Err("the saved device is not a disk".into());
        };
        if saved.features != self.features {
            return Err(format!(
                "the disk offered features {:#x} when saved, {:#x} now (read-only changed?)",
                saved.features, self.features
            ));
        }
        if saved.config != self.config {
            let sectors = |c: &[u8]| {
                c.get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                    .unwrap_or(0)
            };
            return Err(format!(
                "the disk's configuration differs: {} sectors when saved, {} now",
                sectors(&saved.config),
                sectors(&self.config)
            ));
        }
        Ok(())
    }

    fn pause(&mut self) -> Result<PausedQueues, String> {
        let Some(worker) = self.worker.take() else {
            return Ok(Vec::new());
        };
        let (disk, active) = worker
            .pause()
            .ok_or("the worker thread panicked; disk lost")?;
        self.disk = Some(disk);
        Ok(vec![(active.index, active.queue)])
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

mod health;
mod image_lock;
mod queue_loop;

pub use health::DiskHealth;

#[cfg(test)]
mod host_trouble_tests;
#[cfg(test)]
mod tests;
