//! After a boot: is every `mounts:` folder mounted in the guest? A guest kernel
//! without virtio-fs would otherwise leave an empty folder where the project should
//! be, and nothing would say why.

use crate::machine::{Machine, MachineState};
use crate::spec::mounts::Mount;
use crate::ssh;
use anyhow::{bail, Result};

/// Ask the guest which mounts are in place; an error names each one that is not,
/// and why when the guest's kernel has no virtiofs.
pub fn verify(machine: &Machine, state: &MachineState, port: u16, mounts: &[Mount]) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let report = ssh::capture(machine, state, port, &script(mounts))?;
    verdict(&report, mounts)
}

/// For each mount a line `yes PATH` or `no PATH`, then `virtiofs yes|no`: whether
/// the kernel knows the filesystem (built in, or as a module it can load).
fn script(mounts: &[Mount]) -> String {
    let mut script = String::new();
    for m in mounts {
        let path = crate::kernel_install::shell_quote(&m.guest.to_string_lossy());
        script.push_str(&format!(
            "if findmnt -rn -t virtiofs -M {path} >/dev/null; then echo yes; else echo no; fi; "
        ));
    }
    script.push_str(
        "if grep -qw virtiofs /proc/filesystems || modinfo virtiofs >/dev/null 2>&1; then echo virtiofs yes; else echo virtiofs no; fi",
    );
    script
}

fn verdict(report: &str, mounts: &[Mount]) -> Result<()> {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let missing: Vec<String> = mounts
        .iter()
        .zip(&lines)
        .filter(|(_, line)| **line != "yes")
        .map(|(m, _)| format!("{} at {}", m.host.display(), m.guest.display()))
        .collect();
    if missing.is_empty() && lines.len() > mounts.len() {
        return Ok(());
    }
    let which = missing.join(", ");
    if lines.last() == Some(&"virtiofs no") {
        bail!(
            "the guest's kernel has no virtiofs (CONFIG_VIRTIO_FS), so the mount of {which} cannot be made: boot a kernel with virtio-fs (`hvbox upgrade-kernel`), or set `mounts: []` in hvbox.yaml and use `hvbox copy`. The machine is up."
        );
    }
    bail!(
        "the guest did not mount {which}; `hvbox ssh -- sudo journalctl -b -g virtiofs` may say why. The machine is up."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<Mount> {
        vec![
            Mount {
                host: "/home/me/proj".into(),
                guest: "/home/me/proj".into(),
                read_only: false,
            },
            Mount {
                host: "/data".into(),
                guest: "/srv/data set".into(),
                read_only: true,
            },
        ]
    }

    #[test]
    fn every_mount_in_place_is_fine() {
        assert!(verdict("yes\nyes\nvirtiofs yes\n", &mounts()).is_ok());
    }

    #[test]
    fn a_kernel_without_virtiofs_is_named_with_each_mount() {
        let err = verdict("no\nno\nvirtiofs no\n", &mounts())
            .unwrap_err()
            .to_string();
        assert!(err.contains("the guest's kernel has no virtiofs"), "{err}");
        assert!(
            err.contains("/home/me/proj at /home/me/proj, /data at /srv/data set"),
            "{err}"
        );
    }

    #[test]
    fn a_mount_that_did_not_come_says_which() {
        let err = verdict("yes\nno\nvirtiofs yes\n", &mounts())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the guest did not mount /data at /srv/data set"),
            "{err}"
        );
    }

    #[test]
    fn the_script_asks_about_each_path_as_one_word() {
        let s = script(&mounts());
        assert!(
            s.contains("findmnt -rn -t virtiofs -M '/srv/data set'"),
            "{s}"
        );
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .status()
            .unwrap();
        assert!(out.success());
    }
}
