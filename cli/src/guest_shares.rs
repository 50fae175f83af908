//! Shared folders across a save on an engine that cannot save their devices
//! (QEMU): before, the guest unmounts each share (refused, naming the processes, when
//! one is in use) and the devices are unplugged and their virtiofsd let go; after, or
//! on resume, fresh virtiofsd, the devices plugged back, and the guest mounts each
//! share again from its fstab entry, as at boot.

use crate::engine::Engine;
use crate::kernel_install::shell_quote;
use crate::machine::runtime::MountPoint;
use crate::machine::{Machine, MachineState, RunInfo};
use crate::share_requests;
use crate::ssh;
use anyhow::{bail, Context, Result};
use hvbox_vmm::FsConfig;
use std::process::Stdio;
use std::time::Duration;

/// How long the guest gets to release a device. Linux's PCIe hotplug waits 5 s
/// after the button press before it powers a slot off; emulation slows it more.
const UNPLUG_WAIT: Duration = Duration::from_secs(60);
/// How long a plugged-in device gets to appear to the guest's virtiofs driver.
const MOUNT_TRIES: u32 = 120;
/// The unmount script's exit code when a share is in use.
const BUSY: i32 = 3;

pub struct GuestShares<'a> {
    machine: &'a Machine,
    state: MachineState,
    info: &'a RunInfo,
    engine: &'a dyn Engine,
    /// Each share's tag and virtiofsd socket, as the engine runs them.
    fs: Vec<FsConfig>,
}

impl<'a> GuestShares<'a> {
    pub fn new(
        machine: &'a Machine,
        info: &'a RunInfo,
        engine: &'a dyn Engine,
        fs: Vec<FsConfig>,
    ) -> Result<GuestShares<'a>> {
        Ok(GuestShares {
            machine,
            state: machine.load_state()?,
            info,
            engine,
            fs,
        })
    }

    /// Whether a save must take the shares out first.
    pub fn needed(&self) -> bool {
        self.engine.unplugs_shares() && !self.fs.is_empty()
    }

    fn all(&self) -> Vec<usize> {
        (0..self.fs.len()).collect()
    }

    fn mounts(&self) -> &[MountPoint] {
        &self.info.mounts
    }

    /// Unmount in the guest, unplug, let virtiofsd go. On an error everything is as
    /// it was: shares mounted, machine running.
    pub fn detach(&self) -> Result<()> {
        // A share whose virtiofsd is gone answers nothing: the guest's umount (and
        // the stat before it) would wait for ever.
        if !self.info.lost_mounts.is_empty() {
            bail!(
                "the shared folder {} lost its virtiofsd (see `hvbox status`), and its mount in the guest no longer answers, so it cannot be unmounted for the save; `hvbox reload` the machine to get it back, then save",
                self.info.lost_mounts.join(", ")
            );
        }
        let control = &self.info.control_socket;
        self.engine
            .check_shares_unpluggable(control, self.fs.len())?;
        self.unmount()?;
        let runtime = &self.info.runtime_dir;
        if let Err(e) = share_requests::mark_unplugged(runtime, &self.all()) {
            return Err(with_undo(e, self.mount()));
        }
        let stuck = match self
            .engine
            .unplug_shares(control, self.fs.len(), UNPLUG_WAIT)
        {
            Ok(stuck) => stuck,
            Err(e) => {
                // Some devices may have gone before the error: put back just those.
                let back = self
                    .engine
                    .plugged_shares(control, self.fs.len())
                    .context("asking the engine which shared folders are still plugged in")
                    .and_then(|present| self.undo_unplug(&present));
                return Err(with_undo(
                    e.context("unplugging the shared folders' devices"),
                    back,
                ));
            }
        };
        if !stuck.is_empty() {
            let back = self.undo_unplug(&stuck);
            let which: Vec<String> = stuck
                .iter()
                .map(|&i| self.mounts()[i].guest.display().to_string())
                .collect();
            return Err(with_undo(
                anyhow::anyhow!(
                    "the guest did not release the device of the shared folder {} within {} s, so the machine cannot be saved; the request stays pending in the guest, which may still take that folder away later (`hvbox reload` brings it back)",
                    which.join(", "),
                    UNPLUG_WAIT.as_secs()
                ),
                back,
            ));
        }
        if let Err(e) = self.engine.release_shares(control, &self.all()) {
            let back = self.undo_unplug(&[]);
            return Err(with_undo(e, back));
        }
        Ok(())
    }

    /// After a failed unplug: plug back the devices that went (all but `stuck`)
    /// and mount everything again.
    fn undo_unplug(&self, stuck: &[usize]) -> Result<()> {
        let gone: Vec<usize> = self
            .all()
            .into_iter()
            .filter(|i| !stuck.contains(i))
            .collect();
        if !gone.is_empty() {
            let _ = self.engine.release_shares(&self.info.control_socket, &gone);
            self.replug(&gone)?;
        } else {
            share_requests::clear_unplugged(&self.info.runtime_dir);
        }
        self.mount()
    }

    /// A save cut short (its `hvbox` killed) after the guest unmounted the shares
    /// (`share_requests::any_unplugged` says so) may have left devices out, or their
    /// removal under way: finish taking them out, then put all back and mount them.
    pub fn recover_cut_save(&self) -> Result<()> {
        let control = &self.info.control_socket;
        let stuck = self
            .engine
            .unplug_shares(control, self.fs.len(), UNPLUG_WAIT)?;
        if !stuck.is_empty() {
            bail!(
                "the guest did not release the devices of its shared folders within {} s",
                UNPLUG_WAIT.as_secs()
            );
        }
        // A connection the cut save left open goes first: its id is reused.
        let _ = self.engine.release_shares(control, &self.all());
        self.attach()
    }

    /// Fresh virtiofsd, devices plugged back, shares mounted: after a live save, or
    /// a save that failed.
    pub fn attach(&self) -> Result<()> {
        self.replug(&self.all())?;
        self.mount()
    }

    fn replug(&self, indexes: &[usize]) -> Result<()> {
        share_requests::restart(&self.info.runtime_dir, self.info.supervisor_pid, indexes)?;
        self.plug(indexes)
    }

    /// Plug the devices of `indexes` into a machine whose virtiofsd listen.
    pub fn plug(&self, indexes: &[usize]) -> Result<()> {
        let shares: Vec<(usize, FsConfig)> =
            indexes.iter().map(|&i| (i, self.fs[i].clone())).collect();
        self.engine.plug_shares(&self.info.control_socket, &shares)
    }

    /// Mount every share in the guest from its fstab entry (written by the seed at
    /// boot), waiting for a device just plugged in to show.
    pub fn mount(&self) -> Result<()> {
        let mut script = String::new();
        for m in self.mounts() {
            let p = shell_quote(&m.guest.to_string_lossy());
            script.push_str(&format!(
                "t=0; until mountpoint -q {p} || mount {p} 2>/dev/null; do t=$((t+1)); if [ $t -ge {MOUNT_TRIES} ]; then mount {p} || exit 1; fi; sleep 0.5; done; "
            ));
        }
        let out = self.run_as_root(&script)?;
        if !out.status.success() {
            bail!(
                "the guest could not mount its shared folders again: {}",
                crate::guest_text::sanitize(String::from_utf8_lossy(&out.stderr).trim())
            );
        }
        Ok(())
    }

    /// Unmount each share in the guest; when one is in use, mount again what was
    /// unmounted and refuse, naming the processes.
    fn unmount(&self) -> Result<()> {
        let out = self.run_as_root(&unmount_script(self.mounts()))?;
        if out.status.code() == Some(BUSY) {
            let text = crate::guest_text::sanitize(String::from_utf8_lossy(&out.stdout).trim());
            let (path, users) = text.split_once('\n').unwrap_or((&text, ""));
            let users = if users.trim().is_empty() {
                "  (no process found holding it; see `hvbox ssh -- sudo umount` for why)"
                    .to_string()
            } else {
                users
                    .lines()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            bail!(
                "the shared folder {path} is in use in the guest, so it cannot be unmounted for the save:\n{users}\nend these processes or move them out of {path}, then try again; the machine runs on with its shared folders mounted"
            );
        }
        if !out.status.success() {
            bail!(
                "unmounting the shared folders in the guest failed: {}",
                crate::guest_text::sanitize(String::from_utf8_lossy(&out.stderr).trim())
            );
        }
        Ok(())
    }

    fn run_as_root(&self, script: &str) -> Result<std::process::Output> {
        ssh::batch_command(self.machine, &self.state, self.info.ssh_port)
            .arg(format!("sudo -n sh -c {}", shell_quote(script)))
            .stdin(Stdio::null())
            .output()
            .context("running ssh")
    }
}

/// An error, and whether undoing what came before it worked.
fn with_undo(e: anyhow::Error, undone: Result<()>) -> anyhow::Error {
    match undone {
        Ok(()) => e.context("the machine runs on with its shared folders mounted"),
        Err(u) => e.context(format!(
            "and putting the shared folders back failed too ({u:#}): the machine runs on, but `hvbox reload` is needed to mount them again"
        )),
    }
}

/// Unmount each share (deepest first); on one in use, print its path, then one line
/// per process using it, mount again what this script unmounted, and exit [`BUSY`].
fn unmount_script(mounts: &[MountPoint]) -> String {
    let mut script = String::from(
        "using() { for d in /proc/[0-9]*; do why=; c=$(readlink $d/cwd 2>/dev/null); \
         case \"$c\" in \"$1\"|\"$1\"/*) why=\"working directory $c\";; esac; \
         if [ -z \"$why\" ]; then for f in $d/fd/* $d/exe $d/root; do t=$(readlink \"$f\" 2>/dev/null) || continue; \
         case \"$t\" in \"$1\"|\"$1\"/*) why=\"open file $t\"; break;; esac; done; fi; \
         [ -n \"$why\" ] && echo \"pid ${d#/proc/} ($(cat $d/comm 2>/dev/null)): $why\"; done; true; }; ",
    );
    let mut order: Vec<(usize, &MountPoint)> = mounts.iter().enumerate().collect();
    order.sort_by_key(|(_, m)| std::cmp::Reverse(m.guest.components().count()));
    let mut remount = String::new();
    for (i, m) in order {
        let p = shell_quote(&m.guest.to_string_lossy());
        script.push_str(&format!(
            "u{i}=0; if mountpoint -q {p}; then if umount {p} 2>/dev/null; then u{i}=1; else echo {p}; using {p}; {remount}exit {BUSY}; fi; fi; "
        ));
        remount = format!("[ $u{i} = 1 ] && mount {p}; {remount}");
    }
    script.push_str("exit 0");
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn mounts(dir: &std::path::Path) -> Vec<MountPoint> {
        vec![
            MountPoint {
                host: "/h/p".into(),
                guest: dir.join("a dir"),
            },
            MountPoint {
                host: "/h/q".into(),
                guest: dir.join("a dir/inner"),
            },
        ]
    }

    /// The script in a real shell, on folders that are not mount points: nothing to
    /// unmount, nothing refused.
    #[test]
    fn the_unmount_script_is_valid_shell_and_skips_what_is_not_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let s = unmount_script(&mounts(dir.path()));
        // Deepest first, and the outer one mounts the inner's again on a refusal.
        let inner = s.find("inner'; then").unwrap();
        let outer = s.rfind("a dir'; then").unwrap();
        assert!(inner < outer, "{s}");
        assert!(s.contains("[ $u1 = 1 ] && mount"), "{s}");
        let out = Command::new("sh").args(["-c", &s]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// The process finder names a process whose working directory is in a folder.
    #[test]
    fn the_process_finder_names_a_process_working_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("a dir/inner");
        std::fs::create_dir_all(&inside).unwrap();
        let mut sleeper = Command::new("sleep")
            .arg("30")
            .current_dir(&inside)
            .spawn()
            .unwrap();
        let s = unmount_script(&mounts(dir.path()));
        let finder = &s[..s.find("u1=0").unwrap()];
        let folder = shell_quote(&dir.path().join("a dir").to_string_lossy());
        let out = Command::new("sh")
            .args(["-c", &format!("{finder} using {folder}")])
            .output()
            .unwrap();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!(
                "pid {} (sleep): working directory {}",
                sleeper.id(),
                inside.display()
            )),
            "{text}"
        );
    }
}
