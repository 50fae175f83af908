//! The project folder inside a real Debian guest (qemu engine, virtio-fs served by
//! virtiofsd), and `hvbox copy`: what either side writes the other sees, with the
//! folder owner's ids on the host and the login user's in the guest; a read-only
//! mount refuses writes; the mounts come back after halt and up; `hvbox ssh` starts
//! in the guest folder matching the host's; no virtiofsd outlives its machine.

use hvbox_tests::{processes_mentioning, require_tools, test_box, HttpServer, TestProject};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// The host owner the test gives the shared folders: not root, so that the mapping
/// to the guest's login user shows.
const OWNER: u32 = 1234;

fn chown(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{OWNER}:{OWNER}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", path.display());
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=hvbox",
            "-c",
            "user.email=hvbox@example.org",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `hvbox ARGS` from `dir` (a folder of the project).
fn hvbox_in(project: &TestProject, dir: &Path, args: &[&str]) -> std::process::Output {
    project.command(args).current_dir(dir).output().unwrap()
}

#[test]
fn project_folder_and_a_read_only_mount_in_the_guest_and_copy() {
    require_tools(&[
        "qemu-system-x86_64",
        "passt",
        "ssh",
        "scp",
        "virtiofsd",
        "git",
        "mmdebstrap",
    ]);
    let test_box = test_box();
    let server = HttpServer::serve(test_box.dir.clone());
    let project = TestProject::new("");
    let root = std::fs::canonicalize(project.path()).unwrap();
    let ro = root.join("reference");
    std::fs::create_dir(&ro).unwrap();
    std::fs::write(ro.join("facts.txt"), "kept as it is\n").unwrap();
    let spec = format!(
        "box:\n  disk:\n    url: {}\n    digest: \"{}\"\nengine: qemu\ncpus: 1\nmemory: 1G\nssh:\n  user: tester\nmounts:\n  - {{host: ., guest: {}}}\n  - {{host: reference, guest: /srv/reference, read_only: true}}\n",
        server.url("disk.raw"),
        test_box.digest,
        root.display()
    );
    std::fs::write(root.join("hvbox.yaml"), spec).unwrap();
    chown(&root);
    let guest = |cmd: &str| project.ok(&["ssh", "--", cmd]);

    project.ok(&["up", "--quiet"]);
    let status = project.ok(&["status", "--json"]);
    assert!(status.contains("/srv/reference"), "{status}");

    // A file the host writes after `up` is read in the guest, at the same path.
    std::fs::write(root.join("from-host.txt"), "written on the host\n").unwrap();
    chown(&root.join("from-host.txt"));
    let r = root.display();
    assert_eq!(
        guest(&format!("cat {r}/from-host.txt")),
        "written on the host\n"
    );
    // The folder owner's files are the login user's in the guest.
    assert_eq!(
        guest(&format!("stat -c %U:%G {r}/from-host.txt")).trim(),
        "tester:tester"
    );

    // What the login user writes in the guest belongs to the folder's owner here.
    guest(&format!("echo written in the guest > {r}/from-guest.txt"));
    let made = root.join("from-guest.txt");
    assert_eq!(
        std::fs::read_to_string(&made).unwrap(),
        "written in the guest\n"
    );
    let meta = std::fs::metadata(&made).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (OWNER, OWNER));

    // Renames and deletes, both ways.
    std::fs::rename(root.join("from-host.txt"), root.join("renamed-on-host.txt")).unwrap();
    guest(&format!("mv {r}/from-guest.txt {r}/renamed-in-guest.txt"));
    assert!(root.join("renamed-in-guest.txt").exists() && !made.exists());
    let listing = guest(&format!("ls {r}"));
    assert!(
        listing.contains("renamed-on-host.txt") && !listing.contains("from-host.txt"),
        "{listing}"
    );
    std::fs::remove_file(root.join("renamed-in-guest.txt")).unwrap();
    guest(&format!("rm {r}/renamed-on-host.txt"));
    assert!(!root.join("renamed-on-host.txt").exists());
    assert!(!guest(&format!("ls {r}")).contains("renamed-in-guest.txt"));

    // git in the guest on a repository made on the host.
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("README"), "one\n").unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    chown(&repo);
    assert_eq!(guest(&format!("cd {r}/repo && git status --porcelain")), "");
    std::fs::write(repo.join("README"), "two\n").unwrap();
    // The guest's kernel keeps a file's attributes for virtiofsd's one-second cache
    // timeout (`--cache auto`): a change on the host shows once that has passed.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(
        guest(&format!("cd {r}/repo && git status --porcelain")).trim(),
        "M README"
    );

    // The read-only mount refuses writes, and from virtiofsd itself: remounted
    // read-write in the guest, it still does; the host file stays as it was.
    let refused = project.hvbox(&[
        "ssh",
        "--",
        "sudo mount -o remount,rw /srv/reference && echo changed > /srv/reference/facts.txt",
    ]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ro.join("facts.txt")).unwrap(),
        "kept as it is\n"
    );
    assert_eq!(guest("cat /srv/reference/facts.txt"), "kept as it is\n");

    // `hvbox ssh` from a host sub-folder starts in the matching guest folder.
    let out = hvbox_in(&project, &repo, &["ssh", "--", "pwd"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        repo.display().to_string()
    );

    // `hvbox copy`, a folder each way, and a clear failure.
    let outbound = root.join("outbound");
    std::fs::create_dir_all(outbound.join("deep")).unwrap();
    std::fs::write(outbound.join("deep/file.txt"), "copied in\n").unwrap();
    project.ok(&["copy", outbound.to_str().unwrap(), ":/tmp/"]);
    assert_eq!(guest("cat /tmp/outbound/deep/file.txt"), "copied in\n");
    guest("mkdir -p /tmp/back/sub && echo copied out > /tmp/back/sub/out.txt");
    let back = tempfile::tempdir().unwrap();
    project.ok(&["copy", "default:/tmp/back", back.path().to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(back.path().join("back/sub/out.txt")).unwrap(),
        "copied out\n"
    );
    let failed = project.hvbox(&["copy", ":/tmp/not-there", back.path().to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("copying failed"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );

    // Halt and up: the mounts are back.
    let dir = root.display().to_string();
    project.ok(&["halt"]);
    assert_eq!(
        processes_mentioning(&format!("--shared-dir {dir}")),
        Vec::<String>::new()
    );
    project.ok(&["up", "--quiet"]);
    assert_eq!(guest("cat /srv/reference/facts.txt"), "kept as it is\n");
    assert_eq!(guest(&format!("cat {r}/repo/README")), "two\n");

    // A killed supervisor takes its virtiofsds along; destroy leaves none either.
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(".hvbox/machines/default/run.json")).unwrap(),
    )
    .unwrap();
    let virtiofsds = run["virtiofsd_pids"].as_array().unwrap().len();
    assert_eq!(virtiofsds, 2, "{run}");
    let supervisor = run["supervisor_pid"].as_u64().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-9", &supervisor])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_mentioning(&format!("--shared-dir {dir}")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "virtiofsd outlived its supervisor"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    project.ok(&["destroy", "--force"]);
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
}
