//! Inventory of the kernels on a disk: every `vmlinuz` in the boot
//! directories and every kernel a grub or BLS entry names, each identified
//! by the release in its bzImage header, plus the one the bootloader boots
//! by default.

use std::collections::HashMap;

use crate::bzimage_version::{self, HEAD_LEN};
use crate::guest_fs::{self, file_name, join, Resolved};
use crate::volumes::Disk;
use crate::{bls, grub, grubenv, version_order, Error};

/// Where kernels live: `/boot` of a root fs, or the top of a separate boot
/// partition (which also holds Debian's `/vmlinuz` symlink on a root fs).
const BOOT_DIRS: [&str; 2] = ["/boot", "/"];

#[derive(Debug)]
pub(crate) struct Kernel {
    pub volume: usize,
    /// Canonical guest path (symlinks resolved inside the guest fs).
    pub path: String,
    /// Release from the bzImage header, else from the file name.
    pub version: String,
    /// The `vmlinuz-<tag>` file name's tag when it differs from `version`
    /// (Arch's `vmlinuz-linux`, Fedora's `vmlinuz-0-rescue-…`).
    pub name_tag: Option<String>,
}

/// A grub or BLS entry whose kernel was found.
#[derive(Debug)]
pub(crate) struct Entry {
    pub volume: usize,
    /// Canonical path of the entry's kernel.
    pub kernel: String,
    /// Directory the entry's paths are relative to.
    pub boot_dir: &'static str,
    pub args: Vec<String>,
    pub initrds: Vec<String>,
    /// The bootloader file the entry was read from (`/boot/grub/grub.cfg`, a BLS
    /// entry's `.conf`), for saying what decided the default.
    pub source: String,
}

#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Newest first.
    pub kernels: Vec<Kernel>,
    pub entries: Vec<Entry>,
    /// Index into `entries` of the bootloader's default.
    default_entry: Option<usize>,
    /// Candidates rejected, with the reason, for error messages.
    pub skipped: Vec<String>,
}

impl Inventory {
    pub fn scan(disk: &Disk) -> Result<Self, Error> {
        let mut inv = Inventory::default();
        for volume in 0..disk.volumes.len() {
            for boot_dir in BOOT_DIRS {
                let fs = &disk.volumes[volume].fs;
                let is_dir = guest_fs::is_dir(fs, boot_dir)
                    .map_err(|e| disk.guest_err(volume, boot_dir, e))?;
                if is_dir {
                    inv.scan_dir(disk, volume, boot_dir)?;
                }
            }
        }
        // Same release twice (e.g. a rescue copy): the file named after
        // its release first.
        inv.kernels.sort_by(|a, b| {
            version_order::compare(&b.version, &a.version)
                .then_with(|| a.name_tag.is_some().cmp(&b.name_tag.is_some()))
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(inv)
    }

    /// The bootloader's default kernel, else the newest.
    pub fn default_kernel(&self) -> Option<&Kernel> {
        self.default_entry
            .and_then(|i| self.kernel_at(self.entries[i].volume, &self.entries[i].kernel))
            .or_else(|| self.kernels.first())
    }

    /// The bootloader file whose default entry names the default kernel; `None`
    /// when no bootloader names one and the newest kernel is the default.
    pub fn default_source(&self) -> Option<(usize, &str)> {
        self.default_kernel()?;
        self.default_entry
            .map(|i| (self.entries[i].volume, self.entries[i].source.as_str()))
    }

    /// The kernel with exactly this release; the default one if several.
    pub fn by_version(&self, version: &str) -> Option<&Kernel> {
        self.default_kernel()
            .filter(|k| k.version == version)
            .or_else(|| self.kernels.iter().find(|k| k.version == version))
    }

    /// Releases, newest first, each once.
    pub fn versions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in &self.kernels {
            if !out.contains(&k.version) {
                out.push(k.version.clone());
            }
        }
        out
    }

    /// The entry that boots `kernel` (the default entry if it does).
    pub fn entry_for(&self, kernel: &Kernel) -> Option<&Entry> {
        let boots = |e: &&Entry| e.volume == kernel.volume && e.kernel == kernel.path;
        self.default_entry
            .map(|i| &self.entries[i])
            .filter(boots)
            .or_else(|| self.entries.iter().find(boots))
    }

    /// Arguments for `kernel`: its own entry's, else the default entry's
    /// on the same filesystem (distros give every kernel the same ones).
    pub fn args_for(&self, kernel: &Kernel) -> Option<&[String]> {
        self.entry_for(kernel)
            .or_else(|| {
                self.default_entry
                    .map(|i| &self.entries[i])
                    .filter(|e| e.volume == kernel.volume)
            })
            .map(|e| e.args.as_slice())
    }

    fn kernel_at(&self, volume: usize, path: &str) -> Option<&Kernel> {
        self.kernels
            .iter()
            .find(|k| k.volume == volume && k.path == path)
    }

    fn scan_dir(
        &mut self,
        disk: &Disk,
        volume: usize,
        boot_dir: &'static str,
    ) -> Result<(), Error> {
        let fs = &disk.volumes[volume].fs;
        let read = |rel: &str| {
            let path = join(boot_dir, rel);
            guest_fs::read_optional(fs, &path)
                .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .map_err(|e| disk.guest_err(volume, &path, e))
        };
        let env = match read("grub2/grubenv")?.or(read("grub/grubenv")?) {
            Some(text) => grubenv::parse(&text),
            None => HashMap::new(),
        };
        let saved = env.get("saved_entry").map(String::as_str);

        let grub_cfg = match read("grub/grub.cfg")? {
            Some(text) => Some((text, "grub/grub.cfg")),
            None => read("grub2/grub.cfg")?.map(|text| (text, "grub2/grub.cfg")),
        };
        if let Some((cfg, cfg_path)) = grub_cfg {
            let menu = grub::parse(&cfg);
            let default = menu.default_entry(saved);
            for e in menu.entries() {
                let entry = Entry {
                    volume,
                    kernel: e.kernel.clone(),
                    boot_dir,
                    args: e.args.clone(),
                    initrds: e.initrds.clone(),
                    source: join(boot_dir, cfg_path),
                };
                self.add_entry(disk, entry, default.is_some_and(|d| std::ptr::eq(d, e)))?;
            }
        }

        let mut entries = Vec::new();
        let entries_dir = join(boot_dir, "loader/entries");
        let names = guest_fs::list_dir(fs, &entries_dir)
            .map_err(|e| disk.guest_err(volume, &entries_dir, e))?;
        for name in names {
            let Some(id) = name.strip_suffix(".conf") else {
                continue;
            };
            if let Some(text) = read(&format!("loader/entries/{name}"))? {
                entries.push(bls::parse(id, &text));
            }
        }
        bls::sort(&mut entries);
        let default = bls::default_index(&entries, saved);
        for (i, e) in entries.into_iter().enumerate() {
            if let Some(linux) = e.linux {
                let entry = Entry {
                    volume,
                    kernel: linux,
                    boot_dir,
                    args: grubenv::expand(&e.options, &env),
                    initrds: e.initrds,
                    source: join(&entries_dir, &format!("{}.conf", e.id)),
                };
                self.add_entry(disk, entry, default == Some(i))?;
            }
        }

        let names =
            guest_fs::list_dir(fs, boot_dir).map_err(|e| disk.guest_err(volume, boot_dir, e))?;
        for name in names {
            if name == "vmlinuz" || name.starts_with("vmlinuz-") {
                self.add_kernel(disk, volume, &join(boot_dir, &name))?;
            }
        }
        Ok(())
    }

    /// Record a bootloader entry if its kernel is usable.
    fn add_entry(&mut self, disk: &Disk, entry: Entry, is_default: bool) -> Result<(), Error> {
        let (volume, named) = (entry.volume, entry.kernel.as_str());
        let fs = &disk.volumes[volume].fs;
        let err = |e| disk.guest_err(volume, named, e);
        let found = match guest_fs::find_boot_path(fs, entry.boot_dir, named).map_err(err)? {
            Some(p) => self.add_kernel(disk, volume, &p)?,
            None => {
                let why = match guest_fs::resolve_file(fs, named).map_err(err)? {
                    Resolved::Absent(why) => why,
                    Resolved::File(_) => "missing".into(),
                };
                self.skip(
                    disk,
                    volume,
                    named,
                    &format!("named by the bootloader, {why}"),
                );
                None
            }
        };
        let Some(kernel) = found else {
            return Ok(());
        };
        if is_default && self.default_entry.is_none() {
            self.default_entry = Some(self.entries.len());
        }
        self.entries.push(Entry { kernel, ..entry });
        Ok(())
    }

    /// Resolve and identify a kernel file; returns its canonical path, or
    /// `None` (noted in `skipped`) if it is no usable kernel.
    fn add_kernel(
        &mut self,
        disk: &Disk,
        volume: usize,
        named: &str,
    ) -> Result<Option<String>, Error> {
        let fs = &disk.volumes[volume].fs;
        let err = |e| disk.guest_err(volume, named, e);
        let path = match guest_fs::resolve_file(fs, named).map_err(err)? {
            Resolved::File(p) => p,
            Resolved::Absent(why) => {
                self.skip(disk, volume, named, &why);
                return Ok(None);
            }
        };
        if self.kernel_at(volume, &path).is_some() {
            return Ok(Some(path));
        }
        // A damaged candidate must not block the others from booting.
        let head = match guest_fs::read_head(fs, &path, HEAD_LEN) {
            Ok(head) => head,
            Err(e) => {
                self.skip(disk, volume, named, &format!("cannot read it: {e}"));
                return Ok(None);
            }
        };
        // Only the file's own name: a symlink's name says nothing about
        // what it points at.
        let name_version = file_name(&path)
            .strip_prefix("vmlinuz-")
            .filter(|t| bzimage_version::is_release(t))
            .map(str::to_string);
        // The header says what the kernel is; a renamed file cannot lie.
        let Some(version) = bzimage_version::kernel_version(&head).or(name_version.clone()) else {
            self.skip(
                disk,
                volume,
                named,
                "no kernel release in it (no bzImage header) or in its name",
            );
            return Ok(None);
        };
        self.kernels.push(Kernel {
            volume,
            name_tag: name_version.filter(|t| *t != version),
            path: path.clone(),
            version,
        });
        Ok(Some(path))
    }

    fn skip(&mut self, disk: &Disk, volume: usize, path: &str, why: &str) {
        let note = format!("{path} on {}: {why}", disk.volumes[volume].describe());
        if !self.skipped.contains(&note) {
            self.skipped.push(note);
        }
    }
}
