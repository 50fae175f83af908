//! What the VMM (`hvbox-vmm`) takes away from its own process once the machine is built and
//! before the guest runs: root (started as root), and the file system beyond the
//! machine's own paths (landlock). The seccomp lists follow, thread by thread, as the
//! machine starts ([`hvbox_vmm::confine`]).

use anyhow::{Context, Result};
use hvbox_vmm::confine::landlock::{self, Allowed};
use hvbox_vmm::confine::privileges::{self, Ids};
use hvbox_vmm::confine::Seccomp;
use hvbox_vmm::{MachineConfig, NetBackend, RunOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub fn confine(config: &MachineConfig, options: &RunOptions) -> Result<()> {
    let folders = folders(config, options);
    drop_root(folders.first())?;
    match landlock::restrict(&allowed(config, folders)) {
        Ok(outcome) => eprintln!("hvbox: {outcome}"),
        // Best effort, as a kernel without landlock is.
        Err(e) => eprintln!("hvbox: landlock: {e}; the VMM's file system access is not limited"),
    }
    match options.seccomp {
        Seccomp::Off => eprintln!(
            "hvbox: warning: --no-seccomp: the VMM runs without its seccomp allow-lists \
             (for debugging only; a guest that takes over a device has every syscall of \
             this user)"
        ),
        _ => eprintln!("hvbox: seccomp: each VMM thread runs under the allow-list of its kind"),
    }
    Ok(())
}

/// The folders the VMM keeps files and sockets in: the serial log's (the machine
/// folder, when `hvbox up` started it), then its sockets'.
fn folders(config: &MachineConfig, options: &RunOptions) -> Vec<PathBuf> {
    let files = [
        config.serial_log.as_deref(),
        options.control_socket.as_deref(),
        options.console_socket.as_deref(),
    ];
    let mut folders: Vec<PathBuf> = Vec::new();
    for file in files.into_iter().flatten() {
        let folder = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    folders
}

fn allowed(config: &MachineConfig, folders: Vec<PathBuf>) -> Allowed {
    let mut allowed = Allowed {
        folders,
        read_write: vec![PathBuf::from("/dev/kvm")],
        read: vec![config.kernel.clone()],
    };
    allowed.read.extend(config.initrd.clone());
    allowed.read_write.extend(config.serial_log.clone());
    for disk in &config.disks {
        match disk.read_only {
            true => allowed.read.push(disk.path.clone()),
            false => allowed.read_write.push(disk.path.clone()),
        }
    }
    if config
        .nics
        .iter()
        .any(|nic| matches!(nic.backend, NetBackend::Tap(_)))
    {
        allowed.read_write.push(PathBuf::from("/dev/net/tun"));
    }
    allowed
}

/// Started as root: become the owner of the machine folder (or sudo's user).
fn drop_root(machine_folder: Option<&PathBuf>) -> Result<()> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let owner = machine_folder.map(|folder| owner_of(folder)).transpose()?;
    let Some(ids) = privileges::target(euid, owner, privileges::sudo_ids()) else {
        if euid == 0 {
            eprintln!(
                "hvbox: running as root: the machine folder is root's, so the VMM stays root"
            );
        }
        return Ok(());
    };
    privileges::drop_to(ids).context("dropping root for the machine's owner")?;
    eprintln!(
        "hvbox: /dev/kvm, disks and network open: running as uid {} gid {} from now on",
        ids.uid, ids.gid
    );
    Ok(())
}

fn owner_of(folder: &Path) -> Result<Ids> {
    let meta = std::fs::metadata(folder)
        .with_context(|| format!("reading the owner of {}", folder.display()))?;
    Ok(Ids {
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvbox_vmm::{DiskConfig, MacAddr, NetConfig};

    #[test]
    fn the_machine_folder_comes_first_and_disks_keep_their_mode() {
        let mac: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        let config = MachineConfig {
            kernel: "/b/vmlinux".into(),
            initrd: Some("/b/initrd".into()),
            serial_log: Some("/m/serial.log".into()),
            disks: vec![
                DiskConfig {
                    path: "/m/root.img".into(),
                    read_only: false,
                },
                DiskConfig {
                    path: "/b/seed.img".into(),
                    read_only: true,
                },
            ],
            nics: vec![NetConfig {
                mac,
                backend: NetBackend::Tap("tap0".into()),
            }],
            cpus: 1,
            memory: 1 << 30,
            cmdline: String::new(),
            filesystems: vec![],
            nested_virtualization: false,
        };
        let options = RunOptions {
            control_socket: Some("/run/m/control.sock".into()),
            console_socket: Some("/run/m/console.sock".into()),
            ..RunOptions::default()
        };
        let folders = folders(&config, &options);
        assert_eq!(folders, [PathBuf::from("/m"), PathBuf::from("/run/m")]);
        let allowed = allowed(&config, folders);
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            allowed.read,
            paths(&["/b/vmlinux", "/b/initrd", "/b/seed.img"])
        );
        assert_eq!(
            allowed.read_write,
            paths(&["/dev/kvm", "/m/serial.log", "/m/root.img", "/dev/net/tun"])
        );
    }
}
