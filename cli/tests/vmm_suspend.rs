//! `hvbox vmm run` saving a running machine and a new VMM process continuing it: a
//! guest that counts on its serial port goes on counting from where it was saved,
//! with its registers and memory back; one in the middle of its disk I/O goes on
//! with its virtio-blk device and MSI-X interrupts; a damaged or mismatched state is
//! refused.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

#[path = "../../vmm/tests/guests/support.rs"]
mod support;

const MEMORY: &str = "64M";

struct Vmm {
    child: Child,
    serial: PathBuf,
    control: PathBuf,
    log: PathBuf,
    ticks: fn(&str) -> Vec<u32>,
}

/// The counting guest in `dir`, run `name`, with `extra` flags (e.g. `--restore`).
fn start(dir: &Path, name: &str, memory: &str, extra: &[&str]) -> Vmm {
    let kernel = guest(dir, "counter");
    let mut args = vec![
        "--memory".to_string(),
        memory.into(),
        "--kernel".into(),
        kernel,
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    start_with(dir, name, &args, ticks)
}

/// The tiny guest NAME built into `dir` (once), as a path argument.
fn guest(dir: &Path, name: &str) -> String {
    let src = support::guests_dir(env!("CARGO_MANIFEST_DIR"), "../vmm/tests/guests");
    let kernel = dir.join(format!("{name}.elf"));
    if !kernel.exists() {
        support::build(&src, name, support::Link::PvhElf, dir);
    }
    kernel.to_string_lossy().into_owned()
}

/// `hvbox vmm run ARGS` as run `name` in `dir`, its guest's progress read by `ticks`.
fn start_with(dir: &Path, name: &str, args: &[String], ticks: fn(&str) -> Vec<u32>) -> Vmm {
    Vmm {
        child: Command::new(env!("CARGO_BIN_EXE_hvbox"))
            .args(["vmm", "run", "--timeout", "60"])
            .args(args)
            .arg("--serial-log")
            .arg(dir.join(format!("{name}.serial")))
            .arg("--control-socket")
            .arg(dir.join(format!("{name}.sock")))
            .stdout(Stdio::null())
            .stderr(File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap(),
        serial: dir.join(format!("{name}.serial")),
        control: dir.join(format!("{name}.sock")),
        log: dir.join(format!("{name}.log")),
        ticks,
    }
}

impl Vmm {
    fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the guest has printed tick `n`.
    fn wait_for_tick(&mut self, n: u32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while (self.ticks)(&self.serial()).last().copied().unwrap_or(0) < n {
            let ended = self.child.try_wait().unwrap();
            assert!(
                ended.is_none() && Instant::now() < deadline,
                "no tick {n} (VMM ended: {ended:?}); serial:\n{}\nlog:\n{}",
                self.serial(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `save stop|continue` with `state` sent along; the VMM's answer.
    fn save(&self, then: &str, state: &File) -> String {
        let stream = UnixStream::connect(&self.control).unwrap();
        use std::os::fd::AsRawFd;
        stream
            .send_with_fd(format!("save {then}\n").as_bytes(), state.as_raw_fd())
            .unwrap();
        let mut reply = String::new();
        BufReader::new(&stream).read_line(&mut reply).unwrap();
        reply.trim().to_string()
    }

    fn kill(mut self) -> String {
        let mut stream = UnixStream::connect(&self.control).unwrap();
        writeln!(stream, "kill").unwrap();
        assert_eq!(self.child.wait().unwrap().code(), Some(6), "{}", self.log());
        self.serial()
    }
}

/// The counts printed, in order.
/// The counts printed on whole lines, in order (a save may cut the last line).
fn ticks(serial: &str) -> Vec<u32> {
    serial
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n')?.strip_prefix("tick "))
        .filter_map(|n| u32::from_str_radix(n.trim(), 16).ok())
        .collect()
}

fn last_tick(serial: &str) -> Option<u32> {
    ticks(serial).last().copied()
}

/// The requests the virtio-blk guest reports, with the queue's interrupt count after
/// each: "blk request N ok irqs M".
fn blk_requests(serial: &str) -> Vec<(u32, bool, u32)> {
    serial
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("blk request ")?.split(' ');
            let n = words.next()?.parse().ok()?;
            let ok = words.next()? == "ok";
            let irqs = words.nth(1)?.parse().ok()?;
            Some((n, ok, irqs))
        })
        .collect()
}

fn blk_ticks(serial: &str) -> Vec<u32> {
    blk_requests(serial).iter().map(|r| r.0).collect()
}

/// A new state file in `dir`.
fn state_file(dir: &Path, name: &str) -> (PathBuf, File) {
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    (path, file)
}

/// `hvbox vmm run --restore` of `state`, expected to be refused; its message.
fn refused(dir: &Path, memory: &str, state: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .args([
            "vmm",
            "run",
            "--timeout",
            "10",
            "--memory",
            memory,
            "--kernel",
        ])
        .arg(dir.join("counter.elf"))
        .arg("--serial-log")
        .arg(dir.join("refused.serial"))
        .arg("--restore")
        .arg(state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn a_saved_guest_counts_on_in_a_new_vmm_and_a_damaged_state_is_refused() {
    if !support::kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut first = start(dir, "first", MEMORY, &[]);
    first.wait_for_tick(3);

    // A live save: the guest goes on counting.
    // The guest runs meanwhile: the save falls between the ticks seen before the
    // request and those seen after its answer.
    let (live_path, live) = state_file(dir, "live.state");
    let live_from = last_tick(&first.serial()).unwrap();
    assert_eq!(first.save("continue", &live), "ok", "{}", first.log());
    let live_to = last_tick(&first.serial()).unwrap();
    first.wait_for_tick(live_to + 3);

    // Then a save that ends the VMM.
    let (path, state) = state_file(dir, "machine.state");
    assert_eq!(first.save("stop", &state), "ok", "{}", first.log());
    let status = first.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", first.log());
    assert!(
        first.log().contains("vmm: state saved; exiting"),
        "{}",
        first.log()
    );
    let before = first.serial();
    let saved_at = last_tick(&before).unwrap();
    // 64 MiB of RAM, of which the guest touched a few pages: the file is sparse.
    let allocated = std::os::unix::fs::MetadataExt::blocks(&state.metadata().unwrap()) * 512;
    assert!(
        allocated < 4 << 20,
        "{allocated} bytes on disk for the state"
    );

    let mut second = start(
        dir,
        "second",
        MEMORY,
        &["--restore", path.to_str().unwrap()],
    );
    second.wait_for_tick(saved_at + 5);
    assert!(
        second.log().contains("continuing the machine saved in"),
        "{}",
        second.log()
    );
    assert_counts_on(&before, &second.kill());

    // The live save continues from where it was taken, whatever came after it.
    let mut third = start(
        dir,
        "third",
        MEMORY,
        &["--restore", live_path.to_str().unwrap()],
    );
    third.wait_for_tick(live_to + 4);
    let from_live = ticks(&third.kill());
    // Its next whole line: the tick after the save's, or the one after that when the
    // save cut a line.
    let next = from_live[0];
    assert!(
        next > live_from && next <= live_to + 2,
        "saved between ticks {live_from} and {live_to}, then printed {from_live:?}"
    );
    let expected: Vec<u32> = (next..next + from_live.len() as u32).collect();
    assert_eq!(from_live, expected);

    // A state for another machine, and damaged ones, are refused with the reason.
    let other = refused(dir, "128M", &path);
    assert!(
        other.contains("hvbox: cannot resume: the machine has 128 MiB of RAM, the state 64 MiB"),
        "{other}"
    );
    let len = state.metadata().unwrap().len();
    let flip = |at: u64| {
        let copy = dir.join(format!("flipped-{at}.state"));
        std::process::Command::new("cp")
            .args(["--sparse=always"])
            .arg(&path)
            .arg(&copy)
            .status()
            .unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&copy)
            .unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ 1], at).unwrap();
        copy
    };
    let description = refused(dir, MEMORY, &flip(len - 10));
    assert!(
        description.contains("the state's description is damaged"),
        "{description}"
    );
    // The guest's program is at 1 MiB: a page with data.
    let memory = refused(dir, MEMORY, &flip(4096 + 0x10_0000 + 0x40));
    assert!(
        memory.contains("guest memory in the state file is damaged"),
        "{memory}"
    );
    let header = refused(dir, MEMORY, &flip(20));
    assert!(header.contains("header is damaged"), "{header}");
    state.set_len(len / 2).unwrap();
    let short = refused(dir, MEMORY, &path);
    assert!(short.contains("hvbox: cannot resume:"), "{short}");
}

#[test]
fn a_guest_saved_amid_its_disk_io_goes_on_with_its_disk_and_interrupts() {
    if !support::kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let disk = dir.join("disk.raw");
    File::create(&disk).unwrap().set_len(1 << 20).unwrap();
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = ["--memory", MEMORY, "--cmdline", "blk-loop", "--disk"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(disk.to_string_lossy().into_owned());
        args.push("--kernel".into());
        args.push(guest(dir, "virtio_pci"));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let mut first = start_with(dir, "blk-first", &args(&[]), blk_ticks);
    first.wait_for_tick(3);
    // A live save restarts the device workers: the disk goes on serving.
    let (_, live) = state_file(dir, "blk-live.state");
    assert_eq!(first.save("continue", &live), "ok", "{}", first.log());
    let at = blk_ticks(&first.serial()).last().copied().unwrap();
    first.wait_for_tick(at + 3);
    let (path, state) = state_file(dir, "blk.state");
    assert_eq!(first.save("stop", &state), "ok", "{}", first.log());
    assert_eq!(
        first.child.wait().unwrap().code(),
        Some(0),
        "{}",
        first.log()
    );
    let before = first.serial();
    let saved_at = blk_ticks(&before).last().copied().unwrap();

    let restore = args(&["--restore", path.to_str().unwrap()]);
    let mut second = start_with(dir, "blk-second", &restore, blk_ticks);
    second.wait_for_tick(saved_at + 5);
    // The restored machine's device workers run under their filters too.
    for (thread, seccomp) in seccomp_modes(second.child.id()) {
        assert_eq!(seccomp, "2", "thread {thread} of the restored VMM");
    }
    let after = second.kill();
    // Each request written and read back, one after the other across both runs, each
    // completion signalled by its own MSI-X interrupt (two requests per line).
    let requests = blk_requests(&format!("{before}{after}"));
    for (i, &(n, ok, irqs)) in requests.iter().enumerate() {
        assert!(
            n as usize == i + 1 && ok && irqs == 2 * n,
            "request {} of the runs: {:?}\nfirst run:\n{before}\nsecond run:\n{after}",
            i + 1,
            (n, ok, irqs)
        );
    }
}

/// `save pause` holds the guest while its disks would be copied, `continue` lets it
/// go: the count stands still between them and goes on after; a second `continue`
/// is refused; the state continues in a new VMM from where the pause was.
#[test]
fn a_paused_save_holds_the_guest_until_continue() {
    if !support::kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut vmm = start(dir, "held", MEMORY, &[]);
    vmm.wait_for_tick(3);
    let (path, state) = state_file(dir, "held.state");
    assert_eq!(vmm.save("pause", &state), "ok", "{}", vmm.log());
    let held = vmm.serial();
    let at_pause = last_tick(&held).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(vmm.serial(), held, "the guest ran while held");
    assert_eq!(
        vmm.save("pause", &state),
        "error: the machine is paused by a save; send continue first"
    );
    assert_eq!(request(&vmm.control, "continue"), "ok");
    vmm.wait_for_tick(at_pause + 3);
    assert_eq!(
        request(&vmm.control, "continue"),
        "error: the machine is not paused by a save"
    );
    vmm.kill();

    let mut restored = start(
        dir,
        "held-restored",
        MEMORY,
        &["--restore", path.to_str().unwrap()],
    );
    restored.wait_for_tick(at_pause + 2);
    assert_counts_on(&held, &restored.kill());
}

/// What a VMM printed up to a save, then what the VMM continuing that state printed:
/// one count from 1, none lost or repeated (a line cut by the save is finished by
/// the second).
fn assert_counts_on(before: &str, after: &str) {
    let joined = ticks(&format!("{before}{after}"));
    let expected: Vec<u32> = (1..=*joined.last().unwrap()).collect();
    assert_eq!(
        joined, expected,
        "before the save:\n{before}\nafter:\n{after}"
    );
    assert!(!after.contains("lost count"), "{after}");
}

/// Each thread of process `pid` with its seccomp mode (/proc status), but KVM's own
/// kernel workers (`kvm-*`), which run no user code.
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let task = task.unwrap().path();
            let comm = std::fs::read_to_string(task.join("comm")).ok()?;
            let status = std::fs::read_to_string(task.join("status")).ok()?;
            let mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:"))?;
            let comm = comm.trim().to_string();
            (!comm.starts_with("kvm")).then(|| (comm, mode.trim().to_string()))
        })
        .collect()
}

/// One request line and its answer.
fn request(control: &Path, line: &str) -> String {
    let mut stream = UnixStream::connect(control).unwrap();
    writeln!(stream, "{line}").unwrap();
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).unwrap();
    reply.trim().to_string()
}

/// A save that cannot be written (a full disk) is answered with the error, and the
/// guest runs on as if nothing had been asked.
#[test]
fn a_save_to_a_full_disk_fails_and_the_guest_runs_on() {
    if !support::kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut vmm = start(dir.path(), "full", MEMORY, &[]);
    vmm.wait_for_tick(2);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    for then in ["stop", "continue", "pause"] {
        let reply = vmm.save(then, &full);
        assert!(
            reply.starts_with("error: saving the machine: writing"),
            "save {then}: {reply}"
        );
        let before = last_tick(&vmm.serial()).unwrap();
        vmm.wait_for_tick(before + 2);
    }
    assert_eq!(
        request(&vmm.control, "continue"),
        "error: the machine is not paused by a save"
    );
    vmm.kill();
}
