//! The whole path on a real Debian guest: download over HTTP, clone, boot files from
//! the disk, cloud-init seed, QEMU + passt, ssh with a pinned host key, halt, restart,
//! destroy.

use hvbox_tests::{processes_mentioning, require_tools, test_box, HttpServer, TestProject};

fn json_state(project: &TestProject) -> String {
    let status = project.ok(&["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&status).expect("status --json is JSON");
    value["state"].as_str().unwrap_or_default().to_string()
}

#[test]
fn up_ssh_halt_up_destroy_on_a_debian_guest() {
    require_tools(&["qemu-system-x86_64", "passt", "ssh", "mmdebstrap"]);
    let test_box = test_box();
    let server = HttpServer::serve(test_box.dir.clone());
    let spec = format!(
        "box:\n  disk:\n    url: {}\n    digest: \"{}\"\nhostname: skeleton-guest\ncpus: 2\nmemory: 1G\ndisk: 3G\nengine: qemu\nssh:\n  user: tester\n",
        server.url("disk.raw"),
        test_box.digest
    );
    let project = TestProject::new(&spec);

    let up = project.ok(&["up"]);
    assert!(up.contains("machine is up"), "{up}");
    assert_eq!(server.requests_for("disk.raw"), 1);
    assert_eq!(json_state(&project), "running");

    let hostname = project.ok(&["ssh", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "skeleton-guest");
    let user = project.ok(&["ssh", "--", "id", "-un"]);
    assert_eq!(user.trim(), "tester");
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

    project.ok(&["halt"]);
    assert_eq!(json_state(&project), "stopped");
    let dir = project.path().to_string_lossy().to_string();
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());

    // Restart: no second download, same machine.
    project.ok(&["up"]);
    assert_eq!(server.requests_for("disk.raw"), 1);
    let hostname = project.ok(&["ssh", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "skeleton-guest");

    project.ok(&["destroy"]);
    assert!(
        !project.path().join(".hvbox").exists(),
        ".hvbox/ left behind"
    );
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
    assert_eq!(
        processes_mentioning("hvbox supervise"),
        Vec::<String>::new()
    );
    assert_eq!(json_state(&project), "not created");
    // The cache keeps the box for the next machine.
    assert_eq!(project.cached_blobs().len(), 1);
}
