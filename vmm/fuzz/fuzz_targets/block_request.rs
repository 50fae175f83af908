//! virtio-blk requests built from structured fuzz input: a request type, sectors
//! near the start or the end of the disk (or anywhere), discard segments, and a
//! descriptor chain that is either the usual header/data/status layout or anything
//! at all (any address, length, direction, next index, indirect flag), plus raw
//! bytes of guest memory overwritten last, rings included. Raw guest memory (as in
//! the `virtqueue` target) rarely forms a request that reaches the edge of the disk:
//! an out-of-range check loosened by 8 sectors went unnoticed for 90 s that way,
//! and was caught here within a few thousand runs.
//!
//! Checks: nothing panics; the disk file never changes size; after every request
//! the whole file matches a model of the disk (the read-only one stays zeros, and
//! the partial sector past the end is never written); and for requests in the
//! usual layout, what the guest reads back matches the model, and a request type
//! the device does not know is refused (UNSUPP).
#![no_main]

use hvbox_vmm::memory::GuestMemory;
use hvbox_vmm::virtio::block::Disk;
use hvbox_vmm::virtio::worker::{drain_queue, ErrorLog};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, OnceLock};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const SECTORS: u64 = 64;
/// 64 sectors and a partial one, which the device must not expose.
const FILE_LEN: u64 = SECTORS * 512 + 100;
const QUEUE_SIZE: u16 = 16;
const DESC_TABLE: u64 = 0;
const AVAIL: u64 = 0x100;
const USED: u64 = 0x200;
const HEADER: u64 = 0x1000;
const STATUS: u64 = 0x2000;
const DATA: u64 = 0x10000;
/// VIRTIO_BLK_S_UNSUPP: the status of a request type the device does not serve.
const UNSUPP: u8 = 2;
const MEM_A: usize = 0x40000;
/// A second region after a hole, so buffers can straddle it.
const MEM_B: (u64, usize) = (0x50000, 0x1000);

#[derive(Debug, Arbitrary)]
struct Request {
    kind: Kind,
    sector: Sector,
    segments: Vec<Segment>,
    /// The chain's descriptors; empty means header, data, status as a driver sends.
    chain: Vec<Desc>,
    data_sectors: u8,
    read_only: bool,
    corrupt: Vec<(u32, u8)>,
}

#[derive(Debug, Arbitrary, Clone, Copy, PartialEq)]
enum Kind {
    In,
    Out,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
    Other(u32),
}

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Sector {
    Start(u8),
    /// This many sectors before the end (or past it).
    End(i8),
    Any(u64),
}

#[derive(Debug, Arbitrary)]
struct Segment {
    sector: Sector,
    sectors: Count,
    flags: u32,
}

#[derive(Debug, Arbitrary)]
enum Count {
    Small(u8),
    Any(u32),
}

#[derive(Debug, Arbitrary)]
struct Desc {
    place: Place,
    len: Len,
    writable: bool,
    next: Next,
    /// Raw flag bits OR'ed in (INDIRECT among them).
    extra_flags: u8,
}

#[derive(Debug, Arbitrary)]
enum Place {
    Header,
    Data(u16),
    Status,
    Any(u64),
}

#[derive(Debug, Arbitrary)]
enum Len {
    Header,
    Sectors(u8),
    Status,
    Small(u16),
    Any(u32),
}

#[derive(Debug, Arbitrary)]
enum Next {
    Following,
    Index(u16),
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::In => 0,
            Kind::Out => 1,
            Kind::Flush => 4,
            Kind::GetId => 8,
            Kind::Discard => 11,
            Kind::WriteZeroes => 13,
            Kind::Other(n) => n,
        }
    }

    /// The request the device sees: it knows a request by its type code alone, so
    /// `Other(1)` is a write, and must be laid out and modelled as one.
    fn as_served(self) -> Kind {
        const KNOWN: [Kind; 6] = [
            Kind::In,
            Kind::Out,
            Kind::Flush,
            Kind::GetId,
            Kind::Discard,
            Kind::WriteZeroes,
        ];
        KNOWN
            .into_iter()
            .find(|known| known.code() == self.code())
            .unwrap_or(self)
    }
}

impl Sector {
    fn value(self) -> u64 {
        match self {
            Sector::Start(n) => u64::from(n),
            Sector::End(n) => SECTORS.wrapping_add_signed(-i64::from(n)),
            Sector::Any(n) => n,
        }
    }
}

struct Disks {
    rw: (tempfile::NamedTempFile, Disk),
    ro: (tempfile::NamedTempFile, Disk),
    /// What the writable disk holds, as far as completed requests tell.
    model: Vec<u8>,
}

fn disks() -> &'static Mutex<Disks> {
    static DISKS: OnceLock<Mutex<Disks>> = OnceLock::new();
    DISKS.get_or_init(|| {
        let open = |read_only| {
            let file = tempfile::NamedTempFile::new().unwrap();
            file.as_file().set_len(FILE_LEN).unwrap();
            let disk = Disk::open(file.path(), read_only).unwrap();
            assert_eq!(disk.sectors(), SECTORS);
            (file, disk)
        };
        Mutex::new(Disks {
            rw: open(false),
            ro: open(true),
            model: vec![0; (SECTORS * 512) as usize],
        })
    })
}

fn descriptor(mem: &GuestMemory, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let at = GuestAddress(DESC_TABLE + u64::from(index) * 16);
    mem.write_obj(addr, at).unwrap();
    mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
    mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
    mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
}

fuzz_target!(|req: Request| {
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_A), (GuestAddress(MEM_B.0), MEM_B.1)])
            .unwrap();
    let kind = req.kind.as_served();
    let sector = req.sector.value();
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&kind.code().to_le_bytes());
    header[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&header, GuestAddress(HEADER)).unwrap();

    let data_len = u32::from(req.data_sectors % 16) * 512;
    let data_len = match kind {
        Kind::Discard | Kind::WriteZeroes => {
            for (i, s) in req.segments.iter().take(40).enumerate() {
                let count = match s.sectors {
                    Count::Small(n) => u32::from(n),
                    Count::Any(n) => n,
                };
                let mut seg = [0u8; 16];
                seg[..8].copy_from_slice(&s.sector.value().to_le_bytes());
                seg[8..12].copy_from_slice(&count.to_le_bytes());
                seg[12..].copy_from_slice(&s.flags.to_le_bytes());
                mem.write_slice(&seg, GuestAddress(DATA + i as u64 * 16))
                    .unwrap();
            }
            req.segments.len().min(40) as u32 * 16
        }
        Kind::GetId => 20,
        _ => data_len,
    };
    if kind == Kind::Out {
        let fill: Vec<u8> = (0..data_len).map(|i| (i as u8) ^ (sector as u8)).collect();
        mem.write_slice(&fill, GuestAddress(DATA)).unwrap();
    }

    let usual = req.chain.is_empty() && req.corrupt.is_empty();
    if req.chain.is_empty() {
        const NEXT: u16 = 1;
        const WRITE: u16 = 2;
        let data_flags = match kind {
            Kind::In | Kind::GetId => WRITE,
            _ => 0,
        };
        let mut i = 0;
        descriptor(&mem, i, HEADER, 16, NEXT, 1);
        if data_len > 0 {
            i += 1;
            descriptor(&mem, i, DATA, data_len, NEXT | data_flags, i + 1);
        }
        descriptor(&mem, i + 1, STATUS, 1, WRITE, 0);
    } else {
        let n = req.chain.len().min(usize::from(QUEUE_SIZE));
        for (i, d) in req.chain.iter().take(n).enumerate() {
            let addr = match d.place {
                Place::Header => HEADER,
                Place::Data(off) => DATA + u64::from(off),
                Place::Status => STATUS,
                Place::Any(a) => a,
            };
            let len = match d.len {
                Len::Header => 16,
                Len::Sectors(s) => u32::from(s) * 512,
                Len::Status => 1,
                Len::Small(l) => u32::from(l),
                Len::Any(l) => l,
            };
            let last = i + 1 == n;
            let (has_next, next) = match d.next {
                Next::Following if last => (false, 0),
                Next::Following => (true, i as u16 + 1),
                Next::Index(x) => (true, x),
            };
            let flags = u16::from(has_next)
                | if d.writable { 2 } else { 0 }
                | u16::from(d.extra_flags) << 2;
            descriptor(&mem, i as u16, addr, len, flags, next);
        }
    }
    mem.write_obj(0u16, GuestAddress(AVAIL)).unwrap();
    mem.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap();
    mem.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap();
    mem.write_obj(0xeeu8, GuestAddress(STATUS)).unwrap();
    for &(at, byte) in req.corrupt.iter().take(64) {
        let _ = mem.write_obj(byte, GuestAddress(u64::from(at) % MEM_A as u64));
    }

    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(QUEUE_SIZE);
    q.try_set_desc_table_address(GuestAddress(DESC_TABLE))
        .unwrap();
    q.try_set_avail_ring_address(GuestAddress(AVAIL)).unwrap();
    q.try_set_used_ring_address(GuestAddress(USED)).unwrap();
    q.set_ready(true);

    let mut guard = disks().lock().unwrap();
    let disks = &mut *guard;
    let (file, disk) = if req.read_only {
        &mut disks.ro
    } else {
        &mut disks.rw
    };
    let mut log = ErrorLog::new("fuzz");
    drain_queue(&mem, &mut q, &mut log, |chain, _| {
        disk.serve(&mem, chain).used
    });
    assert_eq!(file.as_file().metadata().unwrap().len(), FILE_LEN);

    let status: u8 = mem.read_obj(GuestAddress(STATUS)).unwrap();
    if !usual && !req.read_only {
        // Some other chain may have written anything anywhere: take the disk as it is.
        file.as_file().read_exact_at(&mut disks.model, 0).unwrap();
    }
    if let (true, Kind::Other(code)) = (usual, kind) {
        // Anything else would be a request type the model knows nothing of.
        assert_eq!(status, UNSUPP, "request type {code} was not refused");
    }
    // Only called for reads and writes that succeeded, whose sectors are on the disk.
    let range = || (sector * 512) as usize..(sector * 512) as usize + data_len as usize;
    match kind {
        _ if !usual || status != 0 => {}
        Kind::In => {
            let mut got = vec![0u8; data_len as usize];
            mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
            match req.read_only {
                true => assert!(got.iter().all(|&b| b == 0), "read-only disk read data"),
                false => assert_eq!(got, disks.model[range()], "read back what was written"),
            }
        }
        Kind::Out => {
            assert!(!req.read_only, "a read-only disk took a write");
            let mut wrote = vec![0u8; data_len as usize];
            mem.read_slice(&mut wrote, GuestAddress(DATA)).unwrap();
            disks.model[range()].copy_from_slice(&wrote);
        }
        Kind::Discard | Kind::WriteZeroes => {
            assert!(!req.read_only, "a read-only disk was discarded");
            // Both punch holes or zero here (tmpfs/ext4): the ranges read as zero.
            for s in req.segments.iter().take(40) {
                let count = match s.sectors {
                    Count::Small(n) => u64::from(n),
                    Count::Any(n) => u64::from(n),
                };
                let start = (s.sector.value() * 512) as usize;
                disks.model[start..start + (count * 512) as usize].fill(0);
            }
        }
        _ => {}
    }
    // The whole file, after every request (a failed one changes nothing): a write
    // the model missed shows at once, not only if a later read covers its sectors
    // (an unknown type code that was a write went 5 minutes unseen that way).
    let mut on_disk = vec![0u8; FILE_LEN as usize];
    file.as_file().read_exact_at(&mut on_disk, 0).unwrap();
    // Nothing writes the read-only disk: it stays as created, all zeros.
    static ZEROS: [u8; SECTORS as usize * 512] = [0; SECTORS as usize * 512];
    let expected: &[u8] = if req.read_only { &ZEROS } else { &disks.model };
    let wrong: Vec<usize> = (on_disk.chunks(512).zip(expected.chunks(512)))
        .enumerate()
        .filter(|(_, (got, model))| got != model)
        .map(|(s, _)| s)
        .collect();
    assert!(
        wrong.is_empty(),
        "after a {kind:?} request (status {status}) the disk's sectors {wrong:?} are not what the model holds"
    );
    let tail = &on_disk[SECTORS as usize * 512..];
    assert!(
        tail.iter().all(|&b| b == 0),
        "the partial sector was written"
    );
});
