//! The supervisor's port watcher: a thread that lives as long as the machine's
//! supervisor and keeps one ssh connection of its own to the guest. That
//! connection is an ssh master whose session prints the guest's listening
//! sockets every second; each new port is forwarded through it
//! (`ssh -O forward -L 127.0.0.1:HOST:ADDR:PORT`, a direct-tcpip channel per
//! connection) and cancelled when the guest stops listening. The master dies with
//! the supervisor (PR_SET_PDEATHSIG), and its forwards with it.
//!
//! What the guest prints is bounded: lines are cut at [`MAX_LINE`] bytes, a
//! snapshot at [`MAX_LINES`] lines, and at most [`MAX_FORWARDS`] ports are
//! forwarded at once.

use super::listening::{parse_line, to_forward, Listener};
use super::AutoForward;
use crate::machine::{Machine, MachineState};
use crate::ssh;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const MAX_FORWARDS: usize = 64;
const MAX_LINE: usize = 512;
const MAX_LINES: usize = 4096;
/// Ends each snapshot the guest prints.
const END: &str = "hvbox-ports-end";
/// Between attempts to log in (the guest is booting, or rebooting).
const RETRY: Duration = Duration::from_secs(2);

/// Runs in the guest's login shell for as long as the connection lasts.
fn guest_script() -> String {
    format!("while :; do grep -h ' 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; echo {END}; sleep 1; done")
}

/// What the watcher needs of the machine.
pub struct Guest {
    pub machine: Machine,
    pub state: MachineState,
    pub ssh_port: u16,
    pub runtime_dir: PathBuf,
    /// Guest ports the spec forwards (over passt): theirs, not the watcher's.
    pub declared: Vec<u16>,
}

pub struct Watcher {
    stop: Arc<AtomicBool>,
    /// The running master's pid, cleared (under the lock) before it is reaped.
    master: Arc<Mutex<Option<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn start(guest: Guest) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let master = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, master) = (stop.clone(), master.clone());
            std::thread::spawn(move || watch(&guest, &stop, &master))
        };
        Watcher {
            stop,
            master,
            thread: Some(thread),
        }
    }
}

impl Drop for Watcher {
    /// Ends the master (its forwards with it) and waits for the thread.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(pid) = *self.master.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = crate::process::signal(pid, libc::SIGTERM);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(guest: &Guest, stop: &AtomicBool, master: &Mutex<Option<u32>>) {
    let socket = guest.runtime_dir.join("ports.ssh");
    let mut said_failure = false;
    while !stop.load(Ordering::SeqCst) {
        // Until sshd answers, a TCP look instead of an ssh process every time: on an
        // emulated host each ssh start costs CPU the booting guest needs.
        if !ssh::sshd_answers(guest.ssh_port) {
            pause(stop, RETRY);
            continue;
        }
        let _ = std::fs::remove_file(&socket);
        let mut child = match spawn_master(guest, &socket) {
            Ok(child) => child,
            Err(e) => {
                if !std::mem::replace(&mut said_failure, true) {
                    eprintln!("ports: cannot start ssh to watch the guest's ports: {e}");
                }
                pause(stop, RETRY);
                continue;
            }
        };
        *master.lock().unwrap_or_else(|e| e.into_inner()) = Some(child.id());
        if stop.load(Ordering::SeqCst) {
            let _ = child.kill();
        }
        let mut live = Forwards::new(guest, socket.clone());
        if let Some(out) = child.stdout.take() {
            read_snapshots(out, |listeners| live.apply(listeners));
        }
        {
            let mut pid = master.lock().unwrap_or_else(|e| e.into_inner());
            let _ = child.wait();
            *pid = None;
        }
        // The forwards went with the master.
        live.ended(stop.load(Ordering::SeqCst));
        pause(stop, RETRY);
    }
    let _ = std::fs::remove_file(&socket);
}

fn pause(stop: &AtomicBool, how_long: Duration) {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited < how_long && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        waited += step;
    }
}

/// The watcher's own ssh master, running the guest script; killed with the
/// supervisor. Until the guest's sshd lets it in, it exits at once.
fn spawn_master(guest: &Guest, socket: &std::path::Path) -> std::io::Result<Child> {
    let mut cmd = Command::new("ssh");
    for (name, value) in ssh::options(&guest.machine, &guest.state, guest.ssh_port) {
        // Its own master, not the shared connection `hvbox ssh` uses.
        if !name.starts_with("Control") {
            cmd.arg("-o").arg(format!("{name}={value}"));
        }
    }
    cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"])
        .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no"])
        .arg("-o")
        .arg(format!("ControlPath={}", ssh::config_path(socket)))
        .args(["-T", "127.0.0.1"])
        .arg(guest_script())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    die_with_this_process(&mut cmd);
    cmd.spawn()
}

/// PR_SET_PDEATHSIG: the child is killed when the thread that started it ends,
/// which for the watcher's threads is when the supervisor ends.
fn die_with_this_process(cmd: &mut Command) {
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Hands each complete snapshot of listeners to `apply` until the guest's output
/// ends; too long lines and lines past [`MAX_LINES`] are dropped.
pub(crate) fn read_snapshots(out: impl Read, mut apply: impl FnMut(&[Listener])) {
    let mut reader = BufReader::new(out);
    let mut snapshot: Vec<Listener> = Vec::new();
    let mut lines = 0usize;
    let mut line = Vec::with_capacity(MAX_LINE);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            if line.len() < MAX_LINE || !skip_line(&mut reader) {
                return;
            }
            lines += 1;
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text == END {
            apply(&snapshot);
            snapshot.clear();
            lines = 0;
            continue;
        }
        lines += 1;
        if lines <= MAX_LINES {
            snapshot.extend(parse_line(text));
        }
    }
}

/// Reads past the rest of an over-long line; false at the end of the output.
fn skip_line(reader: &mut impl BufRead) -> bool {
    loop {
        let (found, used) = match reader.fill_buf() {
            Ok([]) | Err(_) => return false,
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, buf.len()),
            },
        };
        reader.consume(used);
        if found {
            return true;
        }
    }
}

/// The forwards made through one master connection.
struct Forwards<'g> {
    guest: &'g Guest,
    socket: PathBuf,
    live: BTreeMap<u16, AutoForward>,
    /// Ports that could not be forwarded, not tried again while the guest listens.
    refused: BTreeSet<u16>,
    watching: bool,
    said_full: bool,
}

impl<'g> Forwards<'g> {
    fn new(guest: &'g Guest, socket: PathBuf) -> Forwards<'g> {
        Forwards {
            guest,
            socket,
            live: BTreeMap::new(),
            refused: BTreeSet::new(),
            watching: false,
            said_full: false,
        }
    }

    fn apply(&mut self, listeners: &[Listener]) {
        if !std::mem::replace(&mut self.watching, true) {
            eprintln!("ports: watching the ports the guest listens on; each is forwarded to the host's 127.0.0.1");
        }
        let wanted = to_forward(listeners, &self.guest.declared);
        let before = self.live.clone();
        self.refused.retain(|p| wanted.contains_key(p));
        let gone: Vec<AutoForward> = self
            .live
            .values()
            .filter(|f| wanted.get(&f.guest) != Some(&f.guest_address))
            .cloned()
            .collect();
        for f in gone {
            self.live.remove(&f.guest);
            let _ = self.control("cancel", &f);
            eprintln!(
                "ports: withdrew 127.0.0.1:{} (the guest no longer listens on port {})",
                f.host, f.guest
            );
        }
        for (&port, &address) in &wanted {
            if self.live.contains_key(&port) || self.refused.contains(&port) {
                continue;
            }
            if self.live.len() >= MAX_FORWARDS {
                if !std::mem::replace(&mut self.said_full, true) {
                    eprintln!("ports: the guest listens on more than {MAX_FORWARDS} ports; the others are not forwarded (declare them in hvbox.yaml's `ports`)");
                }
                break;
            }
            match self.forward(port, address) {
                Ok(f) => {
                    if f.host == port {
                        eprintln!("ports: forwarding 127.0.0.1:{port} -> guest port {port}");
                    } else {
                        eprintln!("ports: forwarding 127.0.0.1:{} -> guest port {port} (port {port} is taken on the host)", f.host);
                    }
                    self.live.insert(port, f);
                }
                Err(why) => {
                    eprintln!("ports: guest port {port} is not forwarded: {why}");
                    self.refused.insert(port);
                }
            }
        }
        if self.live != before {
            self.record();
        }
    }

    /// Forward to the same port on the host when it is free there, else to one the
    /// system picks.
    fn forward(&self, port: u16, address: IpAddr) -> Result<AutoForward, String> {
        let mut why = String::new();
        for host in [Some(port), None] {
            let Some(host) = free_host_port(host) else {
                continue;
            };
            let f = AutoForward {
                host,
                guest: port,
                guest_address: address,
            };
            match self.control("forward", &f) {
                Ok(()) => return Ok(f),
                Err(e) => why = e,
            }
        }
        Err(why)
    }

    fn control(&self, op: &str, f: &AutoForward) -> Result<(), String> {
        let target = match f.guest_address {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        let mut cmd = Command::new("ssh");
        cmd.arg("-S")
            .arg(&self.socket)
            .args(["-O", op, "-L"])
            .arg(format!("127.0.0.1:{}:{target}:{}", f.host, f.guest))
            .arg("127.0.0.1")
            .stdin(Stdio::null());
        die_with_this_process(&mut cmd);
        let out = cmd.output().map_err(|e| format!("running ssh: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(crate::guest_text::sanitize(
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }

    fn record(&self) {
        let list: Vec<AutoForward> = self.live.values().cloned().collect();
        if let Err(e) = super::save(&self.guest.runtime_dir, &list) {
            eprintln!("ports: recording the forwarded ports: {e:#}");
        }
    }

    /// The master ended: its forwards are gone.
    fn ended(mut self, stopping: bool) {
        if self.watching && !stopping {
            eprintln!("ports: the ssh connection to the guest ended; its forwards are withdrawn until it is back");
        }
        if !self.live.is_empty() {
            self.live.clear();
            self.record();
        }
    }
}

/// `wanted` when nothing holds it on 127.0.0.1, or with `None` a port the system
/// picks; the caller binds it a moment later.
fn free_host_port(wanted: Option<u16>) -> Option<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, wanted.unwrap_or(0))).ok()?;
    listener.local_addr().ok().map(|a| a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_end_at_the_marker_and_what_the_guest_prints_is_bounded() {
        let line = "   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 1 1\n";
        let mut out = String::new();
        out.push_str(line);
        out.push_str(&"x".repeat(10 * MAX_LINE));
        out.push('\n');
        out.push_str(&format!("{END}\n"));
        out.push_str(&line.repeat(MAX_LINES + 10));
        out.push_str(&format!("{END}\n"));
        // An unfinished snapshot is not applied.
        out.push_str(line);
        let mut seen = Vec::new();
        read_snapshots(out.as_bytes(), |s| seen.push(s.len()));
        assert_eq!(seen, [1, MAX_LINES]);
    }
}
