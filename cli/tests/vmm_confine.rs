//! `hvbox vmm run` confined: every thread of a running VMM under a seccomp filter with
//! NO_NEW_PRIVS, started as root it runs as the machine folder's owner, and the
//! machine log says what was done.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../vmm/tests/guests/support.rs"]
mod support;

use support::{build, kvm_usable, Link};

/// Who owns the machine folder when the test runs as root: not root, so the VMM drops.
const OWNER: u32 = 65534;

struct Running {
    vmm: Child,
    machine: PathBuf,
    log: PathBuf,
}

impl Running {
    fn control(&self) -> PathBuf {
        self.machine.join("control.sock")
    }

    /// Each thread's name and its /proc status; not the kernel's own workers that
    /// KVM adds to the process (kvm-nx-lpage-recovery), which never run user code.
    fn threads(&self) -> Vec<(String, String)> {
        let tasks = format!("/proc/{}/task", self.vmm.id());
        std::fs::read_dir(tasks)
            .unwrap()
            .filter_map(|task| {
                let task = task.unwrap().path();
                let comm = std::fs::read_to_string(task.join("comm")).unwrap();
                let status = std::fs::read_to_string(task.join("status")).unwrap();
                let stat = std::fs::read_to_string(task.join("stat")).unwrap();
                (!user_worker(&stat)).then(|| (comm.trim().to_string(), status))
            })
            .collect()
    }

    /// Stops the VMM and returns its log.
    fn kill(mut self) -> String {
        let mut stream = UnixStream::connect(self.control()).unwrap();
        writeln!(stream, "kill").unwrap();
        assert_eq!(self.vmm.wait().unwrap().code(), Some(6));
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// The idle guest with its machine folder in `dir`, serving both sockets; returns once
/// they are served.
fn start(dir: &Path, extra: &[&str]) -> Running {
    let src = support::guests_dir(env!("CARGO_MANIFEST_DIR"), "../vmm/tests/guests");
    let kernel = build(&src, "idle", Link::PvhElf, dir);
    let machine = dir.join("machine");
    std::fs::create_dir(&machine).unwrap();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&machine, Some(OWNER), Some(OWNER)).unwrap();
    }
    let log = dir.join("vm.log");
    let vmm = Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .args(["vmm", "run", "--timeout", "60", "--kernel"])
        .arg(&kernel)
        .arg("--serial-log")
        .arg(machine.join("serial.log"))
        .arg("--control-socket")
        .arg(machine.join("control.sock"))
        .arg("--console-socket")
        .arg(machine.join("console.sock"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut running = Running { vmm, machine, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(running.control().exists() && running.machine.join("console.sock").exists()) {
        if Instant::now() > deadline || running.vmm.try_wait().unwrap().is_some() {
            let _ = running.vmm.kill();
            panic!(
                "the VMM never served its sockets: {}",
                std::fs::read_to_string(&running.log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    running
}

/// A control client that has had its answer, so its thread is running.
fn control_client(control: &Path) -> UnixStream {
    let stream = UnixStream::connect(control).unwrap();
    writeln!(&stream, "status").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    assert_eq!(line, "running\n");
    stream
}

/// Whether a task is a kernel worker in a user process (PF_USER_WORKER in its flags,
/// the ninth field of /proc/PID/task/TID/stat, counted after the name's parenthesis).
fn user_worker(stat: &str) -> bool {
    const PF_USER_WORKER: u64 = 0x4000;
    let after_name = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let flags: u64 = after_name
        .split(' ')
        .nth(6)
        .and_then(|f| f.parse().ok())
        .expect("stat has flags");
    flags & PF_USER_WORKER != 0
}

fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
}

#[test]
fn every_thread_of_a_running_vmm_is_filtered_and_cannot_gain_privileges() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &[]);
    let _console = UnixStream::connect(running.machine.join("console.sock")).unwrap();
    let _control = control_client(&running.control());
    // The console's input thread starts as its client is accepted.
    let deadline = Instant::now() + Duration::from_secs(5);
    let threads = loop {
        let threads = running.threads();
        if threads.iter().any(|(name, _)| name == "console-input") || Instant::now() > deadline {
            break threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut names: Vec<&str> = threads.iter().map(|(name, _)| name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "console",
            "console-input",
            "control",
            "control-client",
            // The main thread: `hvbox vmm run` became the VMM's own program.
            "hvbox-vmm",
            // Empties KVM's ring of the guest's serial output (where KVM has one).
            "serial-drain",
            "vcpu0"
        ]
    );
    for (name, status) in &threads {
        assert_eq!(field(status, "Seccomp"), "2", "{name}: {status}");
        assert_eq!(field(status, "NoNewPrivs"), "1", "{name}: {status}");
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let expected = match uid {
        0 => OWNER,
        other => other,
    };
    for (name, status) in &threads {
        let ids = format!("{expected}\t{expected}\t{expected}\t{expected}");
        assert_eq!(field(status, "Uid"), ids, "{name}");
        if uid == 0 {
            assert_eq!(field(status, "Gid"), ids, "{name}");
            assert_eq!(field(status, "Groups"), "", "{name}");
        }
    }
    let log = running.kill();
    assert!(
        log.contains("hvbox: seccomp: each VMM thread runs under the allow-list of its kind"),
        "{log}"
    );
    assert!(
        log.contains("hvbox: landlock: file system limited to the machine's own paths"),
        "{log}"
    );
    if uid == 0 {
        assert!(
            log.contains(&format!(
                "hvbox: /dev/kvm, disks and network open: running as uid {OWNER} gid {OWNER} from now on"
            )),
            "{log}"
        );
    }
}

#[test]
fn no_seccomp_is_said_in_the_log_and_leaves_the_threads_unfiltered() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &["--no-seccomp"]);
    for (name, status) in running.threads() {
        assert_eq!(field(&status, "Seccomp"), "0", "{name}");
        assert_eq!(field(&status, "NoNewPrivs"), "1", "{name}");
    }
    let log = running.kill();
    assert!(
        log.contains("hvbox: warning: --no-seccomp: the VMM runs without its seccomp allow-lists (for debugging only"),
        "{log}"
    );
}
