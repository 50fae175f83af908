//! Find the guest's kernel, initrd and root device inside a disk image and
//! copy kernel + initrd out for direct kernel boot.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ext4_view::{Ext4, Ext4Error};

use crate::atomic_file::TempFile;
use crate::fs_probe::{self, FsKind};
use crate::fs_reader::PartitionReader;
use crate::partitions::{self, Partition};
use crate::{fstab, grub, version_order, Error};

/// Boot files extracted from a guest disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The kernel, extracted into the output directory as `vmlinuz`.
    pub kernel: PathBuf,
    /// The matching initrd, extracted as `initrd.img`, if the guest has one.
    pub initrd: Option<PathBuf>,
    /// Kernel release, from the guest's `vmlinuz-<version>` file name.
    pub kernel_version: String,
    /// The guest's own kernel command line without `console=` arguments,
    /// e.g. `root=PARTUUID=… ro`.
    pub cmdline: String,
}

/// An ext2/3/4 filesystem found on the disk.
struct Volume {
    part: Partition,
    fs: Ext4,
}

/// The kernel picked on one volume.
struct KernelChoice {
    volume: usize,
    /// Canonical guest path (symlinks resolved inside the guest fs).
    kernel: String,
    /// The grub entry the kernel came from, if any.
    grub: Option<grub::GrubEntry>,
    /// Directory grub's paths are relative to (`/boot`, or `/` on a
    /// separate boot partition).
    boot_dir: &'static str,
}

/// Read the disk image (GPT, MBR or a whole-disk filesystem), find the
/// guest's default/newest kernel, its initrd and root device, and extract
/// kernel and initrd into `out_dir` as `vmlinuz` and `initrd.img`.
///
/// Both files are written to temp files first and renamed into place only
/// when both are complete. A stale `initrd.img` is removed when the guest
/// has no initrd, so it cannot be booted with the wrong kernel.
pub fn extract_boot_files(disk: &Path, out_dir: &Path) -> Result<BootFiles, Error> {
    let (volumes, foreign) = open_volumes(disk)?;
    let unsupported_root = || {
        foreign
            .first()
            .map(|(part, kind)| Error::UnsupportedRootFs {
                path: disk.to_path_buf(),
                partition: part.describe(),
                fs: kind.name(),
            })
    };

    let mut choice = None;
    for (i, vol) in volumes.iter().enumerate() {
        if let Some(c) = choose_kernel(disk, i, vol)? {
            choice = Some(c);
            break;
        }
    }
    let Some(choice) = choice else {
        // Most likely the kernel lives on the filesystem we cannot read.
        if let Some(err) = unsupported_root() {
            return Err(err);
        }
        let looked_at = looked_at(&volumes);
        return Err(if volumes.is_empty() {
            Error::NoLinuxFilesystem {
                path: disk.to_path_buf(),
                looked_at,
            }
        } else {
            Error::NoKernel {
                path: disk.to_path_buf(),
                looked_at,
            }
        });
    };

    let vol = &volumes[choice.volume];
    let kernel_name = file_name(&choice.kernel);
    let kernel_version = kernel_name
        .strip_prefix("vmlinuz-")
        .unwrap_or(kernel_name)
        .to_string();
    let initrds = find_initrd(disk, vol, &choice, &kernel_version)?;
    let cmdline = match root_cmdline_from_grub(&choice) {
        Some(cmdline) => cmdline,
        None => {
            let root = root_device(disk, &volumes, choice.volume, !initrds.is_empty())?
                .ok_or_else(|| {
                    unsupported_root().unwrap_or_else(|| Error::NoRootDevice {
                        path: disk.to_path_buf(),
                        partition: vol.part.describe(),
                    })
                })?;
            let extra = choice
                .grub
                .as_ref()
                .map(|e| grub::clean_args(&e.args))
                .unwrap_or_default();
            let mut args = vec![format!("root={root}")];
            // Read-only until the guest's fsck/remount, unless grub says rw.
            if !extra.iter().any(|a| a == "ro" || a == "rw") {
                args.push("ro".to_string());
            }
            args.extend(extra);
            args.join(" ")
        }
    };

    std::fs::create_dir_all(out_dir).map_err(|source| Error::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let kernel_dest = out_dir.join("vmlinuz");
    let initrd_dest = out_dir.join("initrd.img");
    let kernel_tmp = copy_out(
        disk,
        vol,
        std::slice::from_ref(&choice.kernel),
        &kernel_dest,
    )?;
    let initrd_tmp = if initrds.is_empty() {
        None
    } else {
        Some(copy_out(disk, vol, &initrds, &initrd_dest)?)
    };
    kernel_tmp.commit(&kernel_dest)?;
    let initrd = match initrd_tmp {
        Some(tmp) => {
            tmp.commit(&initrd_dest)?;
            Some(initrd_dest)
        }
        None => {
            remove_stale(&initrd_dest)?;
            None
        }
    };
    Ok(BootFiles {
        kernel: kernel_dest,
        initrd,
        kernel_version,
        cmdline,
    })
}

type Foreign = Vec<(Partition, FsKind)>;

/// Open every ext* partition; remember partitions that look like a Linux
/// root we cannot read (for the error message).
fn open_volumes(disk: &Path) -> Result<(Vec<Volume>, Foreign), Error> {
    let mut file = File::open(disk).map_err(|source| Error::ReadDisk {
        path: disk.to_path_buf(),
        source,
    })?;
    let parts = partitions::list(disk, &mut file)?;
    let file = Rc::new(file);
    let mut volumes = Vec::new();
    let mut foreign = Vec::new();
    for part in parts {
        let reader = PartitionReader::new(Rc::clone(&file), part.start, part.len);
        match fs_probe::probe(&reader) {
            FsKind::Ext => {
                let fs = Ext4::load(Box::new(reader)).map_err(|source| Error::OpenFs {
                    path: disk.to_path_buf(),
                    partition: part.describe(),
                    source,
                })?;
                volumes.push(Volume { part, fs });
            }
            kind if kind.may_be_root() => foreign.push((part, kind)),
            // BIOS boot, ESP, swap, empty: nothing for us there.
            _ => {}
        }
    }
    Ok((volumes, foreign))
}

fn looked_at(volumes: &[Volume]) -> String {
    if volumes.is_empty() {
        return "no ext2/3/4 partitions".to_string();
    }
    volumes
        .iter()
        .map(|v| v.part.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Pick the kernel on one volume: grub's default entry, else the newest
/// `vmlinuz-<version>`, first in `/boot` (root fs) then at the top level
/// (separate boot partition); last, Debian's `/vmlinuz` symlink.
fn choose_kernel(disk: &Path, index: usize, vol: &Volume) -> Result<Option<KernelChoice>, Error> {
    let fs = &vol.fs;
    let err = |guest_path: &str| {
        let guest_path = guest_path.to_string();
        move |source| guest_err(disk, vol, &guest_path, source)
    };
    let choice = |kernel, grub, boot_dir| {
        Some(KernelChoice {
            volume: index,
            kernel,
            grub,
            boot_dir,
        })
    };
    for boot_dir in ["/boot", "/"] {
        if !is_dir(fs, boot_dir).map_err(err(boot_dir))? {
            continue;
        }
        if let Some(entry) = read_grub_entry(disk, vol, boot_dir)? {
            if let Some(kernel) =
                resolve_grub_path(fs, boot_dir, &entry.kernel).map_err(err(&entry.kernel))?
            {
                return Ok(choice(kernel, Some(entry), boot_dir));
            }
        }
        if let Some(kernel) = newest_kernel(fs, boot_dir).map_err(err(boot_dir))? {
            return Ok(choice(kernel, None, boot_dir));
        }
    }
    for link in ["/vmlinuz", "/boot/vmlinuz"] {
        if let Some(kernel) = resolve_file(fs, link).map_err(err(link))? {
            return Ok(choice(kernel, None, "/boot"));
        }
    }
    Ok(None)
}

fn read_grub_entry(
    disk: &Path,
    vol: &Volume,
    boot_dir: &str,
) -> Result<Option<grub::GrubEntry>, Error> {
    for rel in ["grub/grub.cfg", "grub2/grub.cfg"] {
        let path = join(boot_dir, rel);
        match vol.fs.read(path.as_str()) {
            // Non-UTF-8 bytes only matter inside comments/titles.
            Ok(bytes) => return Ok(grub::default_entry(&String::from_utf8_lossy(&bytes))),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(guest_err(disk, vol, &path, e)),
        }
    }
    Ok(None)
}

/// A grub path is relative to the filesystem grub reads it from: `/boot/x`
/// on a root fs, `/x` on a separate boot partition. Try it as written, then
/// by file name in the boot directory.
fn resolve_grub_path(fs: &Ext4, boot_dir: &str, path: &str) -> Result<Option<String>, Ext4Error> {
    if let Some(p) = resolve_file(fs, path)? {
        return Ok(Some(p));
    }
    resolve_file(fs, &join(boot_dir, file_name(path)))
}

/// Newest `vmlinuz-<version>` in `dir` that resolves to a regular file.
fn newest_kernel(fs: &Ext4, dir: &str) -> Result<Option<String>, Ext4Error> {
    let mut best: Option<(String, String)> = None;
    for entry in fs.read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().as_str().map(str::to_string) else {
            continue;
        };
        let Some(version) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        if version.is_empty() {
            continue;
        }
        let newer = best
            .as_ref()
            .is_none_or(|(_, v)| version_order::compare(version, v).is_gt());
        if newer {
            if let Some(path) = resolve_file(fs, &join(dir, &name))? {
                best = Some((path, version.to_string()));
            }
        }
    }
    Ok(best.map(|(path, _)| path))
}

/// Initrd next to the kernel by Debian/Ubuntu or Fedora naming, else the
/// grub entry's `initrd` files (several are concatenated, as grub does).
fn find_initrd(
    disk: &Path,
    vol: &Volume,
    choice: &KernelChoice,
    version: &str,
) -> Result<Vec<String>, Error> {
    let err = |p: &str| {
        let p = p.to_string();
        move |e| guest_err(disk, vol, &p, e)
    };
    let dir = parent(&choice.kernel);
    for name in [
        format!("initrd.img-{version}"),
        format!("initramfs-{version}.img"),
    ] {
        let path = join(dir, &name);
        if let Some(p) = resolve_file(&vol.fs, &path).map_err(err(&path))? {
            return Ok(vec![p]);
        }
    }
    let mut out = Vec::new();
    for initrd in choice.grub.iter().flat_map(|e| &e.initrds) {
        match resolve_grub_path(&vol.fs, choice.boot_dir, initrd).map_err(err(initrd))? {
            Some(p) => out.push(p),
            // A partial set (e.g. microcode without the initramfs) would not boot.
            None => return Ok(Vec::new()),
        }
    }
    Ok(out)
}

/// The grub entry's arguments, when they name the root device themselves.
fn root_cmdline_from_grub(choice: &KernelChoice) -> Option<String> {
    let args = grub::clean_args(&choice.grub.as_ref()?.args);
    args.iter()
        .any(|a| a.starts_with("root="))
        .then(|| args.join(" "))
}

/// Root device for `root=`: `/` in the guest's fstab, else the PARTUUID of
/// the partition holding `/` (for a whole-disk fs, its filesystem UUID,
/// which needs an initrd to resolve). `None` if no readable volume holds `/`.
fn root_device(
    disk: &Path,
    volumes: &[Volume],
    boot_volume: usize,
    have_initrd: bool,
) -> Result<Option<String>, Error> {
    // The kernel's own volume first: on most cloud images it is the root.
    let order =
        std::iter::once(boot_volume).chain((0..volumes.len()).filter(|&i| i != boot_volume));
    for i in order {
        let vol = &volumes[i];
        match vol.fs.read("/etc/fstab") {
            Ok(bytes) => {
                if let Some(dev) = fstab::root_device(&String::from_utf8_lossy(&bytes)) {
                    return Ok(Some(dev));
                }
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(guest_err(disk, vol, "/etc/fstab", e)),
        }
        if !is_dir(&vol.fs, "/etc").map_err(|e| guest_err(disk, vol, "/etc", e))? {
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

/// Copy guest files (concatenated) into a temp file next to `dest`.
fn copy_out(
    disk: &Path,
    vol: &Volume,
    guest_paths: &[String],
    dest: &Path,
) -> Result<TempFile, Error> {
    let mut tmp = TempFile::new_for(dest)?;
    let tmp_path = tmp.path().to_path_buf();
    let mut buf = vec![0u8; 1 << 20];
    for guest_path in guest_paths {
        let err = |e| guest_err(disk, vol, guest_path, e);
        let mut src = vol.fs.open(guest_path.as_str()).map_err(err)?;
        loop {
            let n = src.read_bytes(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            tmp.file()
                .write_all(&buf[..n])
                .map_err(|source| Error::Write {
                    path: tmp_path.clone(),
                    source,
                })?;
        }
    }
    Ok(tmp)
}

fn remove_stale(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Resolve `path` inside the guest filesystem (symlinks included) to the
/// canonical path of a regular file; `None` if missing, dangling or not a
/// regular file.
fn resolve_file(fs: &Ext4, path: &str) -> Result<Option<String>, Ext4Error> {
    let canonical = match fs.canonicalize(path) {
        Ok(p) => p,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(canonical) = canonical.to_str().map(str::to_string) else {
        return Ok(None);
    };
    let is_file = fs
        .metadata(canonical.as_str())?
        .file_type()
        .is_regular_file();
    Ok(is_file.then_some(canonical))
}

fn is_dir(fs: &Ext4, path: &str) -> Result<bool, Ext4Error> {
    match fs.metadata(path) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Errors that just mean "not there" while searching.
fn is_missing(e: &Ext4Error) -> bool {
    matches!(
        e,
        Ext4Error::NotFound
            | Ext4Error::NotADirectory
            | Ext4Error::MalformedPath
            | Ext4Error::NotAbsolute
    )
}

fn guest_err(disk: &Path, vol: &Volume, guest_path: &str, source: Ext4Error) -> Error {
    Error::ReadGuestFile {
        path: disk.to_path_buf(),
        partition: vol.part.describe(),
        guest_path: guest_path.to_string(),
        source,
    }
}

fn join(dir: &str, name: &str) -> String {
    format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        name.trim_start_matches('/')
    )
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}
