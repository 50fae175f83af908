//! Shared by every test that runs the tiny guests (the VMM's own tests, the CLI's
//! and the end-to-end lab): whether KVM is usable, and building a guest from its
//! assembly (`NAME.S`, GNU as and ld) or C source (`NAME.c`, gcc). Included with
//! `#[path]`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
            hvbox_test_support::skip(format!("/dev/kvm is not usable here ({e})"));
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

/// Assemble `src_dir/NAME.S` (or compile `src_dir/NAME.c`, see [`build_c`]) and
/// link it into `out_dir`.
pub fn build(src_dir: &Path, name: &str, link: Link, out_dir: &Path) -> PathBuf {
    if src_dir.join(format!("{name}.c")).exists() {
        return match link {
            Link::PvhElf => build_c(src_dir, name, out_dir),
            Link::Program => build_c_program(src_dir, name, out_dir),
            Link::Flat => panic!("{name}.c: flat images are assembled, not compiled"),
        };
    }
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

fn run(what: &str, cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{what} failed: {cmd:?}");
}

/// Compile `src_dir/NAME.c` for 32-bit protected mode with `c_start.S` as its
/// entry, link it at 1 MiB with guest.ld, and give the result the ELF64 wrapper
/// the VMM's loader reads (`objcopy`: the code inside stays 32-bit).
pub fn build_c(src_dir: &Path, name: &str, out_dir: &Path) -> PathBuf {
    let obj = out_dir.join(format!("{name}.o"));
    let start = out_dir.join(format!("{name}-start.o"));
    let elf32 = out_dir.join(format!("{name}.elf32"));
    let out = out_dir.join(format!("{name}.elf"));
    run(
        "gcc (package gcc) for a C test guest",
        Command::new("gcc")
            .args([
                "-m32",
                "-march=i686",
                "-ffreestanding",
                "-fno-pic",
                "-nostdlib",
                "-O2",
            ])
            // Nothing the host's instruction emulator might lack (SSE, CET's endbr32),
            // nothing a bare guest cannot provide (stack protector, unwind tables).
            .args([
                "-mgeneral-regs-only",
                "-fcf-protection=none",
                "-fno-stack-protector",
            ])
            .args([
                "-fno-asynchronous-unwind-tables",
                "-Wall",
                "-Werror",
                "-c",
                "-I",
            ])
            .arg(src_dir)
            .arg("-o")
            .arg(&obj)
            .arg(src_dir.join(format!("{name}.c"))),
    );
    run(
        "assembling c_start.S",
        Command::new("as")
            .arg("--32")
            .arg("-o")
            .arg(&start)
            .arg(src_dir.join("c_start.S")),
    );
    run(
        "linking a C test guest",
        Command::new("ld")
            .args(["-m", "elf_i386", "-static", "-nostdlib", "--build-id=none"])
            .args(["-z", "noexecstack", "--no-warn-rwx-segments", "-T"])
            .arg(src_dir.join("guest.ld"))
            .arg("-o")
            .arg(&elf32)
            .arg(&start)
            .arg(&obj),
    );
    run(
        "objcopy to ELF64",
        Command::new("objcopy")
            .args(["-O", "elf64-x86-64"])
            .arg(&elf32)
            .arg(&out),
    );
    for tmp in [obj, start, elf32] {
        let _ = std::fs::remove_file(tmp);
    }
    out
}

/// Compile `src_dir/NAME.c` into a static x86-64 Linux program that needs no libc
/// (its own `_start` and raw system calls), e.g. an initramfs's init.
pub fn build_c_program(src_dir: &Path, name: &str, out_dir: &Path) -> PathBuf {
    let out = out_dir.join(name);
    run(
        "gcc (package gcc) for a static test program",
        Command::new("gcc")
            .args([
                "-static",
                "-nostdlib",
                "-ffreestanding",
                "-fno-pic",
                "-no-pie",
                "-O2",
            ])
            .args([
                "-mgeneral-regs-only",
                "-fno-stack-protector",
                "-fcf-protection=none",
            ])
            .args(["-fno-asynchronous-unwind-tables", "-Wall", "-Werror"])
            .args(["-Wl,--build-id=none", "-o"])
            .arg(&out)
            .arg(src_dir.join(format!("{name}.c"))),
    );
    out
}

use hvbox_test_support::passt::listening;
#[allow(unused_imports)] // Not every test crate that includes this file starts passt.
pub use hvbox_test_support::passt::Passt;

/// The virtiofsd to test with: `$HVBOX_VIRTIOFSD`, else `virtiofsd` on PATH, else
/// where `scripts/install-deps` builds it (`~/.cache/hvbox-tools/virtiofsd-*/bin`).
pub fn virtiofsd_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HVBOX_VIRTIOFSD") {
        return Some(path.into());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("virtiofsd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let tools = Path::new(&std::env::var_os("HOME")?).join(".cache/hvbox-tools");
        let mut builds: Vec<PathBuf> = std::fs::read_dir(tools)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("virtiofsd-"))
            .map(|e| e.path().join("bin/virtiofsd"))
            .filter(|p| p.is_file())
            .collect();
        builds.sort();
        builds.pop()
    })
}

/// virtiofsd sharing a folder over a socket in `dir`, or `None` (with the reason
/// printed) without virtiofsd. Killed when dropped.
pub struct Virtiofsd {
    child: Child,
    pub socket: PathBuf,
}

impl Virtiofsd {
    pub fn start(dir: &Path, shared: &Path) -> Option<Virtiofsd> {
        let Some(binary) = virtiofsd_binary() else {
            hvbox_test_support::skip(
                "no virtiofsd (set HVBOX_VIRTIOFSD, put it on PATH, or run scripts/install-deps)",
            );
            return None;
        };
        let socket = dir.join("virtiofsd.sock");
        let child = Command::new(&binary)
            .arg("--socket-path")
            .arg(&socket)
            .arg("--shared-dir")
            .arg(shared)
            // Namespaces need privileges a test may not have; the tests share temp dirs.
            .args(["--sandbox", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut virtiofsd = Virtiofsd { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        // The socket's file appears at bind(2), a moment before listen(2): a connect
        // in between is refused. Its one connection is for the test, so wait for the
        // listening state in /proc rather than trying one.
        while !listening(&virtiofsd.socket) {
            if let Ok(Some(status)) = virtiofsd.child.try_wait() {
                panic!("virtiofsd exited with {status} before creating its socket");
            }
            assert!(
                Instant::now() < deadline,
                "virtiofsd never created its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(virtiofsd)
    }

    /// Kill it now (as a crash would), and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has exited (it does once its one frontend disconnects).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        self.kill();
    }
}
