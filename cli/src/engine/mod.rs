//! Engines run a [`MachineConfig`]: hvbox's embedded VMM, or QEMU as a fallback.
//!
//! An engine only describes how to run the VM in the foreground and how to ask the
//! guest to power off; the supervisor process owns starting, waiting and cleanup, so
//! every engine gets the same lifecycle.

mod builtin;
mod host;
mod qemu;
mod qemu_shares;
mod qemu_state;
mod qmp;

pub use host::HostVirt;

use crate::spec::EngineChoice;
use anyhow::{bail, Result};
use hvbox_vmm::{FsConfig, MachineConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which engine runs a machine; recorded in its launch plan and run file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Builtin,
    Qemu,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Builtin => "builtin",
            EngineKind::Qemu => "qemu",
        })
    }
}

/// The files of one VM run: where the machine configuration is written for an engine
/// that reads it from a file, and the sockets the VM serves.
#[derive(Debug, Clone)]
pub struct VmFiles {
    /// In the machine folder (`vm.json`), beside the launch plan.
    pub config: PathBuf,
    pub control_socket: PathBuf,
    pub console_socket: PathBuf,
}

pub trait Engine {
    fn kind(&self) -> EngineKind;
    /// The kernel file to boot for the guest's bzImage.
    fn boot_kernel(&self, bzimage: &Path) -> PathBuf {
        bzimage.to_path_buf()
    }
    /// Program and arguments that run `config` until it powers off, with its control
    /// socket and its serial console served on UNIX sockets; an error when this
    /// engine cannot run `config` exactly. With `restore`, the VM continues from
    /// that state file (written by [`Engine::suspend`] for the same `config`)
    /// instead of booting; [`Engine::finish_restore`] then lets it run.
    fn vm_command(
        &self,
        config: &MachineConfig,
        files: &VmFiles,
        restore: Option<&Path>,
    ) -> Result<Vec<String>>;
    /// Whether the command writes the serial log to the supervisor's pipe at
    /// [`crate::supervisor::SERIAL_FD`] (which rotates it) rather than rotating the
    /// file itself.
    fn serial_through_pipe(&self) -> bool {
        false
    }
    /// Ask the guest to shut down (the ACPI power button).
    fn request_poweroff(&self, control_socket: &Path) -> Result<()>;
    /// Stop the VM at once, without the guest's cooperation.
    fn hard_stop(&self, control_socket: &Path) -> Result<()>;
    /// What holds the guest's disk I/O, e.g. `disk full on PATH (N free)`, one entry
    /// per disk; empty when nothing does.
    fn io_paused(&self, control_socket: &Path) -> Result<Vec<String>>;
    /// Retry the disk I/O held for want of space now.
    fn resume_io(&self, control_socket: &Path) -> Result<()>;
    /// Pause the guest, write its whole state into `dest` and end the VM. On an
    /// error the guest runs on as before.
    fn suspend(&self, control_socket: &Path, dest: &File) -> Result<()>;
    /// Once a VM started with `restore` runs: load `state` where the engine needs
    /// telling, and return when the guest runs again. An error carries the engine's
    /// reason; `vm_alive` says whether the VM process still runs.
    fn finish_restore(
        &self,
        control_socket: &Path,
        state: &Path,
        vm_alive: &dyn Fn() -> bool,
    ) -> Result<()>;
    /// Pause the guest, write its whole state into `dest`, run `while_paused` (which
    /// copies the disk that matches the state), and continue the guest whatever
    /// happened.
    fn save_paused(
        &self,
        _control_socket: &Path,
        _dest: &File,
        _while_paused: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        bail!("the {} engine cannot yet save a machine and keep it running (its VMM continues the guest before the disk could be copied); suspend the machine, save the snapshot, and `hvbox up`", self.kind())
    }
    /// Continue a guest left paused by a suspend that was cut short (its `hvbox
    /// suspend` killed); true when it was paused.
    fn continue_if_paused(&self, _control_socket: &Path) -> Result<bool> {
        Ok(false)
    }
    /// Whether a save needs the shared folders' devices out of the machine first
    /// (QEMU cannot save a vhost-user-fs device; the builtin engine saves its own).
    fn unplugs_shares(&self) -> bool {
        false
    }
    /// Whether the first `count` shares' devices can be taken out for a save (a
    /// machine started by an older hvbox has no hot-plug port for them).
    fn check_shares_unpluggable(&self, _control_socket: &Path, _count: usize) -> Result<()> {
        bail!(
            "the {} engine saves shared folders with the machine",
            self.kind()
        )
    }
    /// Which of the first `count` shares have their device plugged in.
    fn plugged_shares(&self, _control_socket: &Path, _count: usize) -> Result<Vec<usize>> {
        bail!(
            "the {} engine saves shared folders with the machine",
            self.kind()
        )
    }
    /// Ask the guest to release the devices of the first `count` shares and wait up
    /// to `wait` for it; returns the shares whose device is still in (empty when all
    /// went).
    fn unplug_shares(
        &self,
        _control_socket: &Path,
        _count: usize,
        _wait: Duration,
    ) -> Result<Vec<usize>> {
        bail!(
            "the {} engine saves shared folders with the machine",
            self.kind()
        )
    }
    /// Close the connections to the virtiofsd of these shares (unplugged before).
    fn release_shares(&self, _control_socket: &Path, _indexes: &[usize]) -> Result<()> {
        bail!(
            "the {} engine saves shared folders with the machine",
            self.kind()
        )
    }
    /// Connect each (index, share) to its virtiofsd and plug its device back in.
    fn plug_shares(&self, _control_socket: &Path, _shares: &[(usize, FsConfig)]) -> Result<()> {
        bail!(
            "the {} engine saves shared folders with the machine",
            self.kind()
        )
    }
    /// The engine program's version where a saved state needs the same one to load
    /// (QEMU's); `None` where hvbox's own version decides.
    fn state_version(&self) -> Option<String> {
        None
    }
}

/// The engine for a spec's choice on this host, and why it was picked.
pub fn select(choice: EngineChoice, host: &HostVirt) -> Result<(Box<dyn Engine>, String)> {
    match choice {
        EngineChoice::Builtin if !host.hardware => bail!(
            "engine: builtin (hvbox's embedded VMM) needs hardware virtualization, and here {}; set `engine: qemu` or `engine: auto` in hvbox.yaml to run the machine under QEMU's software emulation",
            host.detail
        ),
        EngineChoice::Builtin => Ok((
            Box::new(builtin::Builtin::new()?),
            format!("hvbox's embedded VMM (engine: builtin in the spec; {})", host.detail),
        )),
        EngineChoice::Auto if host.hardware => Ok((
            Box::new(builtin::Builtin::new()?),
            format!("hvbox's embedded VMM (engine: auto picked it: {})", host.detail),
        )),
        EngineChoice::Qemu => {
            let engine = qemu::Qemu::new(host.hardware);
            let reason = format!("qemu (engine: qemu in the spec; {})", engine.accel_reason(host));
            Ok((Box::new(engine), reason))
        }
        EngineChoice::Auto => {
            let engine = qemu::Qemu::new(host.hardware);
            let reason = format!(
                "qemu (engine: auto picked it because the embedded VMM needs hardware virtualization; {})",
                engine.accel_reason(host)
            );
            Ok((Box::new(engine), reason))
        }
    }
}

/// A warning for a machine that runs under software emulation only because this
/// user cannot open /dev/kvm on a CPU with hardware virtualization.
pub fn emulation_warning(choice: EngineChoice, host: &HostVirt) -> Option<String> {
    let why = host.unreachable.as_deref()?;
    (choice != EngineChoice::Builtin).then(|| {
        format!("this CPU has hardware virtualization, but {why}. Until then machines run under QEMU's software emulation, 10 to 50 times slower")
    })
}

/// The engine a running machine was started with (recorded in its run file).
pub fn of_kind(kind: EngineKind) -> Result<Box<dyn Engine>> {
    Ok(match kind {
        EngineKind::Qemu => Box::new(qemu::Qemu::new(false)),
        EngineKind::Builtin => Box::new(builtin::Builtin::new()?),
    })
}

/// A machine as `launch` describes it: root disk, read-only seed, one NIC on passt.
#[cfg(test)]
pub(crate) fn sample_config() -> MachineConfig {
    use hvbox_vmm::{DiskConfig, NetBackend, NetConfig};
    MachineConfig {
        cpus: 2,
        memory: 1 << 30,
        kernel: "/m/vmlinuz".into(),
        initrd: Some("/m/initrd.img".into()),
        cmdline: "root=PARTUUID=x ro console=ttyS0".into(),
        disks: vec![
            DiskConfig {
                path: "/m/disk.raw".into(),
                read_only: false,
            },
            DiskConfig {
                path: "/m/seed.iso".into(),
                read_only: true,
            },
        ],
        nics: vec![NetConfig {
            mac: "52:54:00:01:02:03".parse().unwrap(),
            backend: NetBackend::Passt("/run/x/passt.sock".into()),
        }],
        filesystems: vec![],
        serial_log: Some("/m/serial.log".into()),
        nested_virtualization: false,
    }
}

/// Where `launch` puts a VM's files, in `dir`.
#[cfg(test)]
fn sample_files(dir: &Path) -> VmFiles {
    VmFiles {
        config: dir.join("vm.json"),
        control_socket: "/run/x/control.sock".into(),
        console_socket: "/run/x/console.sock".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU with SVM whose /dev/kvm this user may not open.
    fn unreachable_hardware() -> HostVirt {
        host::classify(
            Err(std::io::Error::from_raw_os_error(libc::EACCES)),
            true,
            &host::KvmAccess {
                group: Some("kvm".into()),
                user: Some("alice".into()),
                listed_in_group: false,
                has_group: false,
            },
        )
    }

    #[test]
    fn builtin_on_unreachable_hardware_fails_with_the_fix() {
        let host = unreachable_hardware();
        let err = select(EngineChoice::Builtin, &host)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("needs hardware virtualization"), "{err}");
        assert!(err.contains("sudo usermod -aG kvm alice"), "{err}");
        assert!(emulation_warning(EngineChoice::Builtin, &host).is_none());
    }

    #[test]
    fn auto_on_unreachable_hardware_falls_back_out_loud() {
        let host = unreachable_hardware();
        let (engine, reason) = select(EngineChoice::Auto, &host).unwrap();
        assert_eq!(engine.kind(), EngineKind::Qemu);
        assert!(reason.contains("TCG software emulation"), "{reason}");
        let warning = emulation_warning(EngineChoice::Auto, &host).expect("a warning");
        assert!(warning.contains("usermod -aG kvm alice"), "{warning}");
        assert!(warning.contains("10 to 50 times slower"), "{warning}");
        // A CPU without vmx/svm has nothing to fix.
        let plain = host::classify(
            Err(std::io::Error::from_raw_os_error(libc::EACCES)),
            false,
            &host::KvmAccess::default(),
        );
        assert!(emulation_warning(EngineChoice::Auto, &plain).is_none());
    }
}
