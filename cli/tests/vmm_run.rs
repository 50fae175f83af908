//! `hvbox vmm run` as people and scripts use it: serial output and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../vmm/tests/guests/support.rs"]
mod support;

use support::{build, kvm_usable, Link, Passt, Virtiofsd};

/// Build one of the VMM's tiny test guests (vmm/tests/guests) into `dir`.
fn guest(name: &str, dir: &Path) -> PathBuf {
    let src = support::guests_dir(env!("CARGO_MANIFEST_DIR"), "../vmm/tests/guests");
    build(&src, name, Link::PvhElf, dir)
}

fn vmm_run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .args(["vmm", "run"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn poweroff_exits_0_with_the_serial_output_on_stdout() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = guest("hello", dir.path());
    let out = vmm_run(&["--kernel", kernel.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from a tiny guest\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("VM exited: poweroff"));
}

#[test]
fn reboot_crash_and_timeout_have_their_own_exit_codes() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let kernel = guest(name, dir.path());
        let mut args = vec!["--kernel", kernel.to_str().unwrap()];
        args.extend_from_slice(extra);
        vmm_run(&args).status.code()
    };
    assert_eq!(run("reboot", &[]), Some(3));
    assert_eq!(run("triple_fault", &[]), Some(4));
    assert_eq!(run("idle", &["--timeout", "1"]), Some(5));
}

#[test]
fn a_missing_kernel_is_a_host_error() {
    let out = vmm_run(&["--kernel", "/nonexistent/vmlinuz"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vmlinuz"), "{err}");
}

/// A socket nobody listens on (a virtiofsd that is gone) stops the VM from being
/// built, with the tag and the socket named.
#[test]
fn a_virtio_fs_backend_that_is_not_listening_is_a_host_error() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gone.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let kernel = guest("hello", dir.path());
    let fs = format!("share={}", socket.display());
    let out = vmm_run(&["--kernel", kernel.to_str().unwrap(), "--fs", &fs]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "virtio-fs \"share\" (backend socket {}): cannot connect to the backend's socket: Connection refused",
        socket.display()
    );
    assert!(err.contains(&expected), "{err}");
}

/// Exit status 2 and the argument named, for every kind of bad argument.
#[test]
fn bad_arguments_exit_2_naming_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vm.json");
    std::fs::write(
        &config,
        "{\n  \"cpus\": 1,\n  \"memory\": 67108864,\n  \"kernel\": \"/k\",\n  \"disk\": []\n}\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let unpaged = dir.path().join("unpaged.json");
    std::fs::write(
        &unpaged,
        r#"{"cpus": 1, "memory": 1049600, "kernel": "/k"}"#,
    )
    .unwrap();
    let unpaged = unpaged.to_str().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"cpus": 1, "memory": 67108864, "kernel": "/k"}"#).unwrap();
    let good = good.to_str().unwrap();
    let k = ["--kernel", "/bin/sh"];
    let fs_socket = dir.path().join("fs.sock");
    std::fs::write(&fs_socket, "").unwrap();
    let fs_share = format!("share={}", fs_socket.display());
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (
            [&k[..], &["--memory", "abc"]].concat(),
            &["--memory", "\"abc\" is not a size"],
        ),
        (
            [&k[..], &["--memory", "1025K"]].concat(),
            &["--memory", "4 KiB pages"],
        ),
        ([&k[..], &["--cpus", "0"]].concat(), &["--cpus", "1..=255"]),
        (
            [&k[..], &["--disk", "/d.raw,rx"]].concat(),
            &["--disk", "use ro or rw"],
        ),
        (
            [&k[..], &["--net", "vde:/x"]].concat(),
            &["--net", "passt:SOCKET", "tap:NAME"],
        ),
        (
            [&k[..], &["--net", "tap:tap0", "--mac", "nope"]].concat(),
            &["--mac", "not a MAC address"],
        ),
        (
            [
                &k[..],
                &[
                    "--net",
                    "tap:tap0",
                    "--mac",
                    "52:54:00:00:00:01",
                    "--mac",
                    "52:54:00:00:00:02",
                ],
            ]
            .concat(),
            &["--mac", "same position"],
        ),
        (
            [&k[..], &["--fs", "share"]].concat(),
            &["--fs", "TAG=SOCKET"],
        ),
        (
            [&k[..], &["--fs", "share=/nonexistent/fs.sock"]].concat(),
            &["--fs", "no socket at /nonexistent/fs.sock"],
        ),
        (
            [&k[..], &["--fs", &fs_share, "--fs", &fs_share]].concat(),
            &["--fs", "\"share\" is given twice"],
        ),
        (
            vec!["--config", config],
            &[":5:8: unknown field `disk`", "vm.json"],
        ),
        (
            vec!["--config", unpaged],
            &["unpaged.json: memory of 1049600 bytes"],
        ),
        (
            vec!["--config", "/nonexistent/vm.json"],
            &["--config", "/nonexistent/vm.json"],
        ),
        (
            vec!["--config", good, "--memory", "1G"],
            &["--config", "--memory", "cannot be used with"],
        ),
        (vec!["--cpus", "2"], &["--kernel"]),
    ];
    for (args, expected) in cases {
        let out = vmm_run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for needle in expected {
            assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        }
    }
}

/// The e820 map the `start_info` guest printed: (address, size, type).
fn e820(serial: &str) -> Vec<(u64, u64, u32)> {
    serial
        .lines()
        .filter_map(|l| l.strip_prefix("e820 "))
        .map(|l| {
            let hex: Vec<u64> = l
                .split_whitespace()
                .map(|f| u64::from_str_radix(f, 16).unwrap())
                .collect();
            (
                (hex[0] << 32) | hex[1],
                (hex[2] << 32) | hex[3],
                hex[4] as u32,
            )
        })
        .collect()
}

/// `--config` runs exactly the machine in the file, down to a memory size the flag
/// codec `hvbox up` used before would have cut to whole MiB; the flags build the
/// same machine.
#[test]
fn a_config_file_boots_the_exact_machine_and_the_flags_the_same_one() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = guest("start_info", dir.path());
    let memory: u64 = (64 << 20) + (1536 << 10);
    let config = dir.path().join("vm.json");
    let json = serde_json::json!({
        "cpus": 1,
        "memory": memory,
        "kernel": kernel,
        "cmdline": "from-config",
    });
    std::fs::write(&config, json.to_string()).unwrap();
    let out = vmm_run(&["--config", config.to_str().unwrap(), "--timeout", "60"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("cmdline from-config\n"), "{stdout}");
    let map = e820(&stdout);
    let ram: Vec<_> = map.iter().filter(|e| e.2 == 1).collect();
    let end = ram.iter().map(|e| e.0 + e.1).max().unwrap();
    assert_eq!(end, memory, "{stdout}");
    let total: u64 = ram.iter().map(|e| e.1).sum();
    assert_eq!(total, memory - (0x10_0000 - 0x9_fc00), "{stdout}");

    let flags = vmm_run(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "67072K",
        "--cmdline",
        "from-config",
        "--timeout",
        "60",
    ]);
    assert_eq!(flags.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&flags.stdout), stdout);
}

#[test]
fn disks_and_nics_reach_the_guest_as_virtio_devices() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(passt) = Passt::start(dir.path()) else {
        return;
    };
    let kernel = guest("virtio_pci", dir.path());
    let net = format!("passt:{}", passt.socket.display());
    let out = vmm_run(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--cmdline",
        "net",
        "--net",
        &net,
        "--mac",
        "52:54:00:65:43:21",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("net mac 52:54:00:65:43:21\n"), "{stdout}");
    assert!(stdout.contains("net dhcp offer "), "{stdout}");

    let disk = dir.path().join("disk.raw");
    let mut image = vec![0u8; 1 << 20];
    image[..4].copy_from_slice(b"hvbx");
    std::fs::write(&disk, image).unwrap();
    let ro = format!("{},ro", disk.display());
    let out = vmm_run(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--cmdline",
        "blk",
        "--disk",
        &ro,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("blk read status 00 data 68766278"),
        "{stdout}"
    );
    // A read-only disk refuses the write, and the file stays as it was.
    assert!(!stdout.contains("blk write status 00"), "{stdout}");
    assert_eq!(std::fs::read(&disk).unwrap()[512], 0);
}

/// A virtiofsd that dies under a running guest is reported in the VMM's log with the
/// filesystem's tag, and the guest's reset of the device afterwards fails at once
/// instead of hanging its vCPU: the VM still powers off cleanly.
#[test]
fn a_dead_virtio_fs_backend_is_reported_and_hangs_nothing() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let Some(mut virtiofsd) = Virtiofsd::start(dir.path(), &shared) else {
        return;
    };
    let kernel = guest("virtio_pci", dir.path());
    let serial = dir.path().join("serial.log");
    let started = Instant::now();
    let vmm = Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .args(["vmm", "run", "--cmdline", "fs-outlive", "--timeout", "60"])
        .arg("--kernel")
        .arg(&kernel)
        .arg("--fs")
        .arg(format!("share={}", virtiofsd.socket.display()))
        .arg("--serial-log")
        .arg(&serial)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .contains("fs waiting\n")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the guest never got a FUSE_INIT reply"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    virtiofsd.kill();
    let out = vmm.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let serial = std::fs::read_to_string(&serial).unwrap();
    assert_eq!(out.status.code(), Some(0), "{log}\n{serial}");
    assert!(serial.contains("fs init len 80 "), "{serial}");
    assert!(serial.contains("fs reset\n"), "{serial}");
    assert!(
        log.contains("vmm: virtio-fs \"share\": the backend hung up (did virtiofsd exit?)"),
        "{log}"
    );
    assert!(
        log.contains("vmm: virtio-fs \"share\": stopping the backend's queues: the connection to the backend was lost earlier"),
        "{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// Start `hvbox vmm run` on the idle guest with `disk` and a control socket; returns
/// once the socket is served, and so the disks are open and locked.
fn start_idle_vmm(kernel: &Path, disk: &str, control: &Path) -> std::process::Child {
    let mut vmm = Command::new(env!("CARGO_BIN_EXE_hvbox"))
        .args(["vmm", "run", "--timeout", "60", "--kernel"])
        .arg(kernel)
        .args(["--disk", disk, "--control-socket"])
        .arg(control)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        if Instant::now() > deadline || vmm.try_wait().unwrap().is_some() {
            let _ = vmm.kill();
            let out = vmm.wait_with_output().unwrap();
            panic!(
                "the VMM never served its control socket: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    vmm
}

fn kill_vmm(control: &Path, mut vmm: std::process::Child) {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(control).unwrap();
    writeln!(stream, "kill").unwrap();
    assert_eq!(vmm.wait().unwrap().code(), Some(6));
}

/// Each VMM locks its images as QEMU does: a writable one for itself alone, a
/// read-only one shared with other readers.
#[test]
fn a_writable_disk_belongs_to_one_vmm_and_read_only_disks_are_shared() {
    if !kvm_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = guest("idle", dir.path());
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let rw = disk.to_str().unwrap().to_string();
    let ro = format!("{rw},ro");
    let control = dir.path().join("control.sock");
    let k = kernel.to_str().unwrap();

    let writer = start_idle_vmm(&kernel, &rw, &control);
    for (second, wanted) in [(&rw, "writing"), (&ro, "read-only use")] {
        let out = vmm_run(&["--kernel", k, "--timeout", "5", "--disk", second]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "disk {rw}: the image is in use, so it cannot be locked for {wanted}: another process (another VMM or QEMU, say) is writing it (an exclusive lock)"
            )),
            "{err}"
        );
    }
    kill_vmm(&control, writer);

    let reader = start_idle_vmm(&kernel, &ro, &control);
    // A second reader runs its guest (to the time limit).
    let out = vmm_run(&["--kernel", k, "--timeout", "1", "--disk", &ro]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vmm_run(&["--kernel", k, "--timeout", "5", "--disk", &rw]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is reading it (a shared lock)"), "{err}");
    kill_vmm(&control, reader);
}

/// The VMM's program is linked statically (.cargo/config.toml says why): it has no
/// program interpreter (ELF PT_INTERP), so a running machine maps neither ld.so nor
/// the shared libc.
#[test]
fn the_vmm_program_needs_no_dynamic_loader() {
    let libc_a = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("-print-file-name=libc.a")
        .output();
    let static_libc =
        libc_a.is_ok_and(|out| Path::new(String::from_utf8_lossy(&out.stdout).trim()).is_file());
    if !static_libc {
        return hvbox_test_support::skip("no static C library (libc.a) to link hvbox-vmm with");
    }
    let elf = std::fs::read(env!("CARGO_BIN_EXE_hvbox-vmm")).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, entries) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    let interp = (0..entries).any(|i| {
        let at = phoff + i * entry_size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == PT_INTERP
    });
    assert!(!interp, "hvbox-vmm is dynamically linked");
}
