//! Host trouble on real file systems: a tmpfs that fills up under a disk image, and
//! a loop device whose backing file cannot take its writeback (fdatasync fails for
//! real). Both need root (mount, losetup), as CI has; elsewhere they skip, saying so.

use super::*;
use crate::machine::status_line;
use crate::virtio::test_util::{desc, CountingInterrupt, TestQueue, R, W};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use virtio_queue::QueueT;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNTOUCHED: u8 = 0xee;

/// `program`'s output; None, with the test skipped (or failed where every test must
/// run), when it cannot run or fails.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            hvbox_test_support::skip(format!(
                "`{program} {}` failed (it needs root): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Err(e) => {
            hvbox_test_support::skip(format!("cannot run {program}: {e}"));
            return None;
        }
    };
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A tmpfs of a few MiB mounted for the test, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn new(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path],
        )?;
        Some(SmallFs { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file until the file system is full.
    fn fill(&self, name: &str) {
        let mut f = File::create(self.path(name)).unwrap();
        let chunk = vec![0x11u8; 64 << 10];
        loop {
            match f.write(&chunk) {
                Ok(n) if n > 0 => {}
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the file system: {e}"),
            }
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Lays out one request chain at `base`: header, data, status (the last byte).
fn request(t: &TestQueue, base: u64, kind: u32, sector: u64, data: &[u8], dir: u16) -> u64 {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    t.write(base, &h);
    let status = base + 0x100;
    t.write(status, &[UNTOUCHED]);
    let data_at = base + 0x1000;
    let mut descs = vec![desc(base, 16, R)];
    // Descriptors of at most 128 KiB, as the driver would make (size_max).
    for (i, part) in data.chunks(128 << 10).enumerate() {
        let at = data_at + (i as u64) * (128 << 10);
        if dir == R {
            t.write(at, part);
        }
        descs.push(desc(at, part.len() as u32, dir));
    }
    descs.push(desc(status, 1, W));
    t.add_chain(&descs);
    status
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An active disk whose image is sparse and larger than its file system, which is
/// full: writes into holes need blocks it does not have.
struct FullDisk {
    image: std::path::PathBuf,
    block: Block,
    health: Arc<DiskHealth>,
    t: TestQueue,
    irq: Arc<CountingInterrupt>,
    kick: EventFd,
}

impl FullDisk {
    fn on(fs: &SmallFs) -> FullDisk {
        let image = fs.path("disk.raw");
        File::create(&image).unwrap().set_len(32 << 20).unwrap();
        let mut block = Block::new(&image, false).unwrap();
        let health = block.health();
        let t = TestQueue::new();
        let irq = Arc::new(CountingInterrupt::default());
        let kick = EventFd::new(EFD_NONBLOCK).unwrap();
        block
            .activate(super::tests::activation(&t, &irq, &kick, block.features()))
            .unwrap();
        fs.fill("filler");
        FullDisk {
            image,
            block,
            health,
            t,
            irq,
            kick,
        }
    }
}

#[test]
fn a_write_to_a_full_disk_waits_for_space_then_completes() {
    let Some(fs) = SmallFs::new("8M") else {
        return;
    };
    let FullDisk {
        image,
        mut block,
        health,
        t,
        irq,
        kick,
    } = FullDisk::on(&fs);

    let data = vec![0x5au8; 256 << 10];
    let write_status = request(&t, 0x10000, VIRTIO_BLK_T_OUT, 4096, &data, R);
    kick.write(1).unwrap();
    wait_until("the disk to be reported full", || health.paused().is_some());
    let paused = health.paused().unwrap();
    assert!(
        paused.starts_with(&format!("disk full on {} (", image.display())),
        "{paused}"
    );
    assert_eq!(
        status_line(std::slice::from_ref(&health)),
        format!("running; paused: {paused}")
    );
    // The write is held, not failed; and the queue waits behind it: a read offered
    // after it is not served either.
    let read_status = request(&t, 0x80000, VIRTIO_BLK_T_IN, 0, &[0u8; 512], W);
    kick.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.used_idx(), 0);
    assert_eq!(t.read(write_status, 1)[0], UNTOUCHED);
    assert_eq!(irq.queue_count(0), 0);

    // Space comes back: within the retry tick, both complete, in order, and fine.
    std::fs::remove_file(fs.path("filler")).unwrap();
    irq.wait_for("the held write and the read", || t.used_idx() == 2);
    assert_eq!(t.read(write_status, 1)[0], OK);
    assert_eq!(t.read(read_status, 1)[0], OK);
    assert_eq!(t.used(0).1, 1);
    assert_eq!(health.paused(), None);
    assert_eq!(status_line(std::slice::from_ref(&health)), "running");
    let mut back = vec![0u8; data.len()];
    File::open(&image)
        .unwrap()
        .read_exact_at(&mut back, 4096 * 512)
        .unwrap();
    assert!(back == data, "the held write's data is not on disk");

    // A second episode, ended by `resume` (as `hvbox up` sends) rather than the tick.
    fs.fill("filler");
    let again = request(&t, 0x10000, VIRTIO_BLK_T_OUT, 8192, &data, R);
    kick.write(1).unwrap();
    wait_until("the disk to be reported full again", || {
        health.paused().is_some()
    });
    std::fs::remove_file(fs.path("filler")).unwrap();
    let asked = Instant::now();
    health.resume();
    irq.wait_for("the write after resume", || t.used_idx() == 3);
    assert!(
        asked.elapsed() < queue_loop::RETRY_EVERY,
        "resume waited for the tick"
    );
    assert_eq!(t.read(again, 1)[0], OK);

    // A reset while a write is held drops it with the queue: nothing waits then.
    fs.fill("filler");
    request(&t, 0x10000, VIRTIO_BLK_T_OUT, 12288, &data, R);
    kick.write(1).unwrap();
    wait_until("the disk to be reported full a third time", || {
        health.paused().is_some()
    });
    block.reset();
    assert_eq!(health.paused(), None);
    assert_eq!(t.used_idx(), 3);
}

#[test]
fn a_pause_puts_a_held_write_back_in_the_available_ring() {
    let Some(fs) = SmallFs::new("8M") else {
        return;
    };
    let FullDisk {
        mut block,
        health,
        t,
        irq,
        image: _,
        kick,
    } = FullDisk::on(&fs);
    let status = request(&t, 0x10000, VIRTIO_BLK_T_OUT, 4096, &[0x5a; 4096], R);
    kick.write(1).unwrap();
    wait_until("the disk to be reported full", || health.paused().is_some());

    // Paused for a snapshot: the held write is neither done nor lost, but back
    // in the ring for whoever runs the queue next.
    let mut queues = block.pause().unwrap();
    assert_eq!(health.paused(), None);
    let (index, queue) = queues.pop().unwrap();
    assert_eq!((index, queue.next_avail(), queue.next_used()), (0, 0, 0));
    assert_eq!(t.read(status, 1)[0], UNTOUCHED);

    std::fs::remove_file(fs.path("filler")).unwrap();
    let mut again = super::tests::activation(&t, &irq, &kick, block.features());
    again.queues[0].queue = queue;
    block.activate(again).unwrap();
    irq.wait_for("the write after the pause", || t.used_idx() == 1);
    assert_eq!(t.read(status, 1)[0], OK);
}

/// A loop device over a file on a tiny tmpfs: the guest's writes land in the host's
/// page cache, and writing them back fails, so fdatasync fails with EIO.
struct FailingDevice {
    _fs: SmallFs,
    device: String,
}

impl FailingDevice {
    fn new() -> Option<FailingDevice> {
        let fs = SmallFs::new("1M")?;
        let backing = fs.path("backing.img");
        File::create(&backing).unwrap().set_len(16 << 20).unwrap();
        let device = run("losetup", &["--find", "--show", backing.to_str().unwrap()])?;
        Some(FailingDevice { _fs: fs, device })
    }
}

impl Drop for FailingDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

#[test]
fn a_failed_flush_fails_every_later_flush() {
    let Some(dev) = FailingDevice::new() else {
        return;
    };
    let mut disk = Disk::open(Path::new(&dev.device), false).unwrap();
    let t = TestQueue::new();
    let flush = |disk: &mut Disk| {
        let status = request(&t, 0x10000, VIRTIO_BLK_T_FLUSH, 0, &[], R);
        let done = disk.serve(t.mem, t.pop().unwrap());
        (done, t.read(status, 1)[0])
    };
    // 2 MiB for a 1 MiB file system: the write itself only fills the page cache.
    let status = request(&t, 0x10000, VIRTIO_BLK_T_OUT, 0, &vec![0x77; 2 << 20], R);
    let done = disk.serve(t.mem, t.pop().unwrap());
    assert!(done.error.is_none(), "{:?}", done.error);
    assert_eq!(t.read(status, 1)[0], OK);

    let (done, status) = flush(&mut disk);
    assert_eq!(status, IOERR);
    assert!(
        matches!(done.error, Some(RequestError::FlushFailed(_))),
        "{:?}",
        done.error
    );
    // The kernel said so once; a new fdatasync on the device finds nothing wrong,
    // though the data never reached it. That is why the failure latches.
    File::options()
        .write(true)
        .open(&dev.device)
        .unwrap()
        .sync_data()
        .unwrap();
    for _ in 0..2 {
        let (done, status) = flush(&mut disk);
        assert_eq!(status, IOERR);
        assert!(matches!(done.error, Some(RequestError::FlushLatched)));
    }
    // Reads and writes still go on; only the promise of durability is withheld.
    let status = request(&t, 0x10000, VIRTIO_BLK_T_IN, 0, &[0u8; 512], W);
    disk.serve(t.mem, t.pop().unwrap());
    assert_eq!(t.read(status, 1)[0], OK);
}
