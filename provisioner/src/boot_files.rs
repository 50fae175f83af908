//! Public entry points: pick a kernel on a guest disk, match its initrd
//! and command line, and copy kernel + initrd out for direct kernel boot.

use std::path::{Path, PathBuf};

use crate::atomic_file::TempFile;
use crate::kernels::{Inventory, Kernel};
use crate::volumes::{Disk, Volume};
use crate::{boot_size, cmdline, initrd, sparse, Error};

/// Which of the guest's installed kernels to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSelection {
    /// The bootloader's default (grub's default menu entry, or the BLS
    /// default), else the newest kernel.
    Default,
    /// The kernel whose release is exactly this, e.g. `6.1.0-9-cloud-amd64`.
    Version(String),
}

/// Boot files extracted from a guest disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The kernel, extracted into the output directory as `vmlinuz`.
    pub kernel: PathBuf,
    /// The matching initrd, extracted as `initrd.img`, if the guest has one.
    pub initrd: Option<PathBuf>,
    /// Kernel release, from the bzImage header (else the file name).
    pub kernel_version: String,
    /// The guest's own kernel command line without `console=` and
    /// `BOOT_IMAGE=` arguments, e.g. `root=PARTUUID=… ro`.
    pub cmdline: String,
    /// Where the kernel is in the guest, for messages:
    /// `/boot/vmlinuz-6.1.0-9-cloud-amd64 on partition 1`.
    pub kernel_guest_path: String,
    /// Where the initrd is, in the same form (several joined by ` + `).
    pub initrd_guest_path: Option<String>,
}

/// The kernels on a disk and the one it boots by default, with what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootMenu {
    /// Newest first (Debian version order).
    pub kernels: Vec<InstalledKernel>,
    /// Release of the kernel [`KernelSelection::Default`] boots.
    pub default_version: String,
    /// The bootloader file whose default entry names that kernel, as
    /// `/boot/grub/grub.cfg on partition 1`; `None` when no bootloader names a
    /// default and the newest kernel is it.
    pub decided_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledKernel {
    /// Release, from the bzImage header (else the file name).
    pub version: String,
    /// The kernel file's name in the guest, e.g. `vmlinuz-6.1.0-9-cloud-amd64`.
    pub file_name: String,
}

/// What is installed on `disk` and which kernel it boots by default. Fails like
/// [`extract_boot_files`] when there is no kernel.
pub fn boot_menu(disk: &Path) -> Result<BootMenu, Error> {
    let disk = Disk::open(disk)?;
    let inv = Inventory::scan(&disk)?;
    let Some(default) = inv.default_kernel() else {
        return Err(disk.into_no_kernel_error(&inv.skipped));
    };
    let decided_by = inv
        .default_source()
        .map(|(volume, file)| guest_path(&disk.volumes[volume], &[file.to_string()]));
    Ok(BootMenu {
        kernels: inv
            .kernels
            .iter()
            .map(|k| InstalledKernel {
                version: k.version.clone(),
                file_name: crate::guest_fs::file_name(&k.path).to_string(),
            })
            .collect(),
        default_version: default.version.clone(),
        decided_by,
    })
}

/// Kernel releases installed on `disk`, newest first (Debian version
/// order). Fails like [`extract_boot_files`] when there is none.
pub fn installed_kernels(disk: &Path) -> Result<Vec<String>, Error> {
    let disk = Disk::open(disk)?;
    let inv = Inventory::scan(&disk)?;
    if inv.kernels.is_empty() {
        return Err(disk.into_no_kernel_error(&inv.skipped));
    }
    Ok(inv.versions())
}

/// Read the disk image (GPT, MBR or a whole-disk filesystem), pick the
/// kernel `selection` asks for, its initrd and command line, and extract
/// kernel and initrd into `out_dir` as `vmlinuz` and `initrd.img`.
///
/// `guest_memory` is the machine's memory in bytes: kernel and initrd together
/// must fit in it, and in 1 GiB, or nothing is copied. Sizes come from the
/// guest filesystem, checked before any byte is written.
///
/// Both files are written (sparsely) to temp files first and renamed into
/// place only when both are complete. A stale `initrd.img` is removed when
/// the guest has no initrd, so it cannot be booted with the wrong kernel.
/// They are not fsynced: every boot extracts them afresh from the disk, so a
/// crash cannot leave files that a later boot uses (an fsync of each cost
/// `up` about 20 ms).
pub fn extract_boot_files(
    disk: &Path,
    out_dir: &Path,
    selection: &KernelSelection,
    guest_memory: u64,
) -> Result<BootFiles, Error> {
    let disk = Disk::open(disk)?;
    let inv = Inventory::scan(&disk)?;
    let Some(kernel) = select(&disk, &inv, selection)? else {
        return Err(disk.into_no_kernel_error(&inv.skipped));
    };
    let initrds = initrd::find(&disk, &inv, kernel)?;
    let cmdline = cmdline::build(
        &disk,
        kernel.volume,
        inv.args_for(kernel),
        !initrds.is_empty(),
    )?;
    boot_size::check(&disk, kernel.volume, &kernel.path, &initrds, guest_memory)?;

    std::fs::create_dir_all(out_dir).map_err(|source| Error::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let vol = &disk.volumes[kernel.volume];
    let kernel_dest = out_dir.join("vmlinuz");
    let initrd_dest = out_dir.join("initrd.img");
    let kernel_tmp = copy_out(
        &disk,
        kernel.volume,
        std::slice::from_ref(&kernel.path),
        &kernel_dest,
    )?;
    let initrd_tmp = if initrds.is_empty() {
        None
    } else {
        Some(copy_out(&disk, kernel.volume, &initrds, &initrd_dest)?)
    };
    kernel_tmp.commit_unsynced(&kernel_dest)?;
    let initrd = match initrd_tmp {
        Some(tmp) => {
            tmp.commit_unsynced(&initrd_dest)?;
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
        kernel_version: kernel.version.clone(),
        cmdline,
        kernel_guest_path: guest_path(vol, std::slice::from_ref(&kernel.path)),
        initrd_guest_path: (!initrds.is_empty()).then(|| guest_path(vol, &initrds)),
    })
}

/// The kernel `selection` names; `None` only if the disk has no kernel.
fn select<'a>(
    disk: &Disk,
    inv: &'a Inventory,
    selection: &KernelSelection,
) -> Result<Option<&'a Kernel>, Error> {
    if inv.kernels.is_empty() {
        return Ok(None);
    }
    match selection {
        KernelSelection::Default => Ok(inv.default_kernel()),
        KernelSelection::Version(wanted) => match inv.by_version(wanted) {
            Some(k) => Ok(Some(k)),
            None => Err(Error::KernelVersionNotFound {
                path: disk.path.clone(),
                wanted: wanted.clone(),
                available: inv.versions().join(", "),
            }),
        },
    }
}

fn guest_path(vol: &Volume, paths: &[String]) -> String {
    format!("{} on {}", paths.join(" + "), vol.describe())
}

/// Copy guest files (concatenated) into a temp file next to `dest`, zero
/// blocks left as holes. Sizes were bounded by [`boot_size::check`].
fn copy_out(
    disk: &Disk,
    volume: usize,
    guest_paths: &[String],
    dest: &Path,
) -> Result<TempFile, Error> {
    let fs = &disk.volumes[volume].fs;
    let mut tmp = TempFile::new_for(dest)?;
    let tmp_path = tmp.path().to_path_buf();
    let write_err = |source| Error::Write {
        path: tmp_path.clone(),
        source,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut written: u64 = 0;
    for guest_path in guest_paths {
        let err = |e| disk.guest_err(volume, guest_path, e);
        let mut src = fs.open(guest_path.as_str()).map_err(err)?;
        loop {
            let n = fill(&mut src, &mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            sparse::write_nonzero(tmp.file(), &buf[..n], written).map_err(write_err)?;
            written += n as u64;
        }
    }
    // Skipped zeros at the end still count towards the length.
    tmp.file().set_len(written).map_err(write_err)?;
    Ok(tmp)
}

/// Read until `buf` is full or the file ends: whole buffers keep the
/// zero-block test aligned to the destination's blocks.
fn fill(src: &mut ext4_view::File, buf: &mut [u8]) -> Result<usize, ext4_view::Ext4Error> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = src.read_bytes(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
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
