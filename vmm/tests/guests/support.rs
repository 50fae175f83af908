//! Shared by every test that runs the tiny guests (the VMM's own tests, the CLI's
//! and the end-to-end lab): whether KVM is usable, and building a guest from its
//! assembly source with GNU as and ld. Included with `#[path]`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder of this file: the guests' sources.
pub fn guests_dir(manifest_dir: &str, relative: &str) -> PathBuf {
    Path::new(manifest_dir).join(relative)
}

pub fn kvm_usable() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm is not usable here ({e})");
            false
        }
    }
}

/// The host's newest Debian cloud kernel (`/boot/vmlinuz-*-cloud-amd64`), if any.
pub fn newest_cloud_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("vmlinuz-") && name.ends_with("-cloud-amd64")
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// How the assembled object becomes a runnable image.
pub enum Link {
    /// An ELF with a PVH note, loaded at 1 MiB (guest.ld).
    PvhElf,
    /// A flat file (objcopy -O binary), e.g. a bzImage.
    Flat,
    /// A static Linux program.
    Program,
}

/// Assemble `src_dir/NAME.S` and link it into `out_dir`.
pub fn build(src_dir: &Path, name: &str, link: Link, out_dir: &Path) -> PathBuf {
    let obj = out_dir.join(format!("{name}.o"));
    let out = out_dir.join(match link {
        Link::PvhElf => format!("{name}.elf"),
        Link::Flat => format!("{name}.bin"),
        Link::Program => name.to_string(),
    });
    let assembled = Command::new("as")
        .arg("--64")
        .arg("-I")
        .arg(src_dir)
        .arg("-o")
        .arg(&obj)
        .arg(src_dir.join(format!("{name}.S")))
        .status()
        .expect("GNU as (binutils) is needed to build the test guests")
        .success();
    assert!(assembled, "assembling {name}.S failed");
    let mut cmd = match link {
        Link::PvhElf => {
            let mut c = Command::new("ld");
            c.args([
                "-m",
                "elf_x86_64",
                "-static",
                "-nostdlib",
                "--build-id=none",
            ])
            .args(["-z", "noexecstack", "--no-warn-rwx-segments", "-T"])
            .arg(src_dir.join("guest.ld"));
            c
        }
        Link::Flat => {
            let mut c = Command::new("objcopy");
            c.args(["-O", "binary", "-j", ".text"]);
            c
        }
        Link::Program => {
            let mut c = Command::new("ld");
            c.args(["-static", "-nostdlib", "--build-id=none"]);
            c
        }
    };
    if matches!(link, Link::Flat) {
        cmd.arg(&obj).arg(&out);
    } else {
        cmd.arg("-o").arg(&out).arg(&obj);
    }
    let linked = cmd.status().expect("binutils").success();
    assert!(linked, "linking {name} failed");
    let _ = std::fs::remove_file(obj);
    out
}
