//! Talking to the guest with the system's OpenSSH client, always with the machine's
//! own key and its pinned host key: no trust on first use.

use crate::guest_text::sanitize;
use crate::machine::{Machine, MachineState};
use std::os::unix::fs::DirBuilderExt;
use std::process::{Command, Stdio};

/// The name the pinned host key is filed under in the machine's known_hosts, so the
/// entry holds whatever port the machine gets on each boot.
pub fn host_key_alias(state: &MachineState) -> String {
    format!("hvbox-{}", state.instance_id)
}

pub fn known_hosts_line(state: &MachineState, host_public_key: &str) -> String {
    format!("{} {}\n", host_key_alias(state), host_public_key.trim())
}

/// The socket of the machine's shared connection: in its runtime folder, as UNIX
/// socket paths are short, and that folder goes with the machine's processes. A
/// running machine's folder is the one its run file names: this call's
/// XDG_RUNTIME_DIR may not be the one `up` saw (another login session).
pub fn control_path(machine: &Machine, state: &MachineState) -> std::path::PathBuf {
    let dir = crate::machine::runtime::RunInfo::load(machine)
        .map(|info| info.runtime_dir)
        .unwrap_or_else(|_| machine.runtime_dir(&state.instance_id));
    dir.join("ssh")
}

/// How long an idle shared connection stays open after its last session; `halt`,
/// `suspend` and `destroy` close it at once.
const CONTROL_PERSIST: &str = "10m";

/// Every option hvbox's ssh runs with, as ssh_config keywords and values: `hvbox ssh`
/// passes them with `-o`, `hvbox ssh-config` prints them, so both connect alike.
pub fn options(machine: &Machine, state: &MachineState, port: u16) -> Vec<(&'static str, String)> {
    options_with_socket(machine, state, port, &control_path(machine, state))
}

/// [`options`] with the shared connection's socket already found.
fn options_with_socket(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    control: &std::path::Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("HostName", "127.0.0.1".into()),
        ("Port", port.to_string()),
        ("User", config_word(&state.user)),
        ("IdentityFile", config_path(&machine.ssh_key())),
        ("IdentitiesOnly", "yes".into()),
        ("IdentityAgent", "none".into()),
        ("StrictHostKeyChecking", "yes".into()),
        ("UserKnownHostsFile", config_path(&machine.known_hosts())),
        ("HostKeyAlias", host_key_alias(state)),
        ("PasswordAuthentication", "no".into()),
        // A machine that dies mid-session ends the session within a minute
        // instead of leaving ssh waiting forever.
        ("ServerAliveInterval", "15".into()),
        ("ServerAliveCountMax", "4".into()),
        ("LogLevel", "ERROR".into()),
        // One connection for provisioning and repeated `hvbox ssh -- CMD`, and for
        // the user's own ssh, scp and rsync through the machine's ssh_config.
        ("ControlMaster", "auto".into()),
        ("ControlPath", config_path(control)),
        ("ControlPersist", CONTROL_PERSIST.into()),
    ]
}

/// A path as ssh_config reads it: `%` starts a token there, and a path with spaces
/// needs quotes.
pub fn config_path(path: &std::path::Path) -> String {
    config_word(&path.to_string_lossy().replace('%', "%%"))
}

/// One ssh_config argument, quoted when it has to be.
pub fn config_word(word: &str) -> String {
    if !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '\'' | '#' | '='))
    {
        return word.to_string();
    }
    let mut quoted = String::from("\"");
    for c in word.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `ssh` with everything but the remote command.
pub fn command(machine: &Machine, state: &MachineState, port: u16) -> Command {
    command_with(machine, state, port, &[])
}

/// [`command`] with more ssh options (the user's `-L`, `-A`…), placed before the
/// host as ssh wants them.
pub fn command_with(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    more: &[String],
) -> Command {
    // ssh cannot make its shared connection's socket where there is no folder
    // (a machine whose runtime folder was cleaned up under it).
    let control = control_path(machine, state);
    if let Some(dir) = control.parent() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::machine::private::DIR_MODE)
            .create(dir);
    }
    let mut cmd = Command::new("ssh");
    // The user's own options (`-l`, `-i`, `-o User=`…) would be ignored by a session
    // riding the shared connection: such a call logs in on its own. A control
    // command (`-O exit`) is the exception: it needs the connection's socket.
    let shared = more.is_empty();
    let control_command = more.iter().any(|arg| is_control_command(arg));
    for (name, value) in options_with_socket(machine, state, port, &control) {
        let keep =
            shared || !name.starts_with("Control") || (control_command && name == "ControlPath");
        if !keep {
            continue;
        }
        cmd.arg("-o").arg(format!("{name}={value}"));
    }
    cmd.args(more);
    // HostName above says where to connect; this only fills ssh's required argument.
    cmd.arg("127.0.0.1");
    cmd
}

/// ssh's options that take a value (OpenSSH's `ssh` getopt string).
pub const VALUE_OPTIONS: &str = "bceilmopBDEFIJLOPQRSwW";

/// `-O CMD` or `-OCMD`, alone or ending a cluster of flags (`-vO`): ssh's request to
/// a shared connection's master.
fn is_control_command(arg: &str) -> bool {
    let Some(flags) = arg.strip_prefix('-').filter(|f| !f.starts_with('-')) else {
        return false;
    };
    // Flags that take a value end the cluster: whatever follows is that value.
    for flag in flags.chars() {
        if flag == 'O' {
            return true;
        }
        if VALUE_OPTIONS.contains(flag) {
            return false;
        }
    }
    false
}

/// Close the machine's shared connection, if one is open, and return once its
/// process has gone: called before the machine stops, so no ssh is left behind
/// waiting on a guest that is gone.
pub fn close_master(machine: &Machine, state: &MachineState) {
    let socket = control_path(machine, state);
    if !socket.exists() {
        return;
    }
    let control = |op: &str| {
        Command::new("ssh")
            .arg("-o")
            .arg(format!("ControlPath={}", config_path(&socket)))
            .args(["-O", op, "127.0.0.1"])
            .stdin(Stdio::null())
            .output()
    };
    // `-O check` says "Master running (pid=N)".
    let pid = control("check").ok().and_then(|out| {
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        said.split_once("(pid=")?
            .1
            .split_once(')')?
            .0
            .parse::<u32>()
            .ok()
    });
    let _ = control("exit");
    if let Some(pid) = pid {
        if !crate::process::wait_gone(pid, std::time::Duration::from_secs(5)) {
            let _ = crate::process::signal(pid, libc::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(&socket);
}

/// `ssh` for hvbox's own checks: never prompts, gives up on a dead port quickly.
pub fn batch_command(machine: &Machine, state: &MachineState, port: u16) -> Command {
    let mut cmd = command(machine, state, port);
    cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]);
    cmd
}

/// Whether an sshd answers on the host's `port`: the version exchange that opens
/// every ssh connection, on a plain TCP connection. Far cheaper than a login, so a
/// boot can be watched closely: passt accepts every connection on the host and
/// closes it while the guest refuses it, and the read ends as soon as the guest's
/// line or the close arrives. Our line goes first: passt reaches the guest only once
/// the host side has sent something. The connection ends in a reset (see
/// [`reset_on_close`]).
pub(crate) fn sshd_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let wait = std::time::Duration::from_secs(2);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, wait) else {
        return false;
    };
    let mut start = [0u8; 4];
    reset_on_close(&stream)
        && stream.set_read_timeout(Some(wait)).is_ok()
        && stream.write_all(b"SSH-2.0-hvbox-probe\r\n").is_ok()
        && stream.read_exact(&mut start).is_ok()
        && &start == b"SSH-"
}

/// Makes closing `stream` reset the connection (SO_LINGER of 0) rather than end it.
/// Until the guest's network is up, passt's side of a probe stays in its handshake
/// with the guest, and Debian 12's passt (2023-03) spins a core on a host socket that
/// closes then, until its 10 s handshake timeout: the probes that gave up on a
/// booting guest kept passt at a full core until the guest's network was up. A
/// reset makes passt drop the connection at once.
fn reset_on_close(stream: &std::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let abort = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open for the call, and the option's value is a
    // `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&abort as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// One quiet, non-interactive attempt to log in; true when the guest answered. The
/// login is only tried once sshd answers at all (see [`sshd_answers`]).
pub fn probe(machine: &Machine, state: &MachineState, port: u16) -> bool {
    sshd_answers(port)
        && batch_command(machine, state, port)
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// True when ssh refuses the guest because its host key is not the pinned one.
pub fn host_key_refused(machine: &Machine, state: &MachineState, port: u16) -> bool {
    batch_command(machine, state, port)
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .is_ok_and(|out| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            stderr.contains("Host key verification failed")
                || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        })
}

#[derive(Debug, PartialEq, Eq)]
pub enum CloudInit {
    Done,
    /// cloud-init finished with errors, or never finished (a stage killed, say by
    /// the OOM killer); what it and systemd said.
    Failed(String),
    /// The connection dropped (sshd restarting); ask again.
    Disconnected,
}

/// Block until cloud-init's first-boot stages are over. A guest without cloud-init
/// counts as done.
pub fn wait_for_cloud_init(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    limit: std::time::Duration,
) -> CloudInit {
    let output = batch_command(machine, state, port)
        .arg(cloud_init_wait_script(limit, CLOUD_INIT_RUN))
        .stdin(Stdio::null())
        .output();
    match output {
        // ssh's own failure, e.g. the connection reset by sshd's restart.
        Ok(out) if matches!(out.status.code(), Some(255) | None) => CloudInit::Disconnected,
        // The verdict's detail is printed: the guest's control characters are shown.
        Ok(out) => cloud_init_verdict(&sanitize(&String::from_utf8_lossy(&out.stdout))),
        Err(_) => CloudInit::Disconnected,
    }
}

/// The guest shell script that waits for the boot to settle and prints cloud-init's
/// report, then the failed units. `timeout` in the guest keeps `hvbox up --timeout`
/// honest if cloud-init hangs. systemd's wait for the boot's jobs covers cloud-init's
/// stages, cloud-final included, without a Python process polling beside them
/// (seconds of CPU under emulation). When the boot settled with no unit failed and
/// cloud-init's final stage recorded no errors, that is its verdict, `done`, read
/// from the file it wrote: `cloud-init status` would start Python once more to say
/// so. Otherwise `cloud-init status --wait` is the fallback where systemd's wait
/// failed (a degraded boot, an old systemd; Debian 12's 22.4 ends it as soon as one
/// module failed), and `cloud-init status --long` gives the verdict. `run_dir` is
/// cloud-init's runtime folder.
fn cloud_init_wait_script(limit: std::time::Duration, run_dir: &str) -> String {
    let secs = limit.as_secs();
    let boot_done = format!("timeout {secs} systemctl is-system-running --wait >/dev/null 2>&1");
    let failed = format!("echo '{FAILED_UNITS}'; systemctl --failed --no-legend --plain");
    // result.json is JSON with one-space indents: an empty list reads `"errors": []`.
    format!(
        "if ! command -v cloud-init >/dev/null; then echo 'status: done'; \
         elif [ -e {run_dir}/disabled ]; then {boot_done}; echo 'status: disabled'; {failed}; \
         elif {boot_done} && grep -qsF '\"errors\": []' {run_dir}/result.json; then echo 'status: done'; {failed}; \
         else timeout {secs} cloud-init status --wait >/dev/null 2>&1; cloud-init status --long; {failed}; fi"
    )
}

/// cloud-init's runtime folder. `disabled` there is written early in a boot on which
/// cloud-init does not run: by its generator, or by hvbox's boxes when the seed is the
/// one it already applied. `cloud-init status` would say `disabled` then, but it
/// starts Python, seconds under emulation. `result.json` is written when its final
/// stage ends.
const CLOUD_INIT_RUN: &str = "/run/cloud-init";

/// Separates cloud-init's report from systemd's list of failed units.
const FAILED_UNITS: &str = "-- failed units:";

/// What `cloud-init status --long` and the failed units say once the boot settled.
/// cloud-init's own exit status is no verdict: Debian 12's 22.4 exits 0 with
/// `status: running` when a stage died (its cloud-config killed by the OOM killer,
/// seen with 256M), as it never got to record an error.
fn cloud_init_verdict(output: &str) -> CloudInit {
    let (report, failed) = output.split_once(FAILED_UNITS).unwrap_or((output, ""));
    let status = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("status:"))
        .map(str::trim)
        .unwrap_or_default();
    let failed: Vec<&str> = failed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cloud-"))
        .collect();
    let finished = status.starts_with("done") || status == "disabled";
    if finished && failed.is_empty() {
        return CloudInit::Done;
    }
    let mut detail = report.trim().to_string();
    if !finished && status != "error" {
        detail = format!("cloud-init did not finish (status: {status:?}):\n{detail}");
    }
    if !failed.is_empty() {
        detail = format!("{detail}\nfailed units:\n{}", failed.join("\n"));
    }
    CloudInit::Failed(detail)
}

/// Run `script` in the guest (through its login shell) and return its standard
/// output; a non-zero exit is an error carrying standard error. Both are guest
/// text that callers print, so their control characters are shown, not obeyed.
pub fn capture(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    script: &str,
) -> anyhow::Result<String> {
    let out = batch_command(machine, state, port)
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("running ssh: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{script}` in the guest failed ({}): {}",
            out.status,
            sanitize(String::from_utf8_lossy(&out.stderr).trim())
        );
    }
    Ok(sanitize(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Run `script` in the guest with `stdin` as its input, its output relayed to
/// ours as it comes (control characters shown, not obeyed); returns its exit status.
pub fn run_streaming(
    machine: &Machine,
    state: &MachineState,
    port: u16,
    script: &str,
    stdin: Stdio,
) -> anyhow::Result<std::process::ExitStatus> {
    let mut child = batch_command(machine, state, port)
        .arg(script)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("running ssh: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let relays = [
        std::thread::spawn(move || crate::guest_text::relay(stdout, std::io::stdout())),
        std::thread::spawn(move || crate::guest_text::relay(stderr, std::io::stderr())),
    ];
    let status = child
        .wait()
        .map_err(|e| anyhow::anyhow!("waiting for ssh: {e}"));
    // A relay that could not write (our reader went away) only loses output.
    for relay in relays {
        let _ = relay.join();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback server that reads the client's first line, then answers `reply`
    /// (or closes, as passt does while the guest refuses); its port.
    fn server(reply: Option<&'static [u8]>) -> u16 {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&stream)
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("SSH-2.0-"), "{line:?}");
            if let Some(reply) = reply {
                (&stream).write_all(reply).unwrap();
            }
        });
        port
    }

    #[test]
    fn sshd_answers_only_with_an_ssh_version_line() {
        assert!(sshd_answers(server(Some(b"SSH-2.0-OpenSSH_9.2p1\r\n"))));
        assert!(!sshd_answers(server(None)));
        assert!(!sshd_answers(server(Some(b"HTTP/1.1 400 Bad Request\r\n"))));
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(!sshd_answers(port));
    }

    /// The CPU time process `pid` has used, in clock ticks.
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // After the command's name, in parentheses: state, then utime and stime
        // as the 12th and 13th fields.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// A probe of a booting guest, whose network is not up yet, leaves passt idle
    /// once it gave up: passt forwards the port, its guest reads frames and answers
    /// none. Debian 12's passt spun a core after each such probe, for 10 s.
    #[test]
    fn a_probe_that_gets_no_answer_leaves_passt_idle() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let forward = format!("127.0.0.1/{port}:22");
        let Some(passt) =
            hvbox_test_support::passt::Passt::start_with(dir.path(), "net", &["-t", &forward])
        else {
            return;
        };
        let guest = std::os::unix::net::UnixStream::connect(&passt.socket).unwrap();
        let reader = guest.try_clone().unwrap();
        std::thread::spawn(move || std::io::copy(&mut &reader, &mut std::io::sink()));

        assert!(!sshd_answers(port), "nothing in the guest answers");
        let before = cpu_ticks(passt.pid());
        std::thread::sleep(std::time::Duration::from_secs(2));
        let spent = cpu_ticks(passt.pid()) - before;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert!(
            spent < per_second / 2,
            "passt used {spent} ticks of CPU (of {per_second} a second) in the 2 s after the probe gave up"
        );
        drop(guest);
    }

    /// The wait script run by sh with stand-ins for systemctl and cloud-init, which
    /// log their calls: its output and the calls made.
    fn run_wait_script(boot: &str, result: Option<&str>, disabled: bool) -> (String, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (bin, run) = (dir.path().join("bin"), dir.path().join("run"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let calls = dir.path().join("calls");
        let stand_in = |name: &str, body: &str| {
            let path = bin.join(name);
            let script = format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
                calls.display()
            );
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        stand_in(
            "systemctl",
            &format!("case \"$1\" in is-system-running) echo {boot}; [ {boot} = running ];; --failed) [ {boot} = running ] || echo 'cloud-final.service loaded failed failed';; esac"),
        );
        stand_in(
            "cloud-init",
            "case \"$*\" in 'status --long') echo 'status: error';; esac",
        );
        if let Some(result) = result {
            std::fs::write(run.join("result.json"), result).unwrap();
        }
        if disabled {
            std::fs::write(run.join("disabled"), "").unwrap();
        }
        let script =
            cloud_init_wait_script(std::time::Duration::from_secs(5), run.to_str().unwrap());
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("PATH", path)
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(calls).unwrap_or_default();
        (String::from_utf8_lossy(&out.stdout).into_owned(), calls)
    }

    /// How cloud-init 22.4 writes result.json (`json.dumps(indent=1)`).
    const RESULT_CLEAN: &str = "{\n \"v1\": {\n  \"datasource\": \"DataSourceNoCloud [seed=/dev/vdb][dsmode=net]\",\n  \"errors\": []\n }\n}";
    const RESULT_ERRORS: &str = "{\n \"v1\": {\n  \"datasource\": \"DataSourceNoCloud\",\n  \"errors\": [\n   \"('scripts_user', RuntimeError('Runparts: 1 failures'))\"\n  ]\n }\n}";

    #[test]
    fn a_clean_settled_boot_is_done_without_asking_cloud_init() {
        let (out, calls) = run_wait_script("running", Some(RESULT_CLEAN), false);
        assert_eq!(cloud_init_verdict(&out), CloudInit::Done, "{out}");
        assert!(!calls.contains("cloud-init status"), "{calls}");
    }

    #[test]
    fn errors_or_a_degraded_boot_ask_cloud_init_for_its_report() {
        for (boot, result) in [
            ("running", Some(RESULT_ERRORS)),
            ("degraded", Some(RESULT_CLEAN)),
            ("degraded", None),
        ] {
            let (out, calls) = run_wait_script(boot, result, false);
            assert!(
                calls.contains("cloud-init status --long"),
                "{boot} {result:?}: {calls}"
            );
            assert!(
                matches!(cloud_init_verdict(&out), CloudInit::Failed(_)),
                "{boot}: {out}"
            );
        }
        // Its final stage not over yet: cloud-init waits and reports.
        let (_, calls) = run_wait_script("running", None, false);
        assert!(calls.contains("cloud-init status --wait"), "{calls}");
    }

    #[test]
    fn a_boot_without_cloud_init_says_disabled() {
        let (out, calls) = run_wait_script("running", None, true);
        assert_eq!(cloud_init_verdict(&out), CloudInit::Done, "{out}");
        assert!(out.contains("status: disabled"), "{out}");
        assert!(!calls.contains("cloud-init status"), "{calls}");
    }

    /// What Debian 12's cloud-init 22.4 printed after its cloud-config stage was
    /// killed by the OOM killer: exit 0, `status: running`, the unit failed.
    const KILLED: &str = "status: running\ntime: Sun, 06 Dec 2026 00:26:35 +0000\ndetail:\nDataSourceNoCloud [seed=/dev/vdb][dsmode=net]\n-- failed units:\ncloud-config.service loaded failed failed Apply the settings specified in cloud-config\n";

    #[test]
    fn control_commands_are_told_from_other_options() {
        for arg in ["-O", "-Oexit", "-vO", "-vvOcheck"] {
            assert!(is_control_command(arg), "{arg}");
        }
        for arg in ["-L", "-o", "-oO", "-lO", "--O", "O", "-v", "-A"] {
            assert!(!is_control_command(arg), "{arg}");
        }
    }

    #[test]
    fn cloud_init_that_never_finished_is_no_success() {
        let CloudInit::Failed(detail) = cloud_init_verdict(KILLED) else {
            panic!("a killed stage passed for done");
        };
        assert!(
            detail.contains("cloud-init did not finish (status: \"running\")"),
            "{detail}"
        );
        assert!(
            detail.contains("cloud-config.service loaded failed"),
            "{detail}"
        );
        let error =
            "status: error\ndetail:\n('ssh-authkey-fingerprints', KeyError)\n-- failed units:\n";
        let CloudInit::Failed(detail) = cloud_init_verdict(error) else {
            panic!("an error passed for done");
        };
        assert!(detail.starts_with("status: error"), "{detail}");
    }

    #[test]
    fn cloud_init_done_is_done_whatever_else_failed() {
        let done = "status: done\ndetail:\nDataSourceNoCloud\n-- failed units:\nserial-getty@ttyS0.service loaded failed failed Serial Getty\n";
        assert_eq!(cloud_init_verdict(done), CloudInit::Done);
        // Newer cloud-init's extended status, and a guest without cloud-init.
        assert_eq!(
            cloud_init_verdict("status: done\nextended_status: degraded done\n"),
            CloudInit::Done
        );
        assert_eq!(cloud_init_verdict("status: done\n"), CloudInit::Done);
        assert_eq!(
            cloud_init_verdict("status: disabled\n-- failed units:\n"),
            CloudInit::Done
        );
    }

    #[test]
    fn config_words_are_quoted_only_when_needed() {
        assert_eq!(config_word("/home/u/.hvbox/key"), "/home/u/.hvbox/key");
        assert_eq!(config_word("/my project/key"), "\"/my project/key\"");
        assert_eq!(config_word("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(config_word("#x"), "\"#x\"");
    }

    #[test]
    fn ssh_takes_the_options_as_given_even_in_awkward_paths() {
        if Command::new("ssh").arg("-V").output().is_err() {
            return hvbox_test_support::skip("no ssh client (openssh-client)");
        }
        let machine = Machine::new("default", "/tmp/my project/50%/.hvbox/m".into());
        let state = MachineState {
            instance_id: "i-1".into(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            hostname: String::new(),
            user: "dev".into(),
            box_name: String::new(),
            box_disk_digest: String::new(),
            created_unix: 0,
            kernels: Vec::new(),
            pinned_kernel: None,
            provisioned_unix: None,
            proxy: Default::default(),
        };
        // -G: print the configuration ssh would use, and connect nowhere.
        let out = command(&machine, &state, 2200).arg("-G").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for expected in [
            "port 2200",
            "user dev",
            "hostname 127.0.0.1",
            "hostkeyalias hvbox-i-1",
            "identityfile /tmp/my project/50%/.hvbox/m/id_ed25519",
            "userknownhostsfile /tmp/my project/50%/.hvbox/m/known_hosts",
        ] {
            // ssh -G shows IdentityFile before expanding its `%%` (it does so on use).
            assert!(
                text.lines().any(|l| l.replace("%%", "%") == expected),
                "no `{expected}` in:\n{text}"
            );
        }
    }
}
