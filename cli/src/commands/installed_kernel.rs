//! After `upgrade-kernel` installed a kernel: does the disk's boot configuration
//! boot it? A static grub.cfg (no grub package in the guest regenerates it), or an
//! older kernel installed where the newest is the default, keeps another one; then
//! hvbox boots the installed kernel by pinning it, as `--rollback` pins.

use hvbox_provisioner::BootMenu;

/// The kernel just installed, where the disk would boot another by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotDefault {
    /// The installed kernel to pin (the newest, if the package brought several).
    pub installed: String,
    pub default: String,
    /// The bootloader file that names the default, if one does.
    pub decided_by: Option<String>,
}

/// Which kernel the boot after an install pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// None: the disk's default boots (the kernel just installed, or nothing new
    /// was installed and nothing was pinned).
    DiskDefault,
    /// The install brought no kernel: the pinned one stays (else a static boot
    /// configuration would bring back the kernel an earlier upgrade moved off).
    Keep(String),
    /// The kernel just installed, which the disk would not boot by default.
    Installed(NotDefault),
}

impl Pin {
    pub fn version(&self) -> Option<&str> {
        match self {
            Pin::DiskDefault => None,
            Pin::Keep(v) => Some(v),
            Pin::Installed(n) => Some(&n.installed),
        }
    }
}

/// The pin after an install: kernels on the disk whose files were not in `/boot`
/// before it (`files_before`, as the guest listed them) are what was installed;
/// `pinned` is the machine's pin before.
pub fn pin_after_install(menu: &BootMenu, files_before: &[String], pinned: Option<&str>) -> Pin {
    let mut installed = menu
        .kernels
        .iter()
        .filter(|k| !files_before.contains(&k.file_name))
        .map(|k| k.version.as_str());
    let Some(newest) = installed.clone().next() else {
        return match pinned {
            Some(v) => Pin::Keep(v.to_string()),
            None => Pin::DiskDefault,
        };
    };
    if installed.any(|v| v == menu.default_version) {
        return Pin::DiskDefault;
    }
    Pin::Installed(NotDefault {
        installed: newest.to_string(),
        default: menu.default_version.clone(),
        decided_by: menu.decided_by.clone(),
    })
}

impl NotDefault {
    /// What the user is told before the pinned boot.
    pub fn explain(&self) -> String {
        let NotDefault {
            installed,
            default,
            decided_by,
        } = self;
        let why = match decided_by {
            Some(file) => format!(
                "the disk still defaults to {default}: {file} names it and was not regenerated when {installed} was installed (nothing in the guest updates it, e.g. no grub package)"
            ),
            None => format!(
                "the disk has no bootloader configuration naming a default, so its newest kernel, {default}, would boot, not {installed}, the kernel just installed"
            ),
        };
        format!("{why}; booting {installed} and pinning it, as `--rollback` pins (`hvbox upgrade-kernel --no-install` returns to the disk's default)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvbox_provisioner::InstalledKernel;

    const OLD: &str = "6.1.0-57-cloud-amd64";
    const NEW: &str = "6.12.107+deb12-cloud-amd64";

    fn menu(versions: &[&str], default: &str, decided_by: Option<&str>) -> BootMenu {
        BootMenu {
            kernels: versions
                .iter()
                .map(|v| InstalledKernel {
                    version: v.to_string(),
                    file_name: format!("vmlinuz-{v}"),
                })
                .collect(),
            default_version: default.into(),
            decided_by: decided_by.map(str::to_string),
        }
    }

    fn before(versions: &[&str]) -> Vec<String> {
        let mut files: Vec<String> = versions.iter().map(|v| format!("vmlinuz-{v}")).collect();
        files.extend(["grub".to_string(), format!("config-{OLD}")]);
        files
    }

    fn installed(pin: Pin) -> NotDefault {
        match pin {
            Pin::Installed(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_static_grub_cfg_that_names_the_old_kernel_pins_the_new_one() {
        let grub = "/boot/grub/grub.cfg on partition 1";
        let pin = installed(pin_after_install(
            &menu(&[NEW, OLD], OLD, Some(grub)),
            &before(&[OLD]),
            None,
        ));
        assert_eq!(pin.installed, NEW);
        assert_eq!(pin.default, OLD);
        let text = pin.explain();
        assert!(
            text.contains(&format!(
                "the disk still defaults to {OLD}: {grub} names it and was not regenerated"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("booting {NEW} and pinning it")),
            "{text}"
        );
    }

    #[test]
    fn an_older_kernel_installed_without_a_bootloader_is_pinned() {
        // No grub.cfg: the newest kernel is the default, and the package is older.
        let pin = installed(pin_after_install(
            &menu(&[NEW, OLD], NEW, None),
            &before(&[NEW]),
            None,
        ));
        assert_eq!(pin.installed, OLD);
        assert!(
            pin.explain().contains("no bootloader configuration"),
            "{}",
            pin.explain()
        );
    }

    #[test]
    fn nothing_is_pinned_when_the_default_is_what_was_installed_or_nothing_was() {
        let grub = Some("/boot/grub/grub.cfg on partition 1");
        let pin = |m: &BootMenu, b: &[&str], p| pin_after_install(m, &before(b), p);
        assert_eq!(
            pin(&menu(&[NEW, OLD], NEW, None), &[OLD], None),
            Pin::DiskDefault
        );
        assert_eq!(
            pin(&menu(&[NEW, OLD], NEW, grub), &[OLD], None),
            Pin::DiskDefault
        );
        // A package that installed nothing new (already there), nothing pinned.
        assert_eq!(
            pin(&menu(&[NEW, OLD], OLD, grub), &[NEW, OLD], None),
            Pin::DiskDefault
        );
    }

    /// An earlier upgrade pinned NEW under a static grub.cfg naming OLD; an upgrade
    /// that installs nothing must keep NEW, not fall back to OLD.
    #[test]
    fn an_install_that_brings_no_kernel_keeps_the_pin() {
        let grub = Some("/boot/grub/grub.cfg on partition 1");
        let pin = pin_after_install(
            &menu(&[NEW, OLD], OLD, grub),
            &before(&[NEW, OLD]),
            Some(NEW),
        );
        assert_eq!(pin, Pin::Keep(NEW.into()));
        assert_eq!(pin.version(), Some(NEW));
    }
}
