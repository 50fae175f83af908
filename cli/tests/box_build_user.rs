//! `hvbox box build` by a normal user: in a user namespace where the host allows
//! it, and where it does not, a refusal that says what is missing and what to do.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_user_without_subordinate_ids_is_told_what_to_do() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return hvbox_test_support::skip("running hvbox as user nobody needs root");
    }
    let subuids = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    assert!(
        !subuids.lines().any(|l| l.starts_with("nobody:")),
        "this host gives nobody subordinate ids; the test needs a user without"
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sources = tmp.path().join("sources.list");
    std::fs::write(&sources, "deb http://deb.invalid/debian bookworm main\n").unwrap();
    std::fs::set_permissions(&sources, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out_dir = tmp.path().join("box");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_hvbox"))
        .args(["box", "build", "mine", "--sources"])
        .arg(&sources)
        .arg("--output")
        .arg(&out_dir)
        .env("HOME", tmp.path())
        .env("HVBOX_DATA_DIR", tmp.path().join("data"))
        .output()
        .expect("running setpriv");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let said = stderr.trim();
    assert!(
        said.starts_with("hvbox: error: building a box as nobody, a normal user, needs a user namespace, but /etc/subuid gives nobody 0 subordinate uids in one range, and a Debian system needs 65536 (`sudo usermod --add-subuids "),
        "{said}"
    );
    assert!(
        said.ends_with(" nobody` gives them a range no one else has). Fix that, or build with `sudo hvbox box build …`, which stores the box for nobody all the same"),
        "{said}"
    );
    // The range offered is 65536 ids that no user has yet.
    let range = said
        .split("--add-subuids ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    let (start, end) = range.split_once('-').unwrap();
    let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
    assert_eq!(end - start + 1, 65536, "{range}");
    assert!(
        said.contains(&format!("--add-subgids {range} nobody")),
        "{said}"
    );
    for file in ["/etc/subuid", "/etc/subgid"] {
        for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let (Some(Ok(s)), Some(Ok(n))) = (
                fields.get(1).map(|f| f.parse::<u64>()),
                fields.get(2).map(|f| f.parse::<u64>()),
            ) else {
                continue;
            };
            assert!(s + n <= start || s > end, "{range} overlaps {file}: {line}");
        }
    }
    // Nothing half-made: no box folder, no scratch (only the folder's lock beside it).
    assert!(!out_dir.exists(), "{} was made", out_dir.display());
}
