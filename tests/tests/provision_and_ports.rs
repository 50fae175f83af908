//! Provisioners and a forwarded port on a real Debian guest (qemu engine), one
//! machine and one first boot: a step that fails stops `up` and the steps after
//! it, while the machine stays up with its port forwarded; `hvbox provision`
//! runs every step again; a restart does not provision a provisioned machine.
//! Automatic forwarding: a server the guest starts on a new port is reachable on
//! the host without any spec change (at another port when the host's is taken),
//! and stops being reachable when it exits.

use hvbox_tests::{processes_mentioning, require_tools, test_box, HttpServer, TestProject};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const PAGE: &str = "served from the guest by a provision step\n";
const COPIED: &str = "copied in by a file step\n";

/// Step 2 fails with status 3 until the file named by its argument exists.
const CHECK_SCRIPT: &str = r#"#!/bin/sh
echo "checking for $1 as $(id -un)"
if [ ! -e "$1" ]; then
    echo "not allowed yet: $1 is missing" >&2
    exit 3
fi
echo "allowed"
"#;

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    listener.local_addr().unwrap().port()
}

/// The body of GET `path` from 127.0.0.1:`port`, if the answer is a 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

/// Ask until the guest's web server answers (it starts in the background).
fn get_from_guest(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(body) = http_get(port, path) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "nothing answered GET {path} on 127.0.0.1:{port} within 120 s"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn count_lines(project: &TestProject) -> usize {
    project
        .ok(&["ssh", "--", "cat", "/var/tmp/provision-count"])
        .lines()
        .count()
}

#[test]
fn provisioners_and_a_forwarded_port_on_a_debian_guest() {
    require_tools(&["qemu-system-x86_64", "passt", "ssh", "mmdebstrap"]);
    let test_box = test_box();
    let server = HttpServer::serve(test_box.dir.clone());
    let port = free_port();
    let spec = format!(
        r#"box:
  disk:
    url: {url}
    digest: "{digest}"
hostname: provision-guest
engine: qemu
ssh:
  user: tester
ports:
  - {{host: {port}, guest: 8000}}
provision:
  - shell: |
      echo run >> /var/tmp/provision-count
      mkdir -p /srv/www
      printf '{page}' > /srv/www/index.txt
      # A run after the first finds the server of the one before.
      systemctl stop web.service 2>/dev/null || true
      systemctl reset-failed web.service 2>/dev/null || true
      systemd-run --collect --unit web python3 -m http.server 8000 --directory /srv/www
      echo "web server started"
  - script: scripts/check-allowed.sh
    args: [/home/tester/allow]
    privileged: false
  - file: files/motd.txt
    destination: /etc/hvbox-e2e/motd.txt
"#,
        url = server.url("disk.raw"),
        digest = test_box.digest,
        page = PAGE.replace('\n', "\\n"),
    );
    let project = TestProject::new(&spec);
    std::fs::create_dir_all(project.path().join("scripts")).unwrap();
    std::fs::write(
        project.path().join("scripts/check-allowed.sh"),
        CHECK_SCRIPT,
    )
    .unwrap();
    std::fs::create_dir_all(project.path().join("files")).unwrap();
    std::fs::write(project.path().join("files/motd.txt"), COPIED).unwrap();

    // First boot: step 1 runs, step 2 fails, step 3 does not run, `up` fails.
    let up = project.hvbox(&["up"]);
    let seen = output(&up);
    assert!(!up.status.success(), "`up` succeeded:\n{seen}");
    for expected in [
        "==> provision 1/3: shell: echo run >> /var/tmp/provision-count … (as root)",
        "    [1/3 shell] web server started",
        "==> provision 2/3: script scripts/check-allowed.sh /home/tester/allow (as tester)",
        "    [2/3 script check-allowed.sh] checking for /home/tester/allow as tester",
        "    [2/3 script check-allowed.sh] not allowed yet: /home/tester/allow is missing",
    ] {
        assert!(
            seen.lines().any(|l| l == expected),
            "no line {expected:?} in:\n{seen}"
        );
    }
    assert!(
        seen.contains("hvbox: error: provision step 2/3 (script scripts/check-allowed.sh /home/tester/allow, as tester) failed with exit status 3; the steps after it did not run."),
        "{seen}"
    );
    assert!(!seen.contains("provision 3/3"), "step 3 ran:\n{seen}");
    assert!(!seen.contains("==> machine is up"), "{seen}");
    let missing = project.hvbox(&["ssh", "--", "test", "-e", "/etc/hvbox-e2e/motd.txt"]);
    assert_eq!(missing.status.code(), Some(1), "step 3's file is there");

    // The machine stays up, and the forwarded port reaches step 1's server.
    assert_eq!(get_from_guest(port, "/index.txt"), PAGE);

    // Allowed now: `provision` runs all three steps. (`hvbox ssh` from the project
    // folder starts in the guest's view of it; the steps run in the home folder.)
    project.ok(&["ssh", "--", "touch", "~/allow"]);
    let provision = project.ok(&["provision"]);
    for expected in [
        "    [2/3 script check-allowed.sh] allowed",
        "==> provision 3/3: file files/motd.txt -> /etc/hvbox-e2e/motd.txt (as root)",
        "==> provisioned: 3 steps done",
    ] {
        assert!(
            provision.lines().any(|l| l == expected),
            "no line {expected:?} in:\n{provision}"
        );
    }
    assert_eq!(count_lines(&project), 2);
    let copied = project.ok(&[
        "ssh",
        "--",
        "stat -c %U /etc/hvbox-e2e/motd.txt && cat /etc/hvbox-e2e/motd.txt",
    ]);
    assert_eq!(copied, format!("root\n{COPIED}"));
    assert_eq!(get_from_guest(port, "/index.txt"), PAGE);

    auto_forwarding(&project, port);

    // A restart of a provisioned machine provisions nothing.
    project.ok(&["halt"]);
    let restart = project.ok(&["up"]);
    println!("$ hvbox up\n{restart}");
    assert!(restart.contains("==> already provisioned"), "{restart}");
    assert!(
        restart.contains(&format!(
            "==> forwarded port: 127.0.0.1:{port} -> 8000/tcp\n"
        )),
        "{restart}"
    );
    assert!(!restart.contains("==> provision 1/3"), "{restart}");
    assert_eq!(count_lines(&project), 2);

    let dir = project.path().to_string_lossy().to_string();
    project.ok(&["destroy", "--force"]);
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
    assert!(
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok(),
        "port {port} is still held after destroy"
    );
}

/// The automatic forwards `hvbox port --json` lists, as (host, guest).
fn auto_forwards(project: &TestProject) -> Vec<(u64, u64)> {
    let json: serde_json::Value =
        serde_json::from_str(&project.ok(&["port", "--json"])).expect("port --json");
    json["forwards"]
        .as_array()
        .expect("a list of forwards")
        .iter()
        .filter(|f| f["kind"] == "auto")
        .map(|f| (f["host"].as_u64().unwrap(), f["guest"].as_u64().unwrap()))
        .collect()
}

/// Wait until `done` holds, or fail saying `what` after 60 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A web server started over `hvbox ssh` on a port hvbox.yaml does not name is
/// forwarded on its own; one on a port taken on the host is forwarded elsewhere;
/// both are withdrawn when the servers exit. The declared port (8000, served by
/// the provision step) is not forwarded a second time.
fn auto_forwarding(project: &TestProject, declared: u16) {
    let auto = free_port();
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a port to hold");
    let held = taken.local_addr().unwrap().port();
    let serve = |unit: &str, port: u16| {
        project.ok(&[
            "ssh",
            "--",
            &format!("sudo systemd-run --collect --unit {unit} python3 -m http.server {port} --directory /srv/www"),
        ]);
    };
    serve("auto-web", auto);
    serve("held-web", held);
    assert_eq!(get_from_guest(auto, "/index.txt"), PAGE);
    let mut moved = None;
    wait_until(&format!("guest port {held} forwarded elsewhere"), || {
        moved = auto_forwards(project)
            .into_iter()
            .find(|(_, guest)| *guest == u64::from(held))
            .map(|(host, _)| host as u16);
        moved.is_some()
    });
    let moved = moved.unwrap();
    assert_ne!(moved, held, "the taken port was forwarded onto itself");
    assert_eq!(get_from_guest(moved, "/index.txt"), PAGE);
    let forwards = auto_forwards(project);
    assert!(
        forwards.contains(&(u64::from(auto), u64::from(auto))),
        "{forwards:?}"
    );
    assert!(
        !forwards.iter().any(|(_, g)| *g == 8000 || *g == 22),
        "a declared port or sshd was forwarded automatically: {forwards:?}"
    );
    let table = project.ok(&["port"]);
    println!("$ hvbox port\n{table}");
    for expected in [
        format!("127.0.0.1:{declared}"),
        format!("127.0.0.1:{auto}"),
        format!("{held}/tcp"),
        format!("auto ({held} is taken on the host)"),
    ] {
        assert!(table.contains(&expected), "no {expected:?} in:\n{table}");
    }
    let log = std::fs::read_to_string(
        project
            .path()
            .join(".hvbox/machines/default/supervisor.log"),
    )
    .unwrap_or_default();
    assert!(
        log.contains(&format!(
            "ports: forwarding 127.0.0.1:{auto} -> guest port {auto}\n"
        )),
        "{log}"
    );

    project.ok(&["ssh", "--", "sudo systemctl stop auto-web held-web"]);
    wait_until("automatic forwards withdrawn", || {
        auto_forwards(project).is_empty()
    });
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, auto)).is_err(),
        "127.0.0.1:{auto} still answers after the guest's server exited"
    );
    let log = std::fs::read_to_string(
        project
            .path()
            .join(".hvbox/machines/default/supervisor.log"),
    )
    .unwrap_or_default();
    println!("supervisor.log:\n{log}");
    assert!(
        log.contains(&format!(
            "ports: withdrew 127.0.0.1:{auto} (the guest no longer listens on port {auto})"
        )),
        "{log}"
    );
    drop(taken);
}
