//! How a built box boots: hvbox's fast configuration, or Debian genericcloud's own
//! (for comparison, as `scripts/bench-boot` does).
//!
//! The fast one differs where `systemd-analyze blame` showed a Debian cloud guest
//! spending its boot: ifupdown waits for udev to settle and runs dhclient, and
//! cloud-init's four stages run on every boot. It has systemd-networkd bring up the
//! NIC that cloud-init configured, and lets cloud-init run only when its seed or the
//! disks changed (see `guest/hvbox-seed-check`). The seed itself stays standard
//! NoCloud, so stock cloud images boot from it unchanged.

/// The guest's boot configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BootProfile {
    /// systemd-networkd and systemd-resolved, cloud-init only when there is work.
    #[default]
    Fast,
    /// ifupdown with dhclient, cloud-init on every boot: Debian genericcloud's setup.
    Stock,
}

const SEED_CHECK: &str = include_str!("guest/hvbox-seed-check");
const SEED_CHECK_PATH: &str = "usr/libexec/hvbox/hvbox-seed-check";

const SEED_CHECK_UNIT: &str = "[Unit]
Description=hvbox: let cloud-init run only when its seed or the disks changed
DefaultDependencies=no
After=systemd-remount-fs.service
Before=cloud-init-local.service

[Service]
Type=oneshot
ExecStart=/usr/libexec/hvbox/hvbox-seed-check check
StandardOutput=journal+console
";

/// cloud-init's four stages skip on a boot where the check wrote this file (cloud-init's
/// own generator writes it too when it disables cloud-init).
const SKIP_CONDITION: &str = "[Unit]\nConditionPathExists=!/run/cloud-init/disabled\n";

/// The NIC keeps the name cloud-init gave it on boots cloud-init skips: hvbox boots
/// with `net.ifnames=0`, and cloud-init's networkd files match the name and MAC.
const CLOUD_INIT_NETWORK: &str = "system_info:\n  network:\n    renderers: [networkd]\n";

/// The guest's only network is passt's: nothing answers multicast name queries there,
/// and an LLMNR listener on every address would be forwarded to the host as a port.
const RESOLVED: &str = "[Resolve]\nLLMNR=no\nMulticastDNS=no\n";

/// Units a development VM does without. e2scrub checks LVM snapshots (there are
/// none) and took seconds of each boot; the disk is mounted with `discard`, so a
/// weekly fstrim has nothing to do; pstore keeps crash records of EFI firmware, which
/// direct kernel boot has not; apt's timers would start updates in the middle of a
/// provisioning run, holding apt's lock.
const NOT_FOR_A_DEVELOPMENT_VM: &[&str] = &[
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-pstore.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
];

impl BootProfile {
    /// Packages beyond the common set.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            BootProfile::Fast => &["systemd-resolved"],
            BootProfile::Stock => &["ifupdown", "isc-dhcp-client"],
        }
    }

    /// Part of the recipe: a box of another profile is another box.
    pub fn name(self) -> &'static str {
        match self {
            BootProfile::Fast => "fast",
            BootProfile::Stock => "stock",
        }
    }

    /// mmdebstrap customize hooks (run as root with the new system at `$1`).
    pub fn hooks(self) -> Vec<String> {
        if self == BootProfile::Stock {
            return Vec::new();
        }
        let files = [
            (SEED_CHECK_PATH, SEED_CHECK.to_string()),
            (
                "etc/systemd/system/hvbox-seed-check.service",
                SEED_CHECK_UNIT.to_string(),
            ),
            (
                "etc/systemd/system/cloud-init-local.service.d/hvbox.conf",
                format!("{SKIP_CONDITION}Wants=hvbox-seed-check.service\nAfter=hvbox-seed-check.service\n"),
            ),
            (
                "etc/systemd/system/cloud-init.service.d/hvbox.conf",
                SKIP_CONDITION.to_string(),
            ),
            (
                "etc/systemd/system/cloud-config.service.d/hvbox.conf",
                SKIP_CONDITION.to_string(),
            ),
            (
                "etc/systemd/system/cloud-final.service.d/hvbox.conf",
                format!("{SKIP_CONDITION}\n[Service]\nExecStartPost=/usr/libexec/hvbox/hvbox-seed-check record\n"),
            ),
            (
                "etc/cloud/cloud.cfg.d/91-hvbox-network.cfg",
                CLOUD_INIT_NETWORK.to_string(),
            ),
            (
                "etc/systemd/resolved.conf.d/hvbox.conf",
                RESOLVED.to_string(),
            ),
        ];
        let mut hooks: Vec<String> = files
            .iter()
            .map(|(path, text)| {
                format!(
                    "mkdir -p \"$1/{}\" && printf '%s' {} > \"$1/{path}\"",
                    parent(path),
                    crate::build::shell_quote(text)
                )
            })
            .collect();
        hooks.push(format!("chmod 0755 \"$1/{SEED_CHECK_PATH}\""));
        hooks.push(
            "chroot \"$1\" systemctl enable systemd-networkd.service systemd-resolved.service"
                .to_string(),
        );
        // A unit another suite does not ship is passed over.
        hooks.push(format!(
            "for unit in {}; do if [ -e \"$1/usr/lib/systemd/system/$unit\" ] || [ -e \"$1/lib/systemd/system/$unit\" ]; then chroot \"$1\" systemctl disable \"$unit\" || exit 1; fi; done",
            NOT_FOR_A_DEVELOPMENT_VM.join(" ")
        ));
        hooks
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stock_is_debian_as_it_comes() {
        assert!(BootProfile::Stock.hooks().is_empty());
        assert_eq!(
            BootProfile::Stock.packages(),
            &["ifupdown", "isc-dhcp-client"]
        );
    }

    /// The hooks, run by sh against a folder as mmdebstrap would, leave the files
    /// where systemd and cloud-init read them.
    #[test]
    fn fast_hooks_write_the_units_and_the_check() {
        let root = tempfile::tempdir().unwrap();
        for hook in BootProfile::Fast.hooks() {
            if hook.contains("chroot") {
                continue;
            }
            let out = Command::new("sh")
                .args(["-c", &hook, "sh"])
                .arg(root.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{hook}: {out:?}");
        }
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(read(SEED_CHECK_PATH), SEED_CHECK);
        let final_dropin = read("etc/systemd/system/cloud-final.service.d/hvbox.conf");
        assert!(final_dropin.contains("ConditionPathExists=!/run/cloud-init/disabled"));
        assert!(final_dropin.contains("ExecStartPost=/usr/libexec/hvbox/hvbox-seed-check record"));
        let local = read("etc/systemd/system/cloud-init-local.service.d/hvbox.conf");
        assert!(local.contains("After=hvbox-seed-check.service"));
        assert!(read("etc/cloud/cloud.cfg.d/91-hvbox-network.cfg").contains("networkd"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.path().join(SEED_CHECK_PATH))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn the_seed_check_is_valid_sh() {
        let out = Command::new("sh")
            .args(["-n", "-c", SEED_CHECK])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}
