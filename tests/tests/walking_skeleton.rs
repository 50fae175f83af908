//! The whole path on a real Debian guest: download over HTTP, clone, boot files from
//! the disk, cloud-init seed, QEMU + passt, ssh with a pinned host key, halt, restart,
//! destroy.

use hvbox_tests::{processes_mentioning, require_tools, test_box, HttpServer, TestProject};
use std::time::{Duration, Instant};

/// The state of the project's one machine, from `status --json` (an array).
fn json_state(project: &TestProject) -> String {
    let status = project.ok(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&status).expect("status --json is JSON");
    let machines = value.as_array().expect("status --json is an array");
    assert_eq!(machines.len(), 1, "{status}");
    assert_eq!(machines[0]["name"], "default", "{status}");
    machines[0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn up_ssh_halt_up_destroy_on_a_debian_guest() {
    require_tools(&["qemu-system-x86_64", "passt", "ssh", "mmdebstrap"]);
    let test_box = test_box();
    let server = HttpServer::serve(test_box.dir.clone());
    let spec = format!(
        "box:\n  disk:\n    url: {}\n    digest: \"{}\"\nhostname: skeleton-guest\ncpus: 2\nmemory: 1G\ndisk: 3G\nengine: qemu\nssh:\n  user: tester\n  groups: [adm]\ncloud_init:\n  timezone: Europe/Berlin\n  write_files:\n    - {{path: /home/tester/hello.txt, content: \"hello from the spec\\n\", owner: \"tester:tester\", permissions: \"0600\"}}\n  user_data: |\n    #cloud-config\n    bootcmd:\n      - [sh, -c, \"echo merged-user-data > /run/hvbox-user-data\"]\n",
        server.url("disk.raw"),
        test_box.digest
    );
    let project = TestProject::new(&spec);

    // Two `up` at once: one creates and boots the machine; the machine lock refuses
    // the other at once, with who holds it.
    let timed_up = || {
        let started = Instant::now();
        let out = project.hvbox(&["up"]);
        (out, started.elapsed())
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(timed_up);
        let b = s.spawn(timed_up);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.0.status.success() != b.0.status.success(),
        "expected exactly one `hvbox up` to succeed:\nfirst ({}):\n{}{}\nsecond ({}):\n{}{}",
        a.0.status,
        String::from_utf8_lossy(&a.0.stdout),
        String::from_utf8_lossy(&a.0.stderr),
        b.0.status,
        String::from_utf8_lossy(&b.0.stdout),
        String::from_utf8_lossy(&b.0.stderr)
    );
    let ((up, _), (refused, refused_after)) = if a.0.status.success() { (a, b) } else { (b, a) };
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(
        refusal.contains("the machine `default` is already starting: another `hvbox up` (pid "),
        "{refusal}"
    );
    assert!(
        refused_after < Duration::from_secs(10),
        "the second `up` took {refused_after:?} to fail"
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr),
    );
    assert!(up.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("machine is up"), "{stdout}");
    // First-boot setup ran clean: hvbox reports cloud-init's errors.
    assert!(!stderr.contains("cloud-init reported errors"), "{stderr}");
    assert_eq!(server.requests_for("disk.raw"), 1);
    assert_eq!(json_state(&project), "running");
    // Made with umask 000 (see TestProject), the machine is still its owner's alone.
    assert_private(project.path());
    // Without `mounts:`, the project folder is in the guest at its own path, and
    // `hvbox ssh` from it starts there.
    let root = std::fs::canonicalize(project.path()).unwrap();
    let pwd = project.ok(&["ssh", "--", "pwd && cat hvbox.yaml"]);
    assert!(
        pwd.starts_with(&format!("{}\nbox:", root.display())),
        "{pwd}"
    );

    let hostname = project.ok(&["ssh", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "skeleton-guest");
    let user = project.ok(&["ssh", "--", "id", "-un"]);
    assert_eq!(user.trim(), "tester");
    // The spec's first-boot settings, and the user's own cloud-config merged in.
    let groups = project.ok(&["ssh", "--", "id", "-Gn"]);
    assert!(groups.split_whitespace().any(|g| g == "adm"), "{groups}");
    let file = project.ok(&[
        "ssh",
        "--",
        "stat -c '%U %a' ~/hello.txt && cat ~/hello.txt",
    ]);
    assert_eq!(file, "tester 600\nhello from the spec\n");
    let tz = project.ok(&["ssh", "--", "readlink", "/etc/localtime"]);
    assert!(tz.trim().ends_with("Europe/Berlin"), "{tz}");
    let merged = project.ok(&["ssh", "--", "cat", "/run/hvbox-user-data"]);
    assert_eq!(merged.trim(), "merged-user-data");
    // cloud-init's readiness beacon reached the serial console.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join(".hvbox/machines/default/state.json"))
            .unwrap(),
    )
    .unwrap();
    let serial =
        std::fs::read_to_string(project.path().join(".hvbox/machines/default/serial.log")).unwrap();
    let beacon = format!("[hvbox-ready {}]", state["instance_id"].as_str().unwrap());
    assert!(serial.contains(&beacon), "no {beacon} in the serial log");
    // `hvbox logs` shows the same log: the guest kernel's boot.
    let logs = project.ok(&["logs"]);
    assert!(
        logs.contains("Linux version"),
        "`hvbox logs` printed:\n{logs}"
    );
    // The guest's exit status comes back through `hvbox ssh`.
    let failing = project.hvbox(&["ssh", "--", "exit", "7"]);
    assert_eq!(failing.status.code(), Some(7));
    // The disk was grown to the spec's size and the guest grew its root into it.
    let root_size = project.ok(&["ssh", "--", "df", "--output=size", "-B1M", "/"]);
    let mib: u64 = root_size.lines().last().unwrap().trim().parse().unwrap();
    assert!(
        mib > 2500,
        "root filesystem is {mib} MiB, expected it grown to ~3G"
    );

    // The serial console: what the guest writes to ttyS0 reaches `hvbox console`.
    // (A marker written through ssh rather than the login prompt: under software
    // emulation the guest's getty can wait on udev longer than systemd allows.)
    let marker = "hvbox-console-check";
    let console = read_console_until(&project, marker);
    assert!(console.contains(marker), "console showed:\n{console}");

    project.ok(&["halt"]);
    assert_eq!(json_state(&project), "stopped");
    let dir = project.path().to_string_lossy().to_string();
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());

    // Restart with a larger `disk:`: no second download, same machine, its disk
    // grown and the guest's root filesystem with it.
    let spec_path = project.path().join("hvbox.yaml");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    std::fs::write(&spec_path, spec.replace("disk: 3G", "disk: 4G")).unwrap();
    let restarted = project.ok(&["up"]);
    assert!(
        restarted.contains("growing the disk from 3G to 4G"),
        "{restarted}"
    );
    assert_eq!(server.requests_for("disk.raw"), 1);
    let root_size = project.ok(&["ssh", "--", "df", "--output=size", "-B1M", "/"]);
    let mib: u64 = root_size.lines().last().unwrap().trim().parse().unwrap();
    assert!(
        mib > 3500,
        "root filesystem is {mib} MiB, expected it grown to ~4G"
    );
    // A disk never shrinks: a smaller `disk:` is refused, the machine untouched.
    std::fs::write(&spec_path, spec.replace("disk: 3G", "disk: 2G")).unwrap();
    let shrink = project.hvbox(&["up"]);
    let stderr = String::from_utf8_lossy(&shrink.stderr);
    assert_eq!(shrink.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("disk: 2G in hvbox.yaml is smaller than the machine's disk, which has 4G"),
        "{stderr}"
    );
    std::fs::write(&spec_path, spec.replace("disk: 3G", "disk: 4G")).unwrap();
    let hostname = project.ok(&["ssh", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "skeleton-guest");

    // A guest whose host key changed is refused, with hvbox saying why.
    project.ok(&[
        "ssh",
        "--",
        "sudo rm -f /etc/ssh/ssh_host_*_key* && sudo ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && sudo systemctl restart ssh",
    ]);
    // The shared connection, logged in before, would carry on: `-O exit` (an ssh
    // option, passed through) closes it, so the next ssh logs in anew.
    project.ok(&["ssh", "--", "-O", "exit"]);
    let refused = project.hvbox(&["ssh", "--", "true"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the guest presented an ssh host key other than the one hvbox generated for it"
        ),
        "{stderr}"
    );

    project.ok(&["destroy", "--force"]);
    assert!(
        !project.path().join(".hvbox").exists(),
        ".hvbox/ left behind"
    );
    // No supervisor, VMM or passt of this project survives (other projects' may run).
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
    assert_eq!(json_state(&project), "not created");
    // The cache keeps the box for the next machine.
    assert_eq!(project.cached_blobs().len(), 1);
}

/// `.hvbox/` and the machine's folder 0700, every file in it (disk, seed, keys,
/// logs, state) and the engine's sockets 0600.
fn assert_private(project: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    let machine = project.join(".hvbox/machines/default");
    for dir in [
        project.join(".hvbox"),
        project.join(".hvbox/machines"),
        machine.clone(),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&machine).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
            files += 1;
        }
    }
    assert!(files >= 8, "only {files} files in {}", machine.display());
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(machine.join("run.json")).unwrap()).unwrap();
    for socket in ["control_socket", "console_socket"] {
        let path = std::path::PathBuf::from(run[socket].as_str().unwrap());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// Attach `hvbox console`, have the guest write `marker` to its serial port until the
/// console shows it (or 120 s pass), then detach by ending the process.
fn read_console_until(project: &TestProject, marker: &str) -> String {
    use std::io::Read;
    let mut child = project.spawn(&["console"]);
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        project.ok(&[
            "ssh",
            "--",
            &format!("echo {marker} | sudo tee /dev/ttyS0 >/dev/null"),
        ]);
        // Collect for two seconds (the guest may print without pause).
        let round = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while let Ok(chunk) =
            rx.recv_timeout(round.saturating_duration_since(std::time::Instant::now()))
        {
            seen.extend(chunk);
        }
        if String::from_utf8_lossy(&seen).contains(marker) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&seen).into_owned()
}
