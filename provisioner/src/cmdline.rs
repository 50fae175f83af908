//! The guest kernel's command line: the bootloader entry's arguments when
//! they name the root device, else `root=` from the guest's fstab or the
//! root partition's identity.

use crate::guest_fs;
use crate::volumes::Disk;
use crate::{fstab, grub, Error};

/// Build the command line for a kernel on volume `kernel_volume`, from its
/// bootloader arguments (if any). `console=` and `BOOT_IMAGE=` are dropped:
/// the caller adds its own console.
pub(crate) fn build(
    disk: &Disk,
    kernel_volume: usize,
    entry_args: Option<&[String]>,
    have_initrd: bool,
) -> Result<String, Error> {
    let extra = entry_args.map(grub::clean_args).unwrap_or_default();
    if extra.iter().any(|a| a.starts_with("root=")) {
        return Ok(extra.join(" "));
    }
    let root = root_device(disk, kernel_volume, have_initrd)?.ok_or_else(|| {
        disk.unsupported_root()
            .unwrap_or_else(|| Error::NoRootDevice {
                path: disk.path.clone(),
                partition: disk.volumes[kernel_volume].describe(),
            })
    })?;
    let mut args = vec![format!("root={root}")];
    // Read-only until the guest's fsck/remount, unless the entry says rw.
    if !extra.iter().any(|a| a == "ro" || a == "rw") {
        args.push("ro".to_string());
    }
    args.extend(extra);
    Ok(args.join(" "))
}

/// Root device for `root=`: `/` in the guest's fstab, else the PARTUUID of
/// the partition holding `/` (for a whole-disk fs, its filesystem UUID,
/// which needs an initrd to resolve). `None` if no readable volume holds `/`.
fn root_device(
    disk: &Disk,
    boot_volume: usize,
    have_initrd: bool,
) -> Result<Option<String>, Error> {
    // The kernel's own volume first: on most cloud images it is the root.
    let order =
        std::iter::once(boot_volume).chain((0..disk.volumes.len()).filter(|&i| i != boot_volume));
    for i in order {
        let vol = &disk.volumes[i];
        let fstab_text = guest_fs::read_optional(&vol.fs, "/etc/fstab")
            .map_err(|e| disk.guest_err(i, "/etc/fstab", e))?;
        if let Some(dev) = fstab_text.and_then(|b| fstab::root_device(&String::from_utf8_lossy(&b)))
        {
            return Ok(Some(dev));
        }
        if !guest_fs::is_dir(&vol.fs, "/etc").map_err(|e| disk.guest_err(i, "/etc", e))? {
            continue;
        }
        if let Some(partuuid) = &vol.part.partuuid {
            return Ok(Some(format!("PARTUUID={partuuid}")));
        }
        if have_initrd {
            return Ok(Some(format!("UUID={}", vol.fs.uuid())));
        }
    }
    Ok(None)
}
