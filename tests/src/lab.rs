//! The nested lab: a Debian machine (L1) brought up by hvbox itself on the qemu
//! engine with nested virtualization, in which hvbox's own VMM runs real guests (L2)
//! on a real `/dev/kvm`.
//!
//! Where the host's KVM emulates guests instead of running them on hardware
//! virtualization, this is the only place the VMM can boot a distro kernel fully.
//! L1 gets the freshly built `hvbox`, the host's Debian kernel and initrd (as bzImage
//! and as the extracted vmlinux) and a tiny poweroff initramfs on a read-only extra
//! disk, mounted at /mnt/lab, and the Debian test box's disk as a second read-only
//! disk ([`L2_BOX_DEVICE`]) for machines `hvbox up` makes inside L1 (the old-kernel
//! box of the kernel upgrade test, with the newer kernel's package on the lab disk,
//! where the host's archive has both). For virtio-fs in L2 the lab disk also holds
//! the host's virtiofsd and an initramfs whose init mounts a share ([`L2_FS_TAG`]),
//! and root file systems for L2: one whose init powers off, one for the crash check
//! ([`CRASH_ROOT`]) and one for the suspend check ([`COUNTER_ROOT`]).

use crate::kernel_upgrade::upgrade_fixture;
use crate::{hvbox_bin, test_box, test_cache_dir, TestBox, TestProject};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Where the lab disk is mounted inside L1.
pub const LAB_MOUNT: &str = "/mnt/lab";
/// The test box's raw disk inside L1 (the lab's second extra disk).
pub const L2_BOX_DEVICE: &str = "/dev/vdd";

/// A shell line for L1 that copies the box disk at `device` (read-only) to
/// `folder/disk.raw` on L1's own disk, sparse, where `hvbox box add` takes it as a file.
pub fn copy_box_disk(device: &str, folder: &str) -> String {
    format!("mkdir -p {folder} && cp --sparse=always {device} {folder}/disk.raw")
}

/// The `index`th of [`Lab::start_with_disks`]'s extra disks inside L1 (after the
/// lab disk, /dev/vdc, and the test box).
pub fn extra_disk_device(index: usize) -> String {
    let letter = u8::try_from(index)
        .ok()
        .and_then(|i| b'e'.checked_add(i))
        .filter(u8::is_ascii_lowercase)
        .expect("at most 22 extra disks");
    format!("/dev/vd{}", char::from(letter))
}

/// The virtio-fs tag the lab's virtiofs initramfs (tests/guests/virtiofs_init.c)
/// mounts; it reads `from-l1.txt` there and writes `from-l2.txt`.
pub const L2_FS_TAG: &str = "lab-share";

/// L1's ftrace: the trace buffer and KVM's events.
const TRACE: &str = "/sys/kernel/tracing/trace";
const KVM_EVENTS: &str = "/sys/kernel/tracing/events/kvm";

/// Packages L1 needs beyond a test box: QEMU for the side-by-side timing, passt and
/// an ssh client for hvbox itself, kmod to load kvm_amd, git for the shared-folder
/// benchmark's repository (tests/benches/mounts_lab.rs).
const LAB_PACKAGES: &str = "qemu-system-x86,passt,openssh-client,kmod,git";

pub struct Lab {
    project: TestProject,
    /// Holds the lab disk; removed with the lab.
    _work: tempfile::TempDir,
    /// Seconds from `hvbox up` to ssh answering in L1.
    pub l1_up_secs: f64,
    /// Whether the checks of hvbox's engines inside L1 run too (HVBOX_LAB=1 or up).
    pub full: bool,
    /// Only `hvbox up` to ssh on each engine in L1, with where the boot's time and
    /// exits went (HVBOX_LAB=up): the VMM's boots, suspend and upgrade-kernel are
    /// left out.
    pub up_only: bool,
    /// Digest of the test box disk at [`L2_BOX_DEVICE`].
    pub l2_box_digest: String,
    /// The L2 box's kernel and a newer one's package on the lab disk, for
    /// `hvbox upgrade-kernel` in L1; or why this host cannot provide them.
    pub l2_upgrade: Result<L2Upgrade, String>,
    /// `virtiofsd` and `virtiofs.cpio` on the lab disk, or why they are not.
    pub l2_virtiofs: Result<(), String>,
}

/// A kernel upgrade for machines inside L1: the box at [`L2_BOX_DEVICE`] has
/// `old_version`, and [`L2_UPGRADE_PACKAGE`] installs `new_version`.
pub struct L2Upgrade {
    pub old_version: String,
    pub new_version: String,
}

/// On the lab disk: a root file system whose init (tests/guests/crash_init.c) writes
/// and syncs a file, then waits to be killed; booted again, it checks the file.
pub const CRASH_ROOT: &str = "crash-root.img";
/// On the lab disk: a root file system whose init (tests/guests/counter_init.c)
/// counts on the console, reading the disk and sleeping between ticks.
pub const COUNTER_ROOT: &str = "counter-root.img";

/// The newer kernel's package inside L1.
pub const L2_UPGRADE_PACKAGE: &str = "/mnt/lab/kernel-upgrade.deb";

/// The result of a command in L1.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Lab {
    /// Bring up L1, or return why the lab cannot run on this host. HVBOX_LAB selects
    /// what runs: unset, empty or `core` (the default) the VMM's boots, six to ten
    /// minutes once the boxes are built; `1` hvbox's engines in L1 too, over an hour;
    /// `up` only `hvbox up` on each engine in L1, profiled; `0` nothing.
    pub fn start() -> Result<Lab, String> {
        Lab::start_with_disks(&[])
    }

    /// [`Lab::start`], with `extra_disks` (raw images on the host) given to L1 as
    /// read-only disks too: the first is [`extra_disk_device`]`(0)` in L1, and so on.
    pub fn start_with_disks(extra_disks: &[PathBuf]) -> Result<Lab, String> {
        let (full, up_only) = match std::env::var("HVBOX_LAB").as_deref() {
            Err(_) | Ok("" | "core") => (false, false),
            Ok("1") => (true, false),
            Ok("up") => (true, true),
            Ok("0") => return Err("HVBOX_LAB=0 is set".into()),
            Ok(other) => panic!("HVBOX_LAB={other}: expected 0 (skip the lab), core (the VMM's boots, the default), up (hvbox up on each engine, profiled) or 1 (everything)"),
        };
        for tool in ["qemu-system-x86_64", "passt", "mkfs.ext4"] {
            if !crate::tool_exists(tool) {
                return Err(format!("{tool} is not installed"));
            }
        }
        let (bzimage, initrd) =
            host_kernel().ok_or("no /boot/vmlinuz-*-cloud-amd64 with its initrd on the host")?;
        let lab_box = build_lab_box();
        // Machines in L1 get the old-kernel box of the upgrade test where the host's
        // archive offers a newer kernel, so `upgrade-kernel` can run there too. Only
        // the engine checks start machines in L1.
        let fixture = if full && !up_only {
            upgrade_fixture("bookworm")
        } else {
            Err("only with HVBOX_LAB=1".into())
        };
        let (l2_box, l2_upgrade, upgrade_package) = match fixture {
            Ok(f) => (
                f.old_box,
                Ok(L2Upgrade {
                    old_version: f.old_version,
                    new_version: f.new_version,
                }),
                Some(f.new_package),
            ),
            Err(reason) => (test_box(), Err(reason), None),
        };
        let work = tempfile::Builder::new()
            .prefix("hvbox-lab-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let lab_disk = work.path().join("lab.img");
        let l2_virtiofs = make_lab_disk(&lab_disk, &bzimage, &initrd, upgrade_package.as_deref());
        // One vCPU, at about half the speed: with two, L1s have died under QEMU's
        // emulated SVM and L2 boots have triple-faulted now and then; with one,
        // neither has happened yet. HVBOX_LAB_L1_CPUS sets another count to compare.
        let l1_cpus: u32 = std::env::var("HVBOX_LAB_L1_CPUS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let disks: String = [lab_disk.clone(), l2_box.dir.join("disk.raw")]
            .iter()
            .chain(extra_disks)
            .map(|disk| format!("  - path: {}\n    read_only: true\n", disk.display()))
            .collect();
        let spec = format!(
            "{}hostname: lab\ncpus: {l1_cpus}\nmemory: 4G\ndisk: 12G\nengine: qemu\nnested_virtualization: true\nssh:\n  user: lab\ndisks:\n{disks}",
            lab_box.file_box_yaml(),
        );
        let project = TestProject::new(&spec);
        let started = Instant::now();
        project.ok(&["up", "--quiet"]);
        let lab = Lab {
            project,
            _work: work,
            l1_up_secs: started.elapsed().as_secs_f64(),
            full,
            up_only,
            l2_box_digest: l2_box.digest,
            l2_upgrade,
            l2_virtiofs,
        };
        let setup = lab.root(&format!(
            "mkdir -p {LAB_MOUNT} && mount -o ro /dev/vdc {LAB_MOUNT} && modprobe kvm_amd; modprobe kvm_intel; ls -l /dev/kvm && grep -cwE 'svm|vmx' /proc/cpuinfo"
        ));
        if setup.status != Some(0) {
            return Err(format!(
                "L1 has no usable /dev/kvm (nested virtualization unavailable): {}{}",
                setup.stdout, setup.stderr
            ));
        }
        // A triple fault's registers are lost on AMD (KVM resets the vCPU), so L1's
        // KVM keeps a trace of what leads up to one: shutdown exits with the guest's
        // RIP, exceptions KVM injects, and MSR accesses that fault.
        lab.root(&format!(
            "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing; cd {KVM_EVENTS} && echo 'exit_reason == 127' > kvm_exit/filter && echo 1 > kvm_exit/enable && echo 'exception != 0' > kvm_msr/filter && echo 1 > kvm_msr/enable && echo 1 > kvm_inj_exception/enable"
        ));
        Ok(lab)
    }

    /// The last events of L1's KVM trace (see [`Lab::start`]) since the last
    /// [`Lab::time_until`] began.
    pub fn kvm_trace(&self) -> String {
        self.root(&format!("grep -v '^#' {TRACE} | tail -40"))
            .stdout
    }

    fn machine_file(&self, name: &str) -> String {
        let path = self
            .project
            .path()
            .join(".hvbox/machines/default")
            .join(name);
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The end of L1's serial log: where an L1 crash shows.
    pub fn l1_serial_tail(&self) -> String {
        last_lines(&self.machine_file("serial.log"), 30)
    }

    /// L1 itself failed (an oops or panic on its console, or it no longer answers
    /// ssh): a fault of the emulated hardware below the lab, not of what runs in
    /// it. Returns what shows it.
    pub fn l1_crash(&self) -> Option<String> {
        let serial = self.machine_file("serial.log");
        if ["Kernel panic - not syncing", "BUG: ", "Oops: "]
            .iter()
            .any(|m| serial.contains(m))
        {
            return Some(self.l1_serial_tail());
        }
        let alive = self.root("true");
        (alive.status != Some(0)).then(|| {
            format!(
                "L1 stopped answering ssh ({}); its console ends:\n{}\nQEMU's log:\n{}",
                alive.stderr.trim(),
                self.l1_serial_tail(),
                self.machine_file("vm.log")
            )
        })
    }

    /// Run `script` in L1 as root with `sh -c`.
    pub fn root(&self, script: &str) -> Run {
        let quoted = script.replace('\'', r"'\''");
        let out: Output = self
            .project
            .hvbox(&["ssh", "--", &format!("sudo sh -c '{quoted}'")]);
        Run {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Start `command` in L1 and measure the seconds until `pattern` shows in `log`
    /// (None if it never does within `limit`); the command is stopped afterwards
    /// unless it ended by itself. Returns the seconds and the log. L1's KVM trace is
    /// emptied first, so that [`Lab::kvm_trace`] shows this command's events.
    pub fn time_until(
        &self,
        command: &str,
        log: &str,
        pattern: &str,
        limit: Duration,
    ) -> (Option<f64>, String) {
        let script = format!(
            r#"rm -f {log}; : > {TRACE}; start=$(date +%s%N); {command} >/tmp/lab-cmd.out 2>&1 & pid=$!
found=""
while [ $(( ($(date +%s%N) - start) / 1000000 )) -lt {limit_ms} ]; do
  if grep -qF "{pattern}" {log} 2>/dev/null; then found=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
kill $pid 2>/dev/null; wait $pid 2>/dev/null
echo "elapsed_ms=$found"
echo "--- command output"; cat /tmp/lab-cmd.out
echo "--- log"; cat {log}"#,
            limit_ms = limit.as_millis()
        );
        let run = self.root(&script);
        let elapsed = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("elapsed_ms="))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|ms| ms / 1000.0);
        // The command's own output first (its errors explain a log that stops short).
        let log_text = run
            .stdout
            .split_once("--- command output\n")
            .map(|(_, rest)| rest.replacen("--- log\n", "--- serial log\n", 1))
            .unwrap_or_default();
        (elapsed, log_text)
    }
}

/// The host's newest Debian cloud kernel and its initrd.
fn host_kernel() -> Option<(PathBuf, PathBuf)> {
    let kernel = crate::guests::newest_cloud_kernel()?;
    let version = kernel
        .file_name()?
        .to_string_lossy()
        .strip_prefix("vmlinuz-")?
        .to_string();
    let initrd = PathBuf::from(format!("/boot/initrd.img-{version}"));
    initrd.is_file().then_some((kernel, initrd))
}

/// The lab's own box (a test box plus what L1 needs), built once per host.
fn build_lab_box() -> TestBox {
    let dir = test_cache_dir().join("box-lab");
    let out = Command::new(hvbox_bin())
        .args(["box", "build", "hvbox-lab", "--size", "4G", "--packages"])
        .arg(LAB_PACKAGES)
        .arg("--output")
        .arg(&dir)
        .output()
        .expect("running hvbox box build");
    assert!(
        out.status.success(),
        "building the lab box failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    TestBox::from_dir(dir)
}

/// An ext4 image with everything L2 needs. Returns whether the virtio-fs check's
/// files are on it, or why not.
fn make_lab_disk(
    image: &Path,
    bzimage: &Path,
    initrd: &Path,
    kernel_package: Option<&Path>,
) -> Result<(), String> {
    let root = image.with_extension("d");
    std::fs::create_dir_all(&root).unwrap();
    // The debug build's symbols are not needed in L1. hvbox runs the VMM's own
    // program, hvbox-vmm, from beside itself: it goes next to hvbox.
    let hvbox = hvbox_bin();
    for (from, name) in [
        (hvbox.clone(), "hvbox"),
        (hvbox.with_file_name("hvbox-vmm"), "hvbox-vmm"),
    ] {
        let status = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&from)
            .arg(root.join(name))
            .status()
            .expect("objcopy (binutils)");
        assert!(
            status.success(),
            "copying {} into the lab disk",
            from.display()
        );
    }
    std::fs::copy(bzimage, root.join("bzImage")).unwrap();
    std::fs::copy(initrd, root.join("initrd.img")).unwrap();
    if let Some(package) = kernel_package {
        let name = Path::new(L2_UPGRADE_PACKAGE).file_name().unwrap();
        std::fs::copy(package, root.join(name)).unwrap();
    }
    let image_bytes = std::fs::read(bzimage).unwrap();
    let vmlinux = hvbox_vmm::boot::extract_vmlinux(&image_bytes).expect("vmlinux from bzImage");
    std::fs::write(root.join("vmlinux"), vmlinux).unwrap();
    let init = crate::guests::build_static_program("poweroff_init", &root);
    let cpio = crate::cpio::newc(&[("init", 0o755, &std::fs::read(&init).unwrap())]);
    std::fs::write(root.join("poweroff.cpio"), cpio).unwrap();
    make_root_fs(&root.join("root.img"), &init, "16M");
    for (image, program, size) in [
        (CRASH_ROOT, "crash_init", "32M"),
        (COUNTER_ROOT, "counter_init", "16M"),
    ] {
        let init = crate::guests::build_static_program(program, &root);
        make_root_fs(&root.join(image), &init, size);
        std::fs::remove_file(init).unwrap();
    }
    let virtiofs = add_virtiofs_files(&root, bzimage);
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(image)
        .arg("768M")
        .status()
        .expect("mkfs.ext4");
    assert!(status.success(), "making the lab disk");
    std::fs::remove_dir_all(&root).unwrap();
    virtiofs
}

/// The host's virtiofsd (run in L1 as the share's backend), and `virtiofs.cpio`: an
/// init that mounts the share and the modules it needs, taken from the host's
/// /lib/modules for the L2 kernel (the host's own), in the order they load.
fn add_virtiofs_files(root: &Path, bzimage: &Path) -> Result<(), String> {
    let virtiofsd = crate::guests::virtiofsd_binary()
        .ok_or("no virtiofsd on the host (set HVBOX_VIRTIOFSD or run scripts/install-deps)")?;
    std::fs::copy(&virtiofsd, root.join("virtiofsd"))
        .map_err(|e| format!("copying {}: {e}", virtiofsd.display()))?;
    let version = bzimage
        .file_name()
        .and_then(|n| n.to_str()?.strip_prefix("vmlinuz-"))
        .ok_or("the L2 kernel's file name holds no version")?;
    let modules = crate::kernel_modules::load_order(
        &Path::new("/lib/modules").join(version),
        &[
            "kernel/drivers/virtio/virtio_pci.ko",
            "kernel/fs/fuse/virtiofs.ko",
        ],
    )?;
    let init = crate::guests::build_static_program("virtiofs_init", root);
    let mut files = vec![("init".to_string(), std::fs::read(&init).unwrap())];
    for (i, module) in modules.iter().enumerate() {
        let bytes =
            std::fs::read(module).map_err(|e| format!("reading {}: {e}", module.display()))?;
        // The init loads /mod0.ko, /mod1.ko, ... in turn.
        files.push((format!("mod{i}.ko"), bytes));
    }
    std::fs::remove_file(&init).unwrap();
    let entries: Vec<(&str, u32, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), 0o755, bytes.as_slice()))
        .collect();
    std::fs::write(root.join("virtiofs.cpio"), crate::cpio::newc(&entries)).unwrap();
    Ok(())
}

/// A root filesystem of `size` whose /sbin/init is `init`: for a distro initramfs
/// to find on a virtio disk, mount, and hand over to.
fn make_root_fs(image: &Path, init: &Path, size: &str) {
    let tree = image.with_extension("d");
    for dir in ["sbin", "dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(tree.join(dir)).unwrap();
    }
    std::fs::copy(init, tree.join("sbin/init")).unwrap();
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(image)
        .arg(size)
        .status()
        .expect("mkfs.ext4");
    assert!(
        status.success(),
        "making the root filesystem {}",
        image.display()
    );
    std::fs::remove_dir_all(&tree).unwrap();
}

/// The last `count` lines of `text`: where a stalled boot shows where it stopped.
pub fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
