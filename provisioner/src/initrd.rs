//! The initrd that belongs to a kernel. An initrd of another release would
//! boot but fail to load its modules, so a kernel never gets one.

use std::collections::HashSet;

use crate::guest_fs::{self, file_name, join, parent};
use crate::kernels::{Inventory, Kernel};
use crate::volumes::Disk;
use crate::Error;

/// Distinct initrds one boot entry may name (microcode, the initramfs and
/// a few extras such as Fedora's early images).
const MAX_INITRDS: usize = 8;

/// Guest paths of the initrd(s) for `kernel` (several are concatenated, as
/// grub does), or none if the guest has no initrd at all. In order: the
/// `initrd` lines of the kernel's grub/BLS entry when they agree with the
/// next rule; the initrd named after the kernel's release, next to it or in
/// the boot directories; one named after a non-release file-name tag
/// (Arch's `initramfs-linux.img`).
pub(crate) fn find(disk: &Disk, inv: &Inventory, kernel: &Kernel) -> Result<Vec<String>, Error> {
    let fs = &disk.volumes[kernel.volume].fs;
    let err = |p: &str| {
        let p = p.to_string();
        move |e| disk.guest_err(kernel.volume, &p, e)
    };
    let mut dirs = vec![parent(&kernel.path)];
    for dir in ["/boot", "/"] {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let first_named = |tag: &str| -> Result<Option<String>, Error> {
        for dir in &dirs {
            for name in names(tag) {
                let path = join(dir, &name);
                if let Some(p) = guest_fs::find_file(fs, &path).map_err(err(&path))? {
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    };

    let by_release = first_named(&kernel.version)?;
    // The entry's full list keeps extras such as microcode, but only if it
    // does not contradict the release-named initrd.
    if let Some(lines) = entry_initrds(disk, inv, kernel)? {
        if by_release.as_ref().is_none_or(|p| lines.contains(p)) {
            return Ok(lines);
        }
    }
    if let Some(p) = by_release {
        return Ok(vec![p]);
    }
    if let Some(tag) = kernel
        .name_tag
        .as_deref()
        .filter(|t| !t.starts_with(|c: char| c.is_ascii_digit()))
    {
        if let Some(p) = first_named(tag)? {
            return Ok(vec![p]);
        }
    }

    let mut others = Vec::new();
    for dir in &dirs {
        let listed = guest_fs::list_dir(fs, dir).map_err(err(dir))?;
        for name in listed.iter().filter(|n| is_initrd_name(n)) {
            let path = join(dir, name);
            if guest_fs::find_file(fs, &path)
                .map_err(err(&path))?
                .is_some()
            {
                others.push(path);
            }
        }
    }
    if others.is_empty() {
        // A guest built without an initramfs (root driver built in).
        return Ok(Vec::new());
    }
    Err(Error::NoMatchingInitrd {
        path: disk.path.clone(),
        kernel: format!(
            "{} on {}",
            kernel.path,
            disk.volumes[kernel.volume].describe()
        ),
        version: kernel.version.clone(),
        looked_for: format!(
            "{} in {}",
            names(&kernel.version).join(", "),
            dirs.join(", ")
        ),
        others: others.join(", "),
    })
}

/// The `initrd` lines of the kernel's bootloader entry, if it has some and
/// all of them exist (a partial set, e.g. microcode without the initramfs,
/// would not boot).
fn entry_initrds(
    disk: &Disk,
    inv: &Inventory,
    kernel: &Kernel,
) -> Result<Option<Vec<String>>, Error> {
    let Some(entry) = inv.entry_for(kernel).filter(|e| !e.initrds.is_empty()) else {
        return Ok(None);
    };
    // Loading one archive twice adds nothing; more than a few distinct
    // ones is no real boot entry, and each costs a lookup and a copy.
    let mut seen = HashSet::new();
    let lines: Vec<&str> = entry
        .initrds
        .iter()
        .map(String::as_str)
        .filter(|l| seen.insert(*l))
        .collect();
    if lines.len() > MAX_INITRDS {
        let vol = &disk.volumes[kernel.volume];
        return Err(Error::TooManyInitrds {
            path: disk.path.clone(),
            kernel: kernel.path.clone(),
            entry: format!("{} on {}", entry.source, vol.describe()),
            count: lines.len(),
            max: MAX_INITRDS,
        });
    }
    let fs = &disk.volumes[kernel.volume].fs;
    let mut paths = Vec::new();
    for line in lines {
        match guest_fs::find_boot_path(fs, entry.boot_dir, line)
            .map_err(|e| disk.guest_err(kernel.volume, line, e))?
        {
            Some(p) => paths.push(p),
            None => return Ok(None),
        }
    }
    Ok(Some(paths))
}

/// Debian/Ubuntu, Fedora/Arch and SUSE names for the initrd of `tag`.
fn names(tag: &str) -> [String; 3] {
    [
        format!("initrd.img-{tag}"),
        format!("initramfs-{tag}.img"),
        format!("initrd-{tag}"),
    ]
}

fn is_initrd_name(name: &str) -> bool {
    let name = file_name(name);
    name.starts_with("initrd") || name.starts_with("initramfs")
}
