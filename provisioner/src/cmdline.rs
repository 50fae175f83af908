//! The guest kernel's command line: the bootloader entry's arguments (or, on a
//! disk without a bootloader entry, `/etc/kernel/cmdline`'s), with `root=` from
//! the guest's fstab or the root partition's identity unless they name it.

use crate::guest_fs;
use crate::volumes::Disk;
use crate::{fstab, grub, Error};

/// Where kernel-install(8) keeps the arguments of kernels installed without a
/// bootloader menu to read them from; hvbox's built boxes have no bootloader.
const INSTALLED_CMDLINE: &str = "/etc/kernel/cmdline";

/// Build the command line for a kernel on volume `kernel_volume`, from its
/// bootloader arguments, else the guest's `/etc/kernel/cmdline`. `console=`
/// and `BOOT_IMAGE=` are dropped: the caller adds its own console.
pub(crate) fn build(
    disk: &Disk,
    kernel_volume: usize,
    entry_args: Option<&[String]>,
    have_initrd: bool,
) -> Result<String, Error> {
    let extra = match entry_args {
        Some(args) => grub::clean_args(args),
        None => grub::clean_args(&installed_args(disk, kernel_volume)?),
    };
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

/// The words of `/etc/kernel/cmdline` on the first volume (the kernel's own
/// first) that has one: lines starting with `#` are comments, and a double-quoted
/// value keeps its spaces, as the kernel parses it.
fn installed_args(disk: &Disk, kernel_volume: usize) -> Result<Vec<String>, Error> {
    for i in volume_order(disk, kernel_volume) {
        let text = guest_fs::read_optional(&disk.volumes[i].fs, INSTALLED_CMDLINE)
            .map_err(|e| disk.guest_err(i, INSTALLED_CMDLINE, e))?;
        if let Some(bytes) = text {
            let text = String::from_utf8_lossy(&bytes);
            return Ok(text
                .lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .flat_map(split_words)
                .collect());
        }
    }
    Ok(Vec::new())
}

/// Split at whitespace outside double quotes, quotes kept.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        if c.is_whitespace() && !quoted {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if c == '"' {
            quoted = !quoted;
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The kernel's own volume first: on most cloud images it is the root.
fn volume_order(disk: &Disk, kernel_volume: usize) -> impl Iterator<Item = usize> {
    std::iter::once(kernel_volume)
        .chain((0..disk.volumes.len()).filter(move |&i| i != kernel_volume))
}

/// Root device for `root=`: `/` in the guest's fstab, else the PARTUUID of
/// the partition holding `/` (for a whole-disk fs, its filesystem UUID,
/// which needs an initrd to resolve). `None` if no readable volume holds `/`.
fn root_device(
    disk: &Disk,
    boot_volume: usize,
    have_initrd: bool,
) -> Result<Option<String>, Error> {
    for i in volume_order(disk, boot_volume) {
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

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_split_at_spaces_outside_double_quotes() {
        assert_eq!(
            split_words("  quiet dyndbg=\"file a.c +p\"\tloglevel=6 "),
            ["quiet", "dyndbg=\"file a.c +p\"", "loglevel=6"]
        );
        assert!(split_words(" \t").is_empty());
    }
}
