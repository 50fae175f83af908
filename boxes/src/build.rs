//! `hvbox box build`: a small Debian box made from Debian's own packages.
//!
//! mmdebstrap installs a minimal system (kernel, systemd, cloud-init, sshd) into a
//! directory, `mkfs.ext4 -d` turns that directory into a filesystem image without
//! mounting anything, and the image becomes partition 1 of a GPT raw disk. A normal
//! user builds the same in a user namespace: mmdebstrap writes a tarball there, and
//! fakeroot unpacks it and runs `mkfs.ext4 -d` with every file's owner as it was. The result
//! is a box directory (`disk.raw` + `SHA512SUMS`) that the catalog resolves by name and
//! that can be served over HTTP like any published box.
//!
//! A build is keyed by its recipe (suite, packages, size, apt sources, builder
//! revision): an output directory that already holds a box of the same recipe is reused.

use crate::apt_sources::{host_sources_for, AptSources};
use crate::boot_profile::BootProfile;
use crate::catalog::{LOCAL_DISK_FILE, LOCAL_SUMS_FILE};
use crate::{Algorithm, Digest};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped whenever the steps below change what ends up in the disk.
const BUILDER_REVISION: u32 = 3;
/// The recipe a box folder was built from; written last, it marks a finished box.
pub const RECIPE_FILE: &str = "recipe.sha256";
const MIB: u64 = 1 << 20;
/// The partition starts at 1 MiB; the backup GPT needs 33 sectors at the end.
const PARTITION_START: u64 = MIB;
const LINUX_FS_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// What a built box holds beyond Debian's minimal base (and its boot profile's own).
pub const DEFAULT_PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "systemd-sysv",
    "udev",
    "dbus",
    "cloud-init",
    "cloud-guest-utils",
    // cloud-init sets the locale (locale-gen, update-locale).
    "locales",
    "openssh-server",
    "iproute2",
    "sudo",
];

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// Where `disk.raw` and `SHA512SUMS` go.
    pub out_dir: PathBuf,
    /// An apt sources file (one-line or deb822). `None`: the host's own entries for the suite.
    pub sources: Option<PathBuf>,
    /// Size of the raw disk in bytes.
    pub disk_size: u64,
    pub extra_packages: Vec<String>,
    /// Rebuild even when the output already matches the recipe.
    pub force: bool,
    /// How the guest brings up its network and runs cloud-init.
    pub profile: BootProfile,
}

#[derive(Debug, Clone)]
pub struct BuiltBox {
    pub disk: PathBuf,
    pub digest: Digest,
    /// False when an earlier build of the same recipe was reused.
    pub built: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{tool}` is needed to build a box but was not found; install the Debian package `{package}`")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("`{command}` failed with {status}{}", tail_of(.output))]
    CommandFailed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("no apt source for Debian `{suite}` was found on this host (looked in /etc/apt/sources.list and /etc/apt/sources.list.d); pass one with --sources FILE")]
    NoSources { suite: String },
    #[error("building a box as {user}, a normal user, needs a user namespace, but {why}. Fix that, or build with `sudo hvbox box build …`, which stores the box for {user} all the same")]
    NoUserNamespace { user: String, why: String },
    #[error(
        "building a box as a normal user needs an entry for uid {uid} in the password database"
    )]
    NoAccount { uid: u32 },
    #[error("disk size {size} is too small: the root filesystem alone needs {needed} bytes")]
    DiskTooSmall { size: u64, needed: u64 },
    #[error(transparent)]
    Digest(#[from] crate::Error),
}

/// `FOLDER.lock`, beside the box folder.
pub fn lock_file_of(out_dir: &Path) -> PathBuf {
    let name = out_dir
        .file_name()
        .map(|n| format!("{}.lock", n.to_string_lossy()))
        .unwrap_or_else(|| ".box.lock".into());
    match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(name),
        _ => PathBuf::from(name),
    }
}

/// The lock of a box folder, `FOLDER.lock` beside it (the folder itself is made
/// and emptied by the build).
fn lock_out_dir(
    out_dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<crate::lock::EntryLock, BuildError> {
    let path = lock_file_of(out_dir);
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io("creating", parent))?;
    Ok(crate::lock::EntryLock::acquire(&path, || {
        log(&format!(
            "another build of {} is running; waiting for it",
            out_dir.display()
        ))
    })?)
}

fn tail_of(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines.len().saturating_sub(15);
    if lines.is_empty() {
        String::new()
    } else {
        format!(":\n{}", lines[start..].join("\n"))
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io {
        action,
        path,
        source,
    }
}

/// Build the box, or reuse the one already in `out_dir` when its recipe matches.
pub fn build(opts: &BuildOptions, log: &mut dyn FnMut(&str)) -> Result<BuiltBox, BuildError> {
    let sources = match &opts.sources {
        Some(path) => {
            let text = fs::read_to_string(path).map_err(io("reading apt sources", path))?;
            AptSources::from_file(path, text)
        }
        None => host_sources_for(&opts.suite)?,
    };
    let packages = packages(opts);
    let recipe = recipe_digest(opts, &packages, &sources);
    // One build of a folder at a time: a second waits, then finds the box built
    // (two builds into one folder would swap the disk under the first).
    let _lock = lock_out_dir(&opts.out_dir, log)?;
    let disk = opts.out_dir.join(LOCAL_DISK_FILE);
    let sums = opts.out_dir.join(LOCAL_SUMS_FILE);
    if !opts.force && disk.exists() {
        if let (Ok(found), Ok(sums_text)) = (
            fs::read_to_string(opts.out_dir.join(RECIPE_FILE)),
            fs::read_to_string(&sums),
        ) {
            if found.trim() == recipe {
                if let Some(digest) =
                    crate::catalog::digest_from_sums(&sums_text, LOCAL_DISK_FILE, Algorithm::Sha512)
                {
                    log(&format!(
                        "box in {} is up to date with its recipe; reusing it (--force rebuilds)",
                        opts.out_dir.display()
                    ));
                    return Ok(BuiltBox {
                        disk,
                        digest,
                        built: false,
                    });
                }
            }
        }
    }
    let in_namespace = unsafe_geteuid() != 0;
    if in_namespace {
        let uid = unsafe_geteuid();
        let user = crate::build_user::account(uid).ok_or(BuildError::NoAccount { uid })?;
        if let Some(why) = crate::build_user::why_no_user_namespace(&user) {
            return Err(BuildError::NoUserNamespace {
                user: user.name,
                why,
            });
        }
        require_tool("fakeroot", "fakeroot")?;
    }
    require_tool("mmdebstrap", "mmdebstrap")?;
    require_tool("mkfs.ext4", "e2fsprogs")?;
    require_tool("sfdisk", "fdisk")?;

    fs::create_dir_all(&opts.out_dir).map_err(io("creating", &opts.out_dir))?;
    remove_stale_work_dirs(&opts.out_dir);
    let work = opts.out_dir.join(format!(".build-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(work.clone());
    fs::create_dir_all(&work).map_err(io("creating", &work))?;
    let mut sources_files = Vec::new();
    for (name, text) in [
        ("host.list", &sources.one_line),
        ("host.sources", &sources.deb822),
    ] {
        if !text.trim().is_empty() {
            // mmdebstrap tells the two formats apart by the file's extension.
            let file = work.join(name);
            fs::write(&file, text).map_err(io("writing", &file))?;
            sources_files.push(file);
        }
    }

    let root = work.join("root");
    // In a user namespace mmdebstrap cannot leave files owned by root on the disk: it
    // writes them, owners and all, into a tarball instead.
    let (mode, format, tree) = if in_namespace {
        ("unshare", "tar", work.join("root.tar"))
    } else {
        ("root", "directory", root.clone())
    };
    log(&format!(
        "installing Debian {} with {} into {}{}",
        opts.suite,
        packages.join(","),
        tree.display(),
        if in_namespace {
            " (in a user namespace)"
        } else {
            ""
        }
    ));
    let part_uuid = random_uuid()?;
    let fs_uuid = random_uuid()?;
    run(Command::new("mmdebstrap")
        .arg(format!("--mode={mode}"))
        .arg(format!("--format={format}"))
        .arg("--variant=minbase")
        .arg(format!("--include={}", packages.join(",")))
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            // cloud-init's locale module sets en_US.UTF-8 with update-locale, which
            // refuses a locale that was never generated (Debian's locale-gen builds
            // only what /etc/locale.gen lists).
            "--customize-hook=sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' \"$1/etc/locale.gen\" && chroot \"$1\" locale-gen",
        ])
        .args(
            guest_config_hooks(&part_uuid, opts.profile)
                .into_iter()
                .chain(opts.profile.hooks())
                .map(|hook| format!("--customize-hook={hook}")),
        )
        .arg(&opts.suite)
        .arg(&tree)
        .args(&sources_files))?;

    let partition_size = opts.disk_size.saturating_sub(2 * MIB) / MIB * MIB;
    // A tarball is its files plus a header of 512 bytes each: near enough.
    let content = if in_namespace {
        fs::metadata(&tree).map_err(io("reading", &tree))?.len()
    } else {
        dir_size(&root)
    };
    let needed = content * 5 / 4;
    if partition_size < needed {
        return Err(BuildError::DiskTooSmall {
            size: opts.disk_size,
            needed: needed + 2 * MIB,
        });
    }
    log("making the root filesystem (mkfs.ext4 -d)");
    let root_fs = work.join("root.ext4");
    let size = format!("{}k", partition_size / 1024);
    if in_namespace {
        // One fakeroot session: tar records each file's owner, mode and device
        // numbers there, and mkfs.ext4 reads them back as if they were real.
        fs::create_dir(&root).map_err(io("creating", &root))?;
        run(Command::new("fakeroot")
            .args([
                "--",
                "sh",
                "-c",
                "tar -C \"$1\" -xpf \"$2\" && exec mkfs.ext4 -q -F -L root -U \"$3\" -d \"$1\" \"$4\" \"$5\"",
                "sh",
            ])
            .arg(&root)
            .arg(&tree)
            .arg(&fs_uuid)
            .arg(&root_fs)
            .arg(&size))?;
    } else {
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "root", "-U", &fs_uuid, "-d"])
            .arg(&root)
            .arg(&root_fs)
            .arg(&size))?;
    }

    log("assembling the GPT disk");
    let disk_tmp = work.join(LOCAL_DISK_FILE);
    make_gpt_disk(&disk_tmp, opts.disk_size, partition_size, &part_uuid)?;
    copy_sparse_into(&root_fs, &disk_tmp, PARTITION_START)?;

    let digest = Digest::of_file(Algorithm::Sha512, &disk_tmp)?;
    // The recipe file is written last: its presence marks a finished box.
    let _ = fs::remove_file(opts.out_dir.join(RECIPE_FILE));
    // No moment where the new disk stands beside the old checksums.
    let _ = fs::remove_file(&sums);
    fs::rename(&disk_tmp, &disk).map_err(io("moving the disk to", &disk))?;
    write_file(&sums, &format!("{}  {LOCAL_DISK_FILE}\n", digest.hex))?;
    write_file(&opts.out_dir.join(RECIPE_FILE), &format!("{recipe}\n"))?;
    log(&format!("box ready: {} ({digest})", disk.display()));
    Ok(BuiltBox {
        disk,
        digest,
        built: true,
    })
}

fn packages(opts: &BuildOptions) -> Vec<String> {
    let mut all: Vec<String> = DEFAULT_PACKAGES
        .iter()
        .chain(opts.profile.packages())
        .map(|p| p.to_string())
        .collect();
    all.extend(opts.extra_packages.iter().cloned());
    all.sort();
    all.dedup();
    all
}

fn recipe_digest(opts: &BuildOptions, packages: &[String], sources: &AptSources) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "revision {BUILDER_REVISION}\nprofile {}\nroot fsck pass {}\n{}\nsuite {}\nsize {}\npackages {}\nsources\n{}\n{}",
        opts.profile.name(),
        opts.profile.root_fsck_pass(),
        // The profile's files and commands: a change to them makes another box.
        opts.profile.hooks().join("\n"),
        opts.suite,
        opts.disk_size,
        packages.join(","),
        sources.one_line,
        sources.deb822
    ));
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a machine made from this box must find on first boot, as mmdebstrap hooks:
/// they run as root in the new system, whether root or a user namespace builds it.
fn guest_config_hooks(part_uuid: &str, profile: BootProfile) -> Vec<String> {
    let files = [
        (
            "etc/fstab",
            format!(
                "PARTUUID={part_uuid} / ext4 rw,discard,errors=remount-ro 0 {}\n",
                profile.root_fsck_pass()
            ),
        ),
        // Only the NoCloud seed that hvbox attaches; skipping the network probes
        // saves minutes on first boot.
        (
            "etc/cloud/cloud.cfg.d/90-hvbox.cfg",
            "datasource_list: [ NoCloud, None ]\n".to_string(),
        ),
        ("etc/hostname", "localhost\n".to_string()),
        // Every machine gets its own machine-id and host keys on first boot.
        ("etc/machine-id", String::new()),
    ];
    let mut hooks: Vec<String> = files
        .iter()
        .map(|(path, text)| format!("printf '%s' {} > \"$1/{path}\"", shell_quote(text)))
        .collect();
    hooks.push("rm -f \"$1\"/etc/ssh/ssh_host_*".to_string());
    hooks
}

/// `text` as one single-quoted shell word.
pub(crate) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn make_gpt_disk(
    disk: &Path,
    size: u64,
    partition_size: u64,
    part_uuid: &str,
) -> Result<(), BuildError> {
    let file = fs::File::create(disk).map_err(io("creating", disk))?;
    file.set_len(size).map_err(io("sizing", disk))?;
    drop(file);
    let script = format!(
        "label: gpt\nstart={}, size={}, type={LINUX_FS_TYPE}, uuid={part_uuid}, name=root\n",
        PARTITION_START / 512,
        partition_size / 512
    );
    let mut child = Command::new("sfdisk")
        .arg("-q")
        .arg(disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(io("running sfdisk on", disk))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .map_err(io("writing the partition script for", disk))?;
    let output = child
        .wait_with_output()
        .map_err(io("running sfdisk on", disk))?;
    check_output("sfdisk", output)
}

/// Copy `src` into `dst` at `offset`, leaving all-zero blocks as holes.
fn copy_sparse_into(src: &Path, dst: &Path, offset: u64) -> Result<(), BuildError> {
    let mut input = fs::File::open(src).map_err(io("opening", src))?;
    let mut output = fs::OpenOptions::new()
        .write(true)
        .open(dst)
        .map_err(io("opening", dst))?;
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = offset;
    loop {
        let n = read_full(&mut input, &mut buf).map_err(io("reading", src))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            output
                .seek(SeekFrom::Start(pos))
                .and_then(|_| output.write_all(&buf[..n]))
                .map_err(io("writing", dst))?;
        }
        pos += n as u64;
    }
    output.sync_all().map_err(io("syncing", dst))
}

fn read_full(file: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            // Round each file up to a 4 KiB block, as ext4 stores it.
            total += meta.len().div_ceil(4096) * 4096;
        }
    }
    total
}

fn write_file(path: &Path, contents: &str) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    fs::write(path, contents).map_err(io("writing", path))
}

fn random_uuid() -> Result<String, BuildError> {
    let mut b = [0u8; 16];
    let urandom = Path::new("/dev/urandom");
    fs::File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading", urandom))?;
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Whether `tool` is on PATH or in the system folders a normal user's PATH lacks.
pub(crate) fn tool_found(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|dir| dir.join(tool).is_file())
    })
}

fn require_tool(tool: &'static str, package: &'static str) -> Result<(), BuildError> {
    if tool_found(tool) {
        Ok(())
    } else {
        Err(BuildError::MissingTool { tool, package })
    }
}

fn run(cmd: &mut Command) -> Result<(), BuildError> {
    let output = cmd.output().map_err(|source| BuildError::Io {
        action: "running",
        path: PathBuf::from(cmd.get_program()),
        source,
    })?;
    check_output(&format!("{cmd:?}"), output)
}

fn check_output(command: &str, output: std::process::Output) -> Result<(), BuildError> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(BuildError::CommandFailed {
        command: command.to_string(),
        status: output.status,
        output: text,
    })
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A build that was killed leaves its scratch folder (hundreds of MiB) behind;
/// remove those whose process is gone.
fn remove_stale_work_dirs(out_dir: &Path) {
    let Ok(entries) = fs::read_dir(out_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".build-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes the build's scratch directory however the build ends (but a kill).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second build of the same folder waits for the first, and says so.
    #[test]
    fn builds_of_one_folder_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("box");
        let first = lock_out_dir(&out, &mut |_| {}).unwrap();
        let waiter = {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut said = Vec::new();
                let started = std::time::Instant::now();
                let _second = lock_out_dir(&out, &mut |m| said.push(m.to_string())).unwrap();
                (started.elapsed(), said)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
        let (waited, said) = waiter.join().unwrap();
        assert!(
            waited >= std::time::Duration::from_millis(250),
            "{waited:?}"
        );
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("another build of"), "{said:?}");
        assert!(dir.path().join("box.lock").exists());
    }

    #[test]
    fn uuids_are_version_4() {
        let u = random_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
