//! The PCI bus and the virtio-pci devices as a guest sees them, on real KVM: a
//! tiny C program (tests/guests/virtio_pci.c) enumerates bus 0 through both
//! configuration mechanisms, then drives virtio-blk, virtio-rng and virtio-net
//! (against a real passt) through the modern transport, sleeping until each
//! completion's MSI-X interrupt; and it sends FUSE_INIT through virtio-fs to a real
//! virtiofsd. A write to a disk whose host file system is full waits for space
//! (the control socket says so) and completes once there is some. Skipped, with
//! the reason printed, where /dev/kvm (or for the network test passt, for the
//! virtio-fs test virtiofsd, for the disk-full test the right to mount) is missing.

use hvbox_vmm::{
    run, DiskConfig, ExitReason, FsConfig, MachineConfig, NetBackend, NetConfig, RunOptions,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "guests/support.rs"]
mod support;

use support::{build, kvm_usable, Link, Passt, Virtiofsd};

const SECTOR: usize = 512;
/// The first bytes of the test disk, which the guest must print back.
const SECTOR0: &[u8; 32] = b"hvbox virtio-blk test, sector 0!";

struct Outcome {
    exit: ExitReason,
    serial: String,
}

impl Outcome {
    /// The serial line starting with `prefix`, without it.
    fn line(&self, prefix: &str) -> &str {
        self.serial
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{}", self.serial))
    }
}

fn boot(mode: &str, disks: Vec<DiskConfig>, nics: Vec<NetConfig>) -> Outcome {
    boot_with_filesystems(mode, disks, nics, vec![])
}

fn boot_with_filesystems(
    mode: &str,
    disks: Vec<DiskConfig>,
    nics: Vec<NetConfig>,
    filesystems: Vec<FsConfig>,
) -> Outcome {
    boot_with(mode, disks, nics, filesystems, None)
}

fn boot_with(
    mode: &str,
    disks: Vec<DiskConfig>,
    nics: Vec<NetConfig>,
    filesystems: Vec<FsConfig>,
    control_socket: Option<PathBuf>,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let src = support::guests_dir(env!("CARGO_MANIFEST_DIR"), "tests/guests");
    let kernel = build(&src, "virtio_pci", Link::PvhElf, dir.path());
    let serial_log = dir.path().join("serial.log");
    let config = MachineConfig {
        cpus: 1,
        memory: 64 << 20,
        kernel,
        initrd: None,
        cmdline: mode.into(),
        disks,
        nics,
        filesystems,
        nested_virtualization: false,
        serial_log: Some(serial_log.clone()),
    };
    let options = RunOptions {
        timeout: Some(Duration::from_secs(120)),
        control_socket,
        ..Default::default()
    };
    let started = Instant::now();
    let exit = run(&config, &options).unwrap_or_else(|e| panic!("{mode}: VMM error: {e}"));
    let serial = std::fs::read_to_string(&serial_log).unwrap_or_default();
    eprintln!("{mode}: {exit} after {:?}\n{serial}", started.elapsed());
    Outcome { exit, serial }
}

/// A 1 MiB disk image whose sector 0 starts with SECTOR0.
fn disk_image(dir: &Path) -> PathBuf {
    let path = dir.join("disk.raw");
    let mut bytes = vec![0u8; 1 << 20];
    bytes[..SECTOR0.len()].copy_from_slice(SECTOR0);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn disk(path: &Path) -> DiskConfig {
    DiskConfig {
        path: path.to_owned(),
        read_only: false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn guest_enumerates_the_bus_through_cf8_and_ecam() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = disk_image(dir.path());
    let out = boot("enum", vec![disk(&image)], vec![]);
    assert_eq!(out.exit, ExitReason::Poweroff, "{}", out.serial);
    let caps = "caps 09.1 09.2 09.3 09.4 09.5 11";
    assert_eq!(
        out.serial,
        format!(
            "pci 00:00.0 1b36:0008 rev 00 class 060000 ecam ok\n\
             pci 00:01.0 1af4:1042 rev 01 class 018000 ecam ok sub 1af4:1042 \
             bar0 00000000c0000004 size 00008000 {caps}\n\
             pci 00:02.0 1af4:1044 rev 01 class ff0000 ecam ok sub 1af4:1044 \
             bar0 00000000c0008004 size 00008000 {caps}\n\
             done\n"
        )
    );
}

#[test]
fn guest_reads_and_writes_a_disk_through_virtio_blk() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = disk_image(dir.path());
    let out = boot("blk", vec![disk(&image)], vec![]);
    assert_eq!(out.exit, ExitReason::Poweroff, "{}", out.serial);
    // 1 MiB is 2048 sectors.
    assert_eq!(out.line("blk capacity "), "00000800");
    assert_eq!(
        out.line("blk read status "),
        format!("00 data {}", hex(SECTOR0))
    );
    assert_eq!(out.line("blk write status "), "00");
    let written = std::fs::read(&image).unwrap();
    let expected: Vec<u8> = (0..SECTOR).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(&written[SECTOR..2 * SECTOR], &expected[..]);
    assert_eq!(&written[..SECTOR0.len()], SECTOR0);
    // Each request completed with an interrupt the guest's handler counted.
    assert_eq!(out.line("blk irqs "), "2");
}

/// A tmpfs of a few MiB, unmounted when dropped; None (the test skipped, or failed
/// where every test must run) without the right to mount.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallFs(dir)),
            other => {
                hvbox_test_support::skip(format!("mounting a tmpfs needs root: {other:?}"));
                None
            }
        }
    }

    /// Writes `name` until the file system is full.
    fn fill(&self, name: &str) {
        let mut f = std::fs::File::create(self.0.path().join(name)).unwrap();
        let chunk = vec![0x11u8; 64 << 10];
        while matches!(f.write(&chunk), Ok(1..)) {}
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// One line asked of the VMM's control socket.
fn ask(socket: &Path, request: &str) -> String {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = writeln!(stream, "{request}");
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.trim().to_string()
}

#[test]
fn a_guest_write_to_a_full_host_disk_waits_for_space_then_completes() {
    if !kvm_usable() {
        return;
    }
    let Some(fs) = SmallFs::mount("4M") else {
        return;
    };
    // Sparse: sector 1024 is a hole, so writing it needs a new block.
    let image = fs.0.path().join("disk.raw");
    let file = std::fs::File::create(&image).unwrap();
    file.set_len(1 << 20).unwrap();
    file.write_all_at(SECTOR0, 0).unwrap();
    fs.fill("filler");
    let sockets = tempfile::tempdir().unwrap();
    let control = sockets.path().join("control.sock");
    let vm = {
        let (image, control) = (image.clone(), control.clone());
        std::thread::spawn(move || {
            boot_with("blk-far", vec![disk(&image)], vec![], vec![], Some(control))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = ask(&control, "status");
        if status.contains("paused") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "never paused; last status {status:?}"
        );
        assert!(
            !vm.is_finished(),
            "the guest ended without waiting for space"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.starts_with(&format!(
            "running; paused: disk full on {} (",
            image.display()
        )),
        "{status}"
    );
    // The guest waits for its write; it has not ended.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!vm.is_finished());

    std::fs::remove_file(fs.0.path().join("filler")).unwrap();
    let out = vm.join().unwrap();
    assert_eq!(out.exit, ExitReason::Poweroff, "{}", out.serial);
    assert_eq!(out.line("blk write status "), "00");
    let written = std::fs::read(&image).unwrap();
    let expected: Vec<u8> = (0..SECTOR).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(&written[1024 * SECTOR..1025 * SECTOR], &expected[..]);
}

#[test]
fn guest_reads_entropy_from_virtio_rng() {
    if !kvm_usable() {
        return;
    }
    let out = boot("rng", vec![], vec![]);
    assert_eq!(out.exit, ExitReason::Poweroff, "{}", out.serial);
    let line = out.line("rng len ");
    let (len, data) = line.split_once(" data ").expect("rng line");
    assert_eq!(len, "64");
    assert_eq!(data.len(), 128);
    // 64 random bytes are not all one value (odds of that: 2^-504).
    let first = &data[..2];
    assert!((0..64).any(|i| &data[2 * i..2 * i + 2] != first), "{data}");
    assert_eq!(out.line("rng irqs "), "1");
}

#[test]
fn guest_gets_a_dhcp_offer_from_passt_through_virtio_net() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(passt) = Passt::start(dir.path()) else {
        return;
    };
    let nic = NetConfig {
        mac: "52:54:00:12:34:56".parse().unwrap(),
        backend: NetBackend::Passt(passt.socket.clone()),
    };
    let out = boot("net", vec![], vec![nic]);
    assert_eq!(out.exit, ExitReason::Poweroff, "{}", out.serial);
    assert_eq!(out.line("net mac "), "52:54:00:12:34:56");
    assert!(out.serial.contains("net sent discover\n"), "{}", out.serial);
    let offer = out.line("net dhcp offer ");
    let address = offer.split(' ').next().unwrap();
    assert!(
        address.parse::<std::net::Ipv4Addr>().is_ok(),
        "offer {offer:?}"
    );
    // The OFFER arrived by interrupt: the rx queue's MSI-X vector reached the
    // guest's IDT handler at least once.
    let irqs: u32 = out.line("net rx irqs ").parse().unwrap();
    assert!(irqs >= 1, "{}", out.serial);
}

#[test]
fn guest_sends_fuse_init_to_virtiofsd_through_virtio_fs() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let Some(mut virtiofsd) = Virtiofsd::start(dir.path(), &shared) else {
        return;
    };
    let fs = FsConfig {
        tag: "hvbox-test-share".into(),
        socket: virtiofsd.socket.clone(),
    };
    let out = boot_with_filesystems("fs", vec![], vec![], vec![fs]);
    assert_eq!(out.exit, ExitReason::Poweroff, "{}", out.serial);
    assert_eq!(out.line("fs tag "), "hvbox-test-share request queues 1");
    // The reply is virtiofsd's, written into guest memory: our request number, no
    // error, FUSE 7.x, and it came by the request queue's interrupt. The second
    // one came after the driver reset the device and set it up again.
    let replies: Vec<&str> = out
        .serial
        .lines()
        .filter_map(|l| l.strip_prefix("fs init "))
        .collect();
    assert_eq!(replies.len(), 2, "{}", out.serial);
    for (round, reply) in replies.iter().enumerate() {
        let unique = format!("6876627800000{:03x}", round + 1);
        let fields: Vec<&str> = reply.split(' ').collect();
        assert_eq!(
            fields[..8],
            ["len", "80", "unique", &unique, "error", "00000000", "major", "7"],
            "{reply}"
        );
        assert_eq!(fields[10..], ["irqs", "1"], "{reply}");
    }
    // The VMM closed its connection at exit, so virtiofsd ended too.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !virtiofsd.exited() {
        assert!(
            Instant::now() < deadline,
            "virtiofsd outlived the VMM's connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
