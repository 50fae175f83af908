//! Two machines of one spec on real Debian guests: both come up from one download,
//! run at the same time with their own ports, keys and hostnames, and stop and go
//! one by one. One of them also survives its engine's SIGKILL (crash consistency),
//! on the machine already up rather than a boot of its own.

use hvbox_tests::crash::{check_root_fs, kill_engine, processes_of, run_facts};
use hvbox_tests::{processes_mentioning, require_tools, test_box, HttpServer, TestProject};

/// Each machine's `status --json` entry, in the spec's order.
fn machines(project: &TestProject) -> Vec<serde_json::Value> {
    let status = project.ok(&["status", "--json"]);
    serde_json::from_str(&status).expect("status --json is a JSON array")
}

fn states(project: &TestProject) -> Vec<(String, String)> {
    machines(project)
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> Vec<(String, String)> {
    vec![("a".into(), a.into()), ("b".into(), b.into())]
}

#[test]
fn two_machines_up_ssh_halt_one_destroy_both() {
    require_tools(&[
        "qemu-system-x86_64",
        "passt",
        "ssh",
        "mmdebstrap",
        "sfdisk",
        "e2fsck",
    ]);
    let test_box = test_box();
    let server = HttpServer::serve(test_box.dir.clone());
    // `a` sets its hostname; `b` gets its name as hostname.
    let spec = format!(
        "box:\n  disk:\n    url: {}\n    digest: \"{}\"\nengine: qemu\ncpus: 1\nmemory: 768M\nssh:\n  user: tester\nmachines:\n  a:\n    hostname: alpha\n  b:\n",
        server.url("disk.raw"),
        test_box.digest
    );
    let project = TestProject::new(&spec);
    let dir = project.path().to_string_lossy().to_string();

    let started = std::time::Instant::now();
    let up = project.ok(&["up", "--jobs", "2"]);
    let up_secs = started.elapsed().as_secs_f64();
    assert!(up.contains("==> a: machine is up"), "{up}");
    assert!(up.contains("==> b: machine is up"), "{up}");
    // Both boot at once: each starts booting before either is up.
    let at = |line: &str| {
        up.find(line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{up}"))
    };
    let first_up = at("==> a: machine is up").min(at("==> b: machine is up"));
    assert!(
        at("==> a: booting on") < first_up && at("==> b: booting on") < first_up,
        "{up}"
    );
    eprintln!("two machines up at once (--jobs 2): {up_secs:.1} s");
    // One box for both: downloaded once, locked once.
    assert_eq!(server.requests_for("disk.raw"), 1);
    let lock = std::fs::read_to_string(project.path().join("hvbox.lock")).unwrap();
    assert!(lock.contains("version: 1\nbox:\n"), "{lock}");

    let running = machines(&project);
    assert_eq!(states(&project), pair("running", "running"));
    let ports: Vec<u64> = running
        .iter()
        .map(|m| {
            m["ssh_port"]
                .as_u64()
                .expect("a running machine has an ssh port")
        })
        .collect();
    assert_ne!(ports[0], ports[1], "both machines on one ssh port");

    let hostname = project.ok(&["ssh", "a", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "alpha");
    let hostname = project.ok(&["ssh", "b", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "b");
    // Each machine has its own identity, and its own serial log says so.
    let machine_dir = |name: &str| project.path().join(".hvbox/machines").join(name);
    let instance_id = |name: &str| {
        let state = std::fs::read_to_string(machine_dir(name).join("state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        state["instance_id"].as_str().unwrap().to_string()
    };
    let (id_a, id_b) = (instance_id("a"), instance_id("b"));
    assert_ne!(id_a, id_b);
    let serial_b = std::fs::read_to_string(machine_dir("b").join("serial.log")).unwrap();
    assert!(serial_b.contains(&format!("[hvbox-ready {id_b}]")));
    assert!(!serial_b.contains(&id_a), "a's boot in b's serial log");
    // Without a name, ssh does not guess.
    let unnamed = project.hvbox(&["ssh", "--", "true"]);
    let stderr = String::from_utf8_lossy(&unnamed.stderr);
    assert!(!unnamed.status.success());
    assert!(stderr.contains("(machines: a, b)"), "{stderr}");

    let crash_started = std::time::Instant::now();
    crash_and_come_back(&project, &machine_dir("a"));
    // What this step adds to the test (one more boot of `a`), for CI's time budget.
    eprintln!("crash step: {} s", crash_started.elapsed().as_secs());

    project.ok(&["halt", "b"]);
    assert_eq!(states(&project), pair("running", "stopped"));
    assert_eq!(
        processes_mentioning(&machine_dir("b").to_string_lossy()),
        Vec::<String>::new()
    );
    let hostname = project.ok(&["ssh", "a", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "alpha", "halting b touched a");

    project.ok(&["destroy", "--force"]);
    assert!(
        !project.path().join(".hvbox").exists(),
        ".hvbox/ left behind"
    );
    // No supervisor, VMM or passt of this project survives (other projects' may run).
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
    assert_eq!(states(&project), pair("not created", "not created"));
}

/// `a` writes and syncs a file, its engine is killed with SIGKILL (a power cut, as
/// far as the disk can tell), and then: no helper process of it is left, the root
/// file system checked on the host is clean, and `up` brings it back with the file.
fn crash_and_come_back(project: &TestProject, dir: &std::path::Path) {
    project.ok(&["ssh", "a", "--", "echo survives-a-kill > crash.txt && sync"]);
    let before = run_facts(dir);
    assert!(
        !processes_of(&before.runtime_dir).is_empty(),
        "no passt found by its runtime folder {}",
        before.runtime_dir.display()
    );
    kill_engine(project, "a", before.vm_pid);
    // The supervisor saw the engine die and stopped passt: nothing of `a` runs.
    assert_eq!(processes_of(dir), Vec::<String>::new());
    assert_eq!(processes_of(&before.runtime_dir), Vec::<String>::new());

    let report = check_root_fs(&dir.join("disk.raw"));
    assert!(report.contains("files"), "{report}");

    let up = project.ok(&["up", "a"]);
    assert!(up.contains("==> a: machine is up"), "{up}");
    let content = project.ok(&["ssh", "a", "--", "cat", "crash.txt"]);
    assert_eq!(content.trim(), "survives-a-kill");
    // The seed and the disks are the ones cloud-init already applied, so hvbox's box
    // let it skip this boot, and networkd brought the NIC up as cloud-init left it,
    // with the DNS server from passt's DHCP.
    let serial = std::fs::read_to_string(dir.join("serial.log")).unwrap();
    assert!(
        serial.contains("cloud-init skipped on this boot"),
        "no skip in the serial log"
    );
    let status = project.ok(&["ssh", "a", "--", "cloud-init status; resolvectl dns eth0"]);
    assert!(status.contains("status: disabled"), "{status}");
    let dns = status.lines().find(|l| l.contains("(eth0):")).unwrap_or("");
    assert!(
        dns.split_once("):")
            .is_some_and(|(_, servers)| !servers.trim().is_empty()),
        "no DNS server on eth0:\n{status}"
    );
    // One passt for the new run, none left over from the killed one.
    let after = run_facts(dir);
    let passts: Vec<String> = processes_of(&after.runtime_dir)
        .into_iter()
        .filter(|p| {
            p.split_once(": ")
                .is_some_and(|(_, cmd)| cmd.starts_with("passt "))
        })
        .collect();
    assert_eq!(passts.len(), 1, "{passts:?}");
}
