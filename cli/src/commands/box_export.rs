//! `hvbox box export WHAT --oci FILE.tar --kernel-oci FILE.tar`: a cached box as
//! OCI image archives for KubeVirt, written without a container daemon.

use super::box_remove::matching;
use crate::args::BoxExportArgs;
use crate::kubevirt::images;
use crate::oci::layer::{Item, Layer};
use crate::oci::write_archive;
use crate::progress::step;
use anyhow::{bail, Context, Result};
use hvbox_boxes::{Entry, Store};
use hvbox_provisioner::{extract_boot_files, KernelSelection};
use std::process::ExitCode;

/// KubeVirt runs a VM's processes as uid 107 (qemu), which must read the disk.
const QEMU_UID: u64 = 107;

/// Boot files are loaded into guest memory, which bounds them when a machine boots;
/// here no machine is booting, so only hvbox's own cap applies.
const ANY_MEMORY: u64 = 1 << 40;

pub fn run(args: &BoxExportArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let entries = store.entries()?;
    let disks: Vec<&Entry> = matching(&entries, &args.what)
        .into_iter()
        .filter(|e| e.meta.as_ref().is_some_and(|m| !m.file))
        .collect();
    let entry = match disks.as_slice() {
        [one] => *one,
        [] => bail!(
            "no cached box disk matches {:?}: give a name, NAME@VERSION or a digest as `hvbox box list` shows them",
            args.what
        ),
        several => bail!(
            "{:?} matches {} cached disks: give NAME@VERSION or a digest as `hvbox box list` shows them",
            args.what,
            several.len()
        ),
    };
    let tag = images::tag(&entry.digest);
    if let Some(path) = &args.oci {
        // KubeVirt's containerDisk convention: the image at /disk/, readable by qemu.
        let layer = Layer::new(vec![
            Item::Dir {
                path: "disk".into(),
                mode: 0o755,
                owner: 0,
            },
            Layer::file("disk/disk.img", 0o440, QEMU_UID, entry.path.clone())
                .with_context(|| format!("reading {}", entry.path.display()))?,
        ]);
        let digest = write_archive(path, &layer, &tag)?;
        step!("wrote {} (containerDisk, image {digest})", path.display());
    }
    if let Some(path) = &args.kernel_oci {
        // The boot files `up` boots a new machine of this box with.
        let scratch = tempfile::tempdir().context("creating a temporary folder")?;
        let boot = extract_boot_files(
            &entry.path,
            scratch.path(),
            &KernelSelection::Default,
            ANY_MEMORY,
        )
        .context("finding the guest's kernel in the box's disk")?;
        let mut items = vec![
            Item::Dir {
                path: "boot".into(),
                mode: 0o755,
                owner: 0,
            },
            Layer::file(
                images::KERNEL_PATH.trim_start_matches('/'),
                0o444,
                0,
                boot.kernel,
            )?,
        ];
        if let Some(initrd) = boot.initrd {
            items.push(Layer::file(
                images::INITRD_PATH.trim_start_matches('/'),
                0o444,
                0,
                initrd,
            )?);
        }
        let digest = write_archive(path, &Layer::new(items), &tag)?;
        step!(
            "wrote {} (kernel {}, image {digest})",
            path.display(),
            boot.kernel_version
        );
    }
    Ok(ExitCode::SUCCESS)
}
