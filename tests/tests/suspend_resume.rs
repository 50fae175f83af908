//! Suspend and resume on the qemu engine with a real Debian guest, one machine: a
//! background process and a web server survive `suspend` + `up`, the guest's clock
//! and uptime carry on, nothing of the suspended machine keeps running; a damaged
//! state is refused and the machine boots cold; `up --cold` and `halt` discard a state.
//! A live snapshot, restored, brings a file back as it was. The project folder stays
//! mounted (virtio-fs): its device is unplugged for each save and plugged back, the
//! guest's mount comes back, and a share in use makes the save refuse, naming the
//! process, with the machine running on and the share mounted.

use hvbox_tests::crash::{processes_of, run_facts};
use hvbox_tests::{processes_mentioning, require_tools, test_box, HttpServer, TestProject};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PAGE: &str = "served-from-the-guest";

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The forwarded port's answer to `GET /index.txt`, retried for a while: passt
/// learns the guest's address from its first packets.
fn fetch(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let got = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET /index.txt HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match got {
            Ok(body) if body.contains(PAGE) => return body,
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("port {port} did not serve the page: {last}");
}

fn state(project: &TestProject) -> String {
    let status = project.ok(&["status", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&status).expect("status --json");
    list[0]["state"].as_str().unwrap_or_default().to_string()
}

fn guest(project: &TestProject, script: &str) -> String {
    project.ok(&["ssh", "--", script]).trim().to_string()
}

fn uptime(project: &TestProject) -> f64 {
    let text = guest(project, "cat /proc/uptime");
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Processes of the machine: its folder's and its runtime folder's (passt, QEMU).
fn machine_processes(dir: &Path, runtime: &Path) -> Vec<String> {
    let mut found = processes_of(dir);
    found.extend(processes_of(runtime));
    found.sort();
    found.dedup();
    found
}

fn timed(project: &TestProject, args: &[&str]) -> (String, f64) {
    let started = Instant::now();
    let out = project.ok(args);
    (out, started.elapsed().as_secs_f64())
}

#[test]
fn a_suspended_machine_continues_where_it_was() {
    require_tools(&[
        "qemu-system-x86_64",
        "passt",
        "ssh",
        "virtiofsd",
        "mmdebstrap",
    ]);
    let test_box = test_box();
    let server = HttpServer::serve(test_box.dir.clone());
    let port = free_port();
    let spec = format!(
        "box:\n  disk:\n    url: {}\n    digest: \"{}\"\nengine: qemu\ncpus: 1\nmemory: 768M\nssh:\n  user: tester\nports:\n  - {{host: {port}, guest: 8000}}\n",
        server.url("disk.raw"),
        test_box.digest
    );
    let project = TestProject::new(&spec);
    let dir = project.path().join(".hvbox/machines/default");
    // `hvbox ssh` starts in the guest's mount of the project folder.
    let share = std::fs::canonicalize(project.path()).unwrap();

    let (up, cold_secs) = timed(&project, &["up"]);
    assert!(up.contains("machine is up"), "{up}");
    // Started outside the share (`cd /`): a process in it would hold the mount.
    let ticker = guest(
        &project,
        "cd /; nohup sh -c 'while :; do date +%s >> /tmp/ticks; sleep 1; done' >/dev/null 2>&1 </dev/null & echo $!",
    );
    guest(
        &project,
        &format!("mkdir -p /tmp/www && echo {PAGE} > /tmp/www/index.txt && sudo systemd-run --collect --unit web python3 -m http.server 8000 --directory /tmp/www"),
    );
    fetch(port);
    std::thread::sleep(Duration::from_secs(2));
    let uptime_before = uptime(&project);
    let ticks_before: usize = guest(&project, "wc -l < /tmp/ticks").parse().unwrap();
    let runtime = run_facts(&dir).runtime_dir;

    // A process working in the share: the save is refused, naming it, and the
    // machine runs on with the share mounted.
    let holder = guest(
        &project,
        "nohup sleep 600 >/dev/null 2>&1 </dev/null & echo $!",
    );
    let refused = project.hvbox(&["suspend"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("the shared folder {}", share.display()))
            && stderr.contains("is in use in the guest")
            && stderr.contains(&format!(
                "pid {holder} (sleep): working directory {}",
                share.display()
            ))
            && stderr.contains("runs on with its shared folders mounted"),
        "{stderr}"
    );
    assert_eq!(state(&project), "running");
    assert!(!dir.join("state/vm.state").exists());
    assert_eq!(
        guest(
            &project,
            "findmnt -rn -o FSTYPE -M \"$PWD\"; cat hvbox.yaml | head -1"
        ),
        "virtiofs\nbox:"
    );
    guest(&project, &format!("kill {holder}"));

    // A suspend killed once the guest has let its shares go leaves the machine
    // running without them; the next `up` puts them back.
    let mut cut = project.spawn(&["suspend"]);
    let unplugged = runtime.join("shares-unplugged");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !unplugged.exists() {
        assert!(
            Instant::now() < deadline,
            "the suspend never unplugged the shares"
        );
        assert!(cut.try_wait().unwrap().is_none(), "the suspend ended first");
        std::thread::sleep(Duration::from_millis(100));
    }
    cut.kill().unwrap();
    cut.wait().unwrap();
    assert_eq!(state(&project), "running");
    let out = project.ok(&["up"]);
    assert!(
        out.contains("taken out by a suspend or snapshot that did not finish")
            && out.contains("shared folders mounted again"),
        "{out}"
    );
    assert_eq!(
        guest(
            &project,
            "findmnt -rn -o FSTYPE -M \"$PWD\"; head -1 hvbox.yaml"
        ),
        "virtiofs\nbox:"
    );

    // Written in the guest's mount before the suspend: on the host at once.
    guest(&project, "echo written-before > from-guest.txt");
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest.txt")).unwrap(),
        "written-before\n"
    );

    // Suspend: the state in the machine folder, nothing of the machine running.
    let (out, suspend_secs) = timed(&project, &["suspend"]);
    assert!(
        out.contains("unmounting the shared folders in the guest"),
        "{out}"
    );
    assert!(out.contains("machine suspended in"), "{out}");
    assert_eq!(state(&project), "suspended");
    let table = project.ok(&["status"]);
    assert!(table.contains("suspended"), "{table}");
    let state_file = dir.join("state/vm.state");
    let state_bytes = std::fs::metadata(&state_file).expect("state file").len();
    let status: serde_json::Value =
        serde_json::from_str(&project.ok(&["status", "--json"])).unwrap();
    assert_eq!(status[0]["saved_state"]["bytes"], state_bytes, "{status}");
    assert_eq!(status[0]["saved_state"]["engine"], "qemu", "{status}");
    assert_eq!(machine_processes(&dir, &runtime), Vec::<String>::new());
    // Long enough for a clock left alone to be visibly behind.
    std::thread::sleep(Duration::from_secs(10));

    let (out, resume_secs) = timed(&project, &["up"]);
    assert!(out.contains("resuming on qemu"), "{out}");
    assert!(out.contains("guest clock set to the host's time"), "{out}");
    assert!(out.contains("shared folders mounted again"), "{out}");
    // The share is back: what either side writes, the other sees.
    std::fs::write(share.join("from-host.txt"), "written-after\n").unwrap();
    assert_eq!(
        guest(&project, "cat from-host.txt from-guest.txt"),
        "written-after\nwritten-before"
    );
    guest(&project, "echo guest-after > guest-after.txt");
    assert_eq!(
        std::fs::read_to_string(share.join("guest-after.txt")).unwrap(),
        "guest-after\n"
    );
    assert!(!out.contains("booting on"), "a resume booted:\n{out}");
    assert_eq!(state(&project), "running");
    assert!(!state_file.exists(), "the spent state was kept");
    assert_eq!(
        guest(&project, &format!("kill -0 {ticker} && echo alive")),
        "alive"
    );
    let ticks_after: usize = guest(&project, "wc -l < /tmp/ticks").parse().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let ticks_later: usize = guest(&project, "wc -l < /tmp/ticks").parse().unwrap();
    assert!(
        ticks_before <= ticks_after && ticks_after < ticks_later,
        "ticks {ticks_before} -> {ticks_after} -> {ticks_later}"
    );
    let uptime_after = uptime(&project);
    assert!(
        uptime_after > uptime_before,
        "{uptime_before} -> {uptime_after}"
    );
    let (host_before, guest_time, host_after) = (
        now(),
        guest(&project, "date +%s.%N").parse::<f64>().unwrap(),
        now(),
    );
    assert!(
        guest_time > host_before - 5.0 && guest_time < host_after + 5.0,
        "guest clock {guest_time}, host {host_before}..{host_after}"
    );
    fetch(port);
    // New passt and QEMU, one of each, no leftovers of the suspended run.
    let running = machine_processes(&dir, &runtime);
    let count = |prog: &str| {
        running
            .iter()
            .filter(|p| p.split_once(": ").is_some_and(|(_, c)| c.starts_with(prog)))
            .count()
    };
    assert_eq!(
        (count("passt "), count("qemu-system-x86_64 ")),
        (1, 1),
        "{running:#?}"
    );
    let virtiofsd = processes_mentioning("virtiofsd")
        .into_iter()
        .filter(|p| p.contains(&runtime.to_string_lossy().into_owned()))
        .count();
    assert!(virtiofsd >= 1, "no virtiofsd serves the share");
    let status = project.ok(&["status"]);
    assert!(!status.contains("mount lost"), "{status}");
    eprintln!(
        "suspend/resume on qemu (TCG, 768M guest, project folder shared): cold up {cold_secs:.1} s; suspend {suspend_secs:.1} s, state {:.1} MiB; resume up (to ssh and clock) {resume_secs:.1} s",
        state_bytes as f64 / (1 << 20) as f64
    );

    // Snapshots: `--live` saves the running machine with its state and leaves it up;
    // restoring it brings back the file as it was, and the machine suspended.
    // (In the home folder: the share is the host's, not in the snapshot.)
    guest(&project, "echo before > ~/snap.txt && sync");
    let out = project.ok(&["snapshot", "save", "first", "--live"]);
    assert!(out.contains("snapshot `first` saved"), "{out}");
    assert_eq!(state(&project), "running");
    // The share came back after the live save.
    std::fs::write(share.join("after-live.txt"), "still shared\n").unwrap();
    assert_eq!(guest(&project, "cat after-live.txt"), "still shared");
    guest(&project, "echo after > ~/snap.txt && sync");
    let refused = project.hvbox(&["snapshot", "restore", "first"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("is running"),
        "{stderr}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&project.ok(&["snapshot", "list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "first", "{list}");
    assert_eq!(list[0]["with_state"], true, "{list}");
    assert!(list[0]["on_disk"].as_u64().unwrap() > 1 << 20, "{list}");
    let out = project.ok(&["snapshot", "restore", "first", "--force"]);
    assert!(out.contains("the machine is suspended as it was"), "{out}");
    assert_eq!(state(&project), "suspended");
    let out = project.ok(&["up"]);
    assert!(out.contains("resuming on qemu"), "{out}");
    assert_eq!(guest(&project, "cat ~/snap.txt"), "before");
    assert_eq!(guest(&project, "cat after-live.txt"), "still shared");
    assert_eq!(
        guest(&project, &format!("kill -0 {ticker} && echo alive")),
        "alive"
    );
    let out = project.ok(&["snapshot", "delete", "first"]);
    assert!(out.contains("snapshot `first` deleted"), "{out}");
    assert!(!dir.join("snapshots/first").exists());

    // A state cut short: refused with QEMU's reason, and the machine boots cold.
    project.ok(&["suspend"]);
    let len = std::fs::metadata(&state_file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&state_file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = project.ok(&["up"]);
    assert!(
        out.contains("cannot resume the saved state: QEMU:"),
        "{out}"
    );
    assert!(out.contains("boots cold"), "{out}");
    assert!(out.contains("machine is up"), "{out}");
    assert!(
        uptime(&project) < uptime_after,
        "a cold boot kept the uptime"
    );
    assert_eq!(
        guest(
            &project,
            &format!("kill -0 {ticker} 2>/dev/null && echo alive || echo gone")
        ),
        "gone"
    );

    // `up --cold` boots fresh and says so.
    project.ok(&["suspend"]);
    let out = project.ok(&["up", "--cold"]);
    assert!(
        out.contains("discarding the saved state (--cold): the machine boots fresh"),
        "{out}"
    );
    assert!(out.contains("booting on"), "{out}");
    assert!(!state_file.exists());

    // `halt` of a suspended machine discards its state.
    project.ok(&["suspend"]);
    let out = project.ok(&["halt"]);
    assert!(out.contains("its saved state is discarded"), "{out}");
    assert_eq!(state(&project), "stopped");
    assert!(!dir.join("state").exists());
    project.ok(&["destroy", "--force"]);
    assert_eq!(machine_processes(&dir, &runtime), Vec::<String>::new());
}
