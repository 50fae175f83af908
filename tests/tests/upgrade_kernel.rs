//! `hvbox upgrade-kernel` on a real Debian guest (qemu engine): a newer kernel package
//! installed in the guest boots from the disk (which has no grub.cfg: the newest kernel
//! is its default); `--rollback` goes back; a kernel that cannot come up is rolled back
//! by itself; with a static grub.cfg naming the old kernel, the installed one boots
//! pinned.

use hvbox_tests::kernel_upgrade::upgrade_fixture;
use hvbox_tests::{require_tools, TestProject};

fn uname(project: &TestProject) -> String {
    project.ok(&["ssh", "--", "uname", "-r"]).trim().to_string()
}

fn history(project: &TestProject) -> serde_json::Value {
    serde_json::from_str(&project.ok(&["kernels", "--json"])).expect("kernels --json is JSON")
}

fn versions(history: &serde_json::Value) -> Vec<String> {
    history["kernels"]
        .as_array()
        .expect("kernels array")
        .iter()
        .map(|k| k["version"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn upgrade_rollback_and_automatic_rollback() {
    require_tools(&[
        "qemu-system-x86_64",
        "passt",
        "ssh",
        "mmdebstrap",
        "apt-get",
    ]);
    let fixture = match upgrade_fixture("bookworm") {
        Ok(f) => f,
        Err(reason) => {
            return hvbox_test_support::skip(format!("the kernel upgrade test: {reason}"));
        }
    };
    let (old, new) = (&fixture.old_version, &fixture.new_version);
    let spec = format!(
        "{}hostname: upgrade\ncpus: 2\nmemory: 1G\ndisk: 3G\nengine: qemu\n",
        fixture.old_box.file_box_yaml()
    );
    let project = TestProject::new(&spec);
    project.ok(&["up", "--quiet"]);
    assert_eq!(&uname(&project), old);

    // The upgrade: package installed in the guest, guest off, boot files re-read.
    let package = fixture.new_package.to_str().unwrap();
    let upgraded = project.ok(&["upgrade-kernel", "--package", package]);
    assert!(
        upgraded.contains(&format!("kernel upgraded: {old} -> {new}")),
        "{upgraded}"
    );
    assert_eq!(&uname(&project), new);
    let h = history(&project);
    assert_eq!(versions(&h), [old.clone(), new.clone()]);
    assert_eq!(h["kernels"][1]["current"], true);
    assert!(h["pinned"].is_null());

    // Rollback on demand: the previous kernel, pinned across restarts.
    project.ok(&["upgrade-kernel", "--rollback"]);
    assert_eq!(&uname(&project), old);
    project.ok(&["halt"]);
    project.ok(&["up", "--quiet"]);
    assert_eq!(&uname(&project), old, "the pin holds across halt and up");
    assert_eq!(history(&project)["pinned"], old.as_str());

    // A kernel that cannot come up (its initrd destroyed): back to the old one.
    project.ok(&[
        "ssh",
        "--",
        &format!("echo broken | sudo tee /boot/initrd.img-{new} >/dev/null"),
    ]);
    let failed = project.hvbox(&["upgrade-kernel", "--no-install", "--timeout", "300"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("the new kernel did not come up"),
        "{stderr}"
    );
    assert!(stderr.contains("Kernel panic"), "{stderr}");
    assert!(
        stderr.contains(&format!("rolled back: the machine runs {old} again")),
        "{stderr}"
    );
    assert_eq!(&uname(&project), old);
    let h = history(&project);
    assert_eq!(h["pinned"], old.as_str());
    // The kernel that never reached ssh is not in the history.
    assert_eq!(versions(&h).last(), Some(old));

    // A static grub.cfg (no grub package in the guest regenerates it) that names the
    // old kernel: the kernel the upgrade installs is booted all the same, pinned.
    let root = project.ok(&["ssh", "--", "grep -o 'root=[^ ]*' /proc/cmdline"]);
    project.ok(&[
        "ssh",
        "--",
        &format!(
            "sudo DEBIAN_FRONTEND=noninteractive apt-get purge -y -q linux-image-{new} >/dev/null && \
             sudo mkdir -p /boot/grub && printf '%s\\n' 'set default=0' \
             \"menuentry 'Debian GNU/Linux' {{\" \
             '  linux /boot/vmlinuz-{old} {root} ro' '  initrd /boot/initrd.img-{old}' '}}' \
             | sudo tee /boot/grub/grub.cfg >/dev/null",
            root = root.trim()
        ),
    ]);
    let upgraded = project.ok(&["upgrade-kernel", "--package", package]);
    // "on partition 1 (root)": the test box names its root partition.
    assert!(
        upgraded.contains(&format!(
            "the disk still defaults to {old}: /boot/grub/grub.cfg on partition 1"
        )) && upgraded.contains(&format!(
            "names it and was not regenerated when {new} was installed"
        )),
        "{upgraded}"
    );
    assert!(
        upgraded.contains(&format!("kernel upgraded: {old} -> {new} (pinned)")),
        "{upgraded}"
    );
    assert_eq!(&uname(&project), new);
    assert_eq!(history(&project)["pinned"], new.as_str());

    project.ok(&["destroy", "--force"]);
}
