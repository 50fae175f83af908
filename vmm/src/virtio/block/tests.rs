use super::*;
use crate::virtio::device::ActiveQueue;
use crate::virtio::test_util::{desc, CountingInterrupt, TestQueue, R, W};
use crate::virtio::worker::{drain_queue, ErrorLog};
use std::sync::Arc;
use virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::QueueT;
use vm_memory::ByteValued;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x1f000;
const UNTOUCHED: u8 = 0xee;

/// A disk image of `sectors` sectors; sector n is filled with byte n.
fn image(sectors: u64) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..sectors)
        .flat_map(|n| [n as u8; SECTOR_SIZE as usize])
        .collect();
    f.as_file().write_all_at(&data, 0).unwrap();
    f
}

fn header(t: &TestQueue, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    t.write(HDR, &h);
    t.write(STATUS, &[UNTOUCHED]);
}

/// Offers `descs` as one chain and serves it; returns the completion and status byte.
fn serve(t: &TestQueue, disk: &mut Disk, descs: &[RawDescriptor]) -> (Completion, u8) {
    t.add_chain(descs);
    let done = disk.serve(t.mem, t.pop().unwrap());
    (done, t.read(STATUS, 1)[0])
}

fn request(
    t: &TestQueue,
    disk: &mut Disk,
    kind: u32,
    sector: u64,
    data: RawDescriptor,
) -> (Completion, u8) {
    header(t, kind, sector);
    serve(t, disk, &[desc(HDR, 16, R), data, desc(STATUS, 1, W)])
}

fn segment(sector: u64, sectors: u32, flags: u32) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[0..8].copy_from_slice(&sector.to_le_bytes());
    s[8..12].copy_from_slice(&sectors.to_le_bytes());
    s[12..16].copy_from_slice(&flags.to_le_bytes());
    s
}

fn allocated_blocks(f: &tempfile::NamedTempFile) -> u64 {
    f.as_file().sync_all().unwrap();
    f.as_file().metadata().unwrap().blocks()
}

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

#[test]
fn read_copies_sectors_into_guest_buffers() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_IN, 2, desc(DATA, 1024, W));
    assert!(done.error.is_none(), "{:?}", done.error);
    assert_eq!((status, done.used), (OK, 1025));
    assert_eq!(t.read(DATA, 512), vec![2u8; 512]);
    assert_eq!(t.read(DATA + 512, 512), vec![3u8; 512]);
}

#[test]
fn read_spans_many_descriptors_and_the_bounce_buffer() {
    // 640 KiB over 5 descriptors: more than the 256 KiB bounce buffer.
    let f = image(1280);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    header(&t, VIRTIO_BLK_T_IN, 0);
    let mut descs = vec![desc(HDR, 16, R)];
    descs.extend((0..5).map(|i| desc(0x100000 + i * 0x20000, 0x20000, W)));
    descs.push(desc(STATUS, 1, W));
    let (done, status) = serve(&t, &mut disk, &descs);
    assert_eq!((status, done.used), (OK, 640 * 1024 + 1));
    assert_eq!(
        t.read(0x100000 + 700 * 512, 512),
        vec![(700 % 256) as u8; 512]
    );
}

#[test]
fn write_stores_guest_data() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    t.write(DATA, &[0xab; 512]);
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_OUT, 5, desc(DATA, 512, R));
    assert_eq!((status, done.used), (OK, 1));
    let mut back = [0u8; 512];
    f.as_file().read_exact_at(&mut back, 5 * 512).unwrap();
    assert_eq!(back, [0xab; 512]);
}

#[test]
fn flush_succeeds() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    header(&t, VIRTIO_BLK_T_FLUSH, 0);
    let (done, status) = serve(&t, &mut disk, &[desc(HDR, 16, R), desc(STATUS, 1, W)]);
    assert_eq!((status, done.used), (OK, 1));
}

#[test]
fn get_id_is_twenty_stable_bytes_per_image() {
    let f = image(8);
    let t = TestQueue::new();
    let mut ids = Vec::new();
    for path in [f.path(), f.path(), image(8).path()] {
        let mut disk = Disk::open(path, true).unwrap();
        let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_GET_ID, 0, desc(DATA, 20, W));
        assert_eq!((status, done.used), (OK, 21));
        ids.push(t.read(DATA, 20));
    }
    assert!(ids[0].starts_with(b"hvbox-"));
    assert_eq!(ids[0], ids[1], "same image, same id");
    assert_ne!(ids[0], ids[2], "another image, another id");
}

#[test]
fn discard_punches_holes_so_the_image_shrinks() {
    let f = image(2048); // 1 MiB, all allocated
    let before = allocated_blocks(&f);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    t.write(DATA, &segment(0, 1024, 0));
    t.write(DATA + 16, &segment(1024, 512, 0));
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_DISCARD, 0, desc(DATA, 32, R));
    assert!(done.error.is_none(), "{:?}", done.error);
    assert_eq!(status, OK);
    let after = allocated_blocks(&f);
    assert!(after + 1536 <= before, "blocks {before} -> {after}");
    assert_eq!(f.as_file().metadata().unwrap().len(), 1 << 20, "size kept");
    let mut tail = [0u8; 512];
    f.as_file().read_exact_at(&mut tail, 2047 * 512).unwrap();
    assert_eq!(tail, [(2047 % 256) as u8; 512], "undiscarded data kept");
}

#[test]
fn write_zeroes_reads_back_zeroes_with_and_without_unmap() {
    for flags in [0, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP] {
        let f = image(64);
        let before = allocated_blocks(&f);
        let mut disk = Disk::open(f.path(), false).unwrap();
        let t = TestQueue::new();
        t.write(DATA, &segment(8, 32, flags));
        let (done, status) = request(
            &t,
            &mut disk,
            VIRTIO_BLK_T_WRITE_ZEROES,
            0,
            desc(DATA, 16, R),
        );
        assert!(done.error.is_none(), "{:?}", done.error);
        assert_eq!(status, OK);
        let mut back = vec![0xffu8; 32 * 512];
        f.as_file().read_exact_at(&mut back, 8 * 512).unwrap();
        assert!(back.iter().all(|&b| b == 0), "flags {flags}");
        let mut next = [0u8; 512];
        f.as_file().read_exact_at(&mut next, 40 * 512).unwrap();
        assert_eq!(next, [40; 512]);
        if flags != 0 {
            assert!(allocated_blocks(&f) < before, "unmap frees blocks");
        }
    }
}

#[test]
fn read_only_disks_refuse_writes_and_discards() {
    let f = image(8);
    let block = Block::new(f.path(), true).unwrap();
    assert_ne!(block.features() & 1 << VIRTIO_BLK_F_RO, 0);
    assert_eq!(block.features() & 1 << VIRTIO_BLK_F_DISCARD, 0);
    let mut disk = Disk::open(f.path(), true).unwrap();
    let t = TestQueue::new();
    t.write(DATA, &[0xab; 512]);
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_OUT, 1, desc(DATA, 512, R));
    assert!(matches!(done.error, Some(RequestError::ReadOnly)));
    assert_eq!(status, IOERR);
    t.write(DATA, &segment(0, 8, 0));
    for kind in [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES] {
        let (_, status) = request(&t, &mut disk, kind, 0, desc(DATA, 16, R));
        assert_eq!(status, UNSUPP);
    }
    let mut back = [0u8; 512];
    f.as_file().read_exact_at(&mut back, 512).unwrap();
    assert_eq!(back, [1; 512], "image unchanged");
    let (_, status) = request(&t, &mut disk, VIRTIO_BLK_T_IN, 1, desc(DATA, 512, W));
    assert_eq!(status, OK);
}

#[test]
fn config_describes_the_disk() {
    // 4000 bytes: 7 whole sectors, the tail rounded off.
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(4000).unwrap();
    let block = Block::new(f.path(), false).unwrap();
    let mut b8 = [0u8; 8];
    block.read_config(0, &mut b8);
    assert_eq!(u64::from_le_bytes(b8), 7);
    let mut b4 = [0u8; 4];
    block.read_config(offset_of!(virtio_blk_config, blk_size) as u64, &mut b4);
    assert_eq!(u32::from_le_bytes(b4), 512);
    block.read_config(offset_of!(virtio_blk_config, seg_max) as u64, &mut b4);
    assert_eq!(u32::from_le_bytes(b4), SEG_MAX);
    block.read_config(
        offset_of!(virtio_blk_config, max_discard_seg) as u64,
        &mut b4,
    );
    assert_eq!(u32::from_le_bytes(b4), MAX_DISCARD_SEG);
    let expected = [
        VIRTIO_F_VERSION_1,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_SIZE_MAX,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
    ]
    .iter()
    .fold(0u64, |f, b| f | 1 << b);
    assert_eq!(block.features(), expected);
    // The block device's lock on the image goes with it.
    drop(block);

    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_IN, 7, desc(DATA, 512, W));
    assert!(matches!(done.error, Some(RequestError::OutOfRange { .. })));
    assert_eq!(status, IOERR);
}

// Malformed requests: each fails alone, with IOERR/UNSUPP when the status byte is
// usable, else with nothing written.

#[test]
fn data_buffer_outside_memory_fails_with_ioerr() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    let end = t.mem_size();
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_IN, 0, desc(end - 256, 512, W));
    assert!(matches!(
        done.error,
        Some(RequestError::Chain(ChainError::OutsideMemory { .. }))
    ));
    assert_eq!((status, done.used), (IOERR, 1));
    // An address whose end wraps around 2^64.
    let (done, status) = request(
        &t,
        &mut disk,
        VIRTIO_BLK_T_IN,
        0,
        desc(u64::MAX - 10, 512, W),
    );
    assert!(done.error.is_some());
    assert_eq!(status, IOERR);
}

#[test]
fn status_outside_memory_writes_nothing() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    header(&t, VIRTIO_BLK_T_IN, 0);
    let (done, status) = serve(
        &t,
        &mut disk,
        &[
            desc(HDR, 16, R),
            desc(DATA, 512, W),
            desc(t.mem_size(), 1, W),
        ],
    );
    assert!(done.error.is_some());
    assert_eq!((status, done.used), (UNTOUCHED, 0));
}

#[test]
fn lengths_that_overflow_fail_without_a_status() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    header(&t, VIRTIO_BLK_T_IN, 0);
    let (done, status) = serve(
        &t,
        &mut disk,
        &[
            desc(HDR, 16, R),
            desc(DATA, u32::MAX, W),
            desc(STATUS, 1, W),
        ],
    );
    assert!(matches!(done.error, Some(RequestError::Chain(_))));
    assert_eq!((status, done.used), (UNTOUCHED, 0));
}

#[test]
fn data_in_the_wrong_direction_fails_with_ioerr() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    // A read whose data buffer the device could only read from.
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_IN, 0, desc(DATA, 512, R));
    assert!(matches!(
        done.error,
        Some(RequestError::WrongDirection(512))
    ));
    assert_eq!((status, done.used), (IOERR, 1));
    // A write whose data buffer is device-writable.
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_OUT, 0, desc(DATA, 512, W));
    assert!(matches!(
        done.error,
        Some(RequestError::WrongDirection(512))
    ));
    assert_eq!(status, IOERR);
    let mut back = [0u8; 512];
    f.as_file().read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, [0; 512]);
    // A device-writable header followed by readable data.
    header(&t, VIRTIO_BLK_T_OUT, 0);
    let (done, status) = serve(
        &t,
        &mut disk,
        &[desc(HDR, 16, W), desc(DATA, 512, R), desc(STATUS, 1, W)],
    );
    assert!(matches!(
        done.error,
        Some(RequestError::Chain(
            ChainError::ReadableAfterWritable { .. }
        ))
    ));
    assert_eq!((status, done.used), (UNTOUCHED, 0));
}

#[test]
fn a_missing_status_descriptor_fails_the_request() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    // Header only: nothing writable at all.
    header(&t, VIRTIO_BLK_T_FLUSH, 0);
    let (done, _) = serve(&t, &mut disk, &[desc(HDR, 16, R)]);
    assert!(matches!(done.error, Some(RequestError::NoStatus)));
    assert_eq!(done.used, 0);
    // A read without a status descriptor: its last data byte is taken as the
    // status, leaving 511 data bytes, which is not whole sectors.
    header(&t, VIRTIO_BLK_T_IN, 0);
    let (done, _) = serve(&t, &mut disk, &[desc(HDR, 16, R), desc(DATA, 512, W)]);
    assert!(matches!(done.error, Some(RequestError::Unaligned(511))));
    assert_eq!(t.read(DATA + 511, 1)[0], IOERR);
}

#[test]
fn a_short_header_fails_with_ioerr() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    header(&t, VIRTIO_BLK_T_IN, 0);
    let (done, status) = serve(&t, &mut disk, &[desc(HDR, 8, R), desc(STATUS, 1, W)]);
    assert!(matches!(done.error, Some(RequestError::ShortHeader(8))));
    assert_eq!(status, IOERR);
}

#[test]
fn loops_and_overlong_chains_fail_without_a_status() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    header(&t, VIRTIO_BLK_T_IN, 0);
    // 0 -> 1 -> 2 -> 1 -> ...
    t.add_raw(
        &[
            RawDescriptor::from(Descriptor::new(HDR, 16, 1, 1)),
            RawDescriptor::from(Descriptor::new(DATA, 512, 1 | W, 2)),
            RawDescriptor::from(Descriptor::new(STATUS, 1, 1 | W, 1)),
        ],
        0,
    );
    let done = disk.serve(t.mem, t.pop().unwrap());
    assert!(matches!(done.error, Some(RequestError::Chain(_))));
    assert_eq!((t.read(STATUS, 1)[0], done.used), (UNTOUCHED, 0));

    // Without indirect descriptors a chain cannot outgrow the queue; with them (not
    // offered, but a driver may use them anyway) it can.
    let table = 0x40000;
    let n = SEG_MAX as u64 + 3;
    for i in 0..n {
        let (addr, len, flags) = match i {
            0 => (HDR, 16, 0),
            i if i == n - 1 => (STATUS, 1, W),
            i => (DATA + i * 512, 512, W),
        };
        let next_flag = if i == n - 1 { 0 } else { 1 };
        let d = Descriptor::new(addr, len, flags | next_flag, (i + 1) as u16);
        t.write(table + i * 16, RawDescriptor::from(d).as_slice());
    }
    let indirect = Descriptor::new(table, (n * 16) as u32, VRING_DESC_F_INDIRECT as u16, 0);
    t.add_raw(&[RawDescriptor::from(indirect)], 10);
    t.write(STATUS, &[UNTOUCHED]);
    let done = disk.serve(t.mem, t.pop().unwrap());
    let status = t.read(STATUS, 1)[0];
    assert!(matches!(
        done.error,
        Some(RequestError::Chain(ChainError::TooManyDescriptors { .. }))
    ));
    assert_eq!((status, done.used), (UNTOUCHED, 0));
}

#[test]
fn oversized_and_unknown_requests_fail() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    header(&t, VIRTIO_BLK_T_IN, 0);
    let (done, _) = serve(
        &t,
        &mut disk,
        &[
            desc(HDR, 16, R),
            desc(0, (MAX_DATA + 4096) as u32, W),
            desc(STATUS, 1, W),
        ],
    );
    assert!(matches!(
        done.error,
        Some(RequestError::Chain(ChainError::TooLarge { .. }))
    ));
    let (done, status) = request(&t, &mut disk, 99, 0, desc(DATA, 512, W));
    assert!(matches!(done.error, Some(RequestError::Unsupported(99))));
    assert_eq!(status, UNSUPP);
    t.write(DATA, &segment(0, 8, 1));
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_DISCARD, 0, desc(DATA, 16, R));
    assert!(matches!(done.error, Some(RequestError::BadFlags(1))));
    assert_eq!(status, UNSUPP);
    t.write(DATA, &segment(4, 8, 0));
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_DISCARD, 0, desc(DATA, 16, R));
    assert!(matches!(done.error, Some(RequestError::OutOfRange { .. })));
    assert_eq!(status, IOERR);
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_DISCARD, 0, desc(DATA, 15, R));
    assert!(matches!(done.error, Some(RequestError::BadSegments(15))));
    assert_eq!(status, IOERR);
    let (done, status) = request(&t, &mut disk, VIRTIO_BLK_T_IN, u64::MAX, desc(DATA, 512, W));
    assert!(matches!(done.error, Some(RequestError::OutOfRange { .. })));
    assert_eq!(status, IOERR);
}

#[test]
fn a_head_index_past_the_queue_is_dropped_quietly() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    t.add_chain(&[desc(HDR, 16, R)]);
    // Point the avail ring entry at descriptor 300 of a 256-entry table.
    t.write(t.queue().avail_ring() + 4, &300u16.to_le_bytes());
    let mut q = t.queue();
    let mut log = ErrorLog::new("test");
    let notify = drain_queue(t.mem, &mut q, &mut log, |chain, _| {
        disk.serve(t.mem, chain).used
    });
    assert!(!notify);
    assert_eq!(t.used_idx(), 0);
}

#[test]
fn a_corrupt_avail_index_does_not_spin() {
    let f = image(8);
    let mut disk = Disk::open(f.path(), false).unwrap();
    let t = TestQueue::new();
    let q0 = t.queue();
    t.write(q0.avail_ring() + 2, &1000u16.to_le_bytes());
    let mut q = t.queue();
    let mut log = ErrorLog::new("test");
    assert!(!drain_queue(t.mem, &mut q, &mut log, |chain, _| disk
        .serve(t.mem, chain)
        .used));
}

pub(super) fn activation(
    t: &TestQueue,
    irq: &Arc<CountingInterrupt>,
    kick: &EventFd,
    features: u64,
) -> Activation {
    Activation {
        memory: t.mem.clone(),
        queues: vec![ActiveQueue {
            index: 0,
            queue: t.queue(),
            kick: kick.try_clone().unwrap(),
        }],
        interrupt: irq.clone(),
        features,
    }
}

#[test]
fn the_worker_serves_kicks_and_survives_reset() {
    let f = image(8);
    let mut block = Block::new(f.path(), false).unwrap();
    let t = TestQueue::new();
    let irq = Arc::new(CountingInterrupt::default());
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let act = activation(&t, &irq, &kick, block.features());
    block.activate(act).unwrap();
    header(&t, VIRTIO_BLK_T_IN, 3);
    t.add_chain(&[desc(HDR, 16, R), desc(DATA, 512, W), desc(STATUS, 1, W)]);
    kick.write(1).unwrap();
    irq.wait_for("the read to complete", || irq.queue_count(0) >= 1);
    assert_eq!(t.used_idx(), 1);
    assert_eq!(t.used(0).1, 513);
    assert_eq!(t.read(STATUS, 1)[0], OK);
    assert_eq!(t.read(DATA, 512), vec![3; 512]);

    // After a reset the disk is back and a new activation works.
    block.reset();
    let t2 = TestQueue::new();
    block
        .activate(activation(&t2, &irq, &kick, block.features()))
        .unwrap();
    header(&t2, VIRTIO_BLK_T_IN, 4);
    t2.add_chain(&[desc(HDR, 16, R), desc(DATA, 512, W), desc(STATUS, 1, W)]);
    kick.write(1).unwrap();
    irq.wait_for("the second read", || irq.queue_count(0) >= 2);
    assert_eq!(t2.read(DATA, 512), vec![4; 512]);
    drop(block); // joins the worker
}

#[test]
fn activation_needs_the_request_queue() {
    let f = image(8);
    let mut block = Block::new(f.path(), false).unwrap();
    let t = TestQueue::new();
    let err = block
        .activate(Activation {
            memory: t.mem.clone(),
            queues: vec![],
            interrupt: Arc::new(CountingInterrupt::default()),
            features: 0,
        })
        .unwrap_err();
    assert!(matches!(err, ActivateError::Queues { got: 0, need: 1 }));
}
