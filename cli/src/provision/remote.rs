//! Running one step in the guest over the machine's ssh: the shell command the
//! guest runs, and what is sent to it on standard input (a script, or a tar stream).

use super::archive;
use super::output::{StepOutput, Stream};
use crate::kernel_install::shell_quote;
use crate::machine::{Machine, MachineState};
use crate::ssh;
use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;

/// How a step gets to root: sudo without a prompt (hvbox's user has passwordless
/// sudo) and with root's own HOME.
const SUDO: &str = "sudo -n -H --";

/// What the guest reads on standard input.
#[derive(Debug)]
pub enum Input {
    Script(Vec<u8>),
    /// A file or folder, sent as a tar stream.
    Tree {
        source: PathBuf,
        file_name: Option<String>,
    },
}

/// The command that saves the script from standard input to a temp file and runs
/// it with `args`, as root when `privileged`. A script with a `#!` line runs with
/// its interpreter; any other with `sh -e`, so its first failing command fails
/// the step. The script's own standard input is empty: it cannot wait on a prompt.
pub fn script_command(script: &[u8], args: &[String], privileged: bool) -> String {
    let runner = match (privileged, script.starts_with(b"#!")) {
        (true, true) => format!("{SUDO} "),
        (true, false) => format!("{SUDO} sh -e "),
        (false, true) => String::new(),
        (false, false) => "sh -e ".to_string(),
    };
    let args: String = args
        .iter()
        .map(|a| format!(" {}", shell_quote(a)))
        .collect();
    format!(
        "f=$(mktemp \"${{TMPDIR:-/tmp}}/hvbox-provision.XXXXXX\") && trap 'rm -f \"$f\"' EXIT && cat >\"$f\" && chmod 0755 \"$f\" && {runner}\"$f\"{args} </dev/null"
    )
}

/// The command that unpacks a tar stream from standard input in `dir`, making
/// `dir` first. As root, files belong to root rather than to their host owner.
pub fn unpack_command(dir: &str, privileged: bool) -> String {
    let unpack = shell_quote("mkdir -p -- \"$1\" && exec tar -x -p --no-same-owner -f - -C \"$1\"");
    let sudo = if privileged {
        format!("{SUDO} ")
    } else {
        String::new()
    };
    format!("{sudo}sh -c {unpack} sh {}", shell_quote(dir))
}

/// Where a running step's guest is reached.
pub struct Guest<'a> {
    pub machine: &'a Machine,
    pub state: &'a MachineState,
    pub port: u16,
}

/// Run `command` in the guest with `input` on its standard input, printing its
/// output through `output` as it arrives. An error means the step could not be
/// run or fed (ssh missing, a host file unreadable); the guest's own failure is
/// the exit status.
pub fn run(
    guest: &Guest,
    command: &str,
    input: Input,
    output: &mut StepOutput,
) -> Result<ExitStatus> {
    let mut child = ssh::batch_command(guest.machine, guest.state, guest.port)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ssh (is openssh-client installed?)")?;
    let stdin = child.stdin.take().expect("piped stdin");
    let feeder = std::thread::spawn(move || feed(stdin, input));
    let (tx, rx) = mpsc::channel();
    let readers = [
        forward(
            child.stdout.take().expect("piped stdout"),
            Stream::Stdout,
            tx.clone(),
        ),
        forward(
            child.stderr.take().expect("piped stderr"),
            Stream::Stderr,
            tx,
        ),
    ];
    // One thread prints, so lines keep the order in which they arrived.
    for (stream, chunk) in rx {
        for line in output.feed(stream, &chunk) {
            print_line(stream, &line);
        }
    }
    for (stream, line) in output.finish() {
        print_line(stream, &line);
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().context("waiting for ssh")?;
    let fed = feeder.join().expect("the input thread does not panic");
    match fed {
        Ok(()) => Ok(status),
        // The guest stopped reading: it failed, and its status and output say why.
        Err(e) if !status.success() && is_broken_pipe(&e) => Ok(status),
        Err(e) => Err(e),
    }
}

fn feed(mut stdin: std::process::ChildStdin, input: Input) -> Result<()> {
    match input {
        Input::Script(bytes) => stdin
            .write_all(&bytes)
            .context("sending the script to the guest")?,
        Input::Tree { source, file_name } => archive::write(
            &source,
            file_name.as_deref(),
            std::io::BufWriter::new(&mut stdin),
        )?,
    }
    // Dropping stdin closes it: the guest sees the end of its input.
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn forward(
    mut from: impl Read + Send + 'static,
    stream: Stream,
    to: mpsc::Sender<(Stream, Vec<u8>)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.send((stream, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

fn print_line(stream: Stream, line: &str) {
    match stream {
        Stream::Stdout => println!("{line}"),
        Stream::Stderr => eprintln!("{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Run a guest command here, with `sh` standing in for the guest's login
    /// shell and no sudo.
    fn run_locally(command: &str, stdin: &[u8]) -> (i32, String) {
        let command = command.replace(&format!("{SUDO} "), "");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    #[test]
    fn scripts_get_their_args_and_stop_at_the_first_failure() {
        let script = b"echo \"args: $1|$2\"\nfalse\necho not reached\n";
        let args = ["two words".to_string(), "it's".to_string()];
        let command = script_command(script, &args, true);
        assert!(
            command.contains(&format!("{SUDO} sh -e \"$f\"")),
            "{command}"
        );
        let (code, out) = run_locally(&command, script);
        assert_eq!((code, out.as_str()), (1, "args: two words|it's\n"));
    }

    #[test]
    fn a_shebang_picks_the_interpreter_and_the_status_comes_back() {
        let script = b"#!/bin/sh\necho \"from $0\" | grep -c hvbox-provision\nread line || echo no input\nexit 3\n";
        let command = script_command(script, &[], false);
        assert!(!command.contains("sudo"), "{command}");
        let (code, out) = run_locally(&command, script);
        assert_eq!((code, out.as_str()), (3, "1\nno input\n"));
    }

    #[test]
    fn the_temp_script_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let command = format!(
            "TMPDIR={} && export TMPDIR && {}",
            dir.path().display(),
            script_command(b"ls \"$TMPDIR\"", &[], false)
        );
        let (code, out) = run_locally(&command, b"ls \"$TMPDIR\"");
        assert_eq!(code, 0);
        assert!(out.starts_with("hvbox-provision."), "{out}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn trees_unpack_where_the_destination_says() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("app.conf");
        std::fs::write(&source, "port = 80\n").unwrap();
        let target = dir.path().join("guest/etc/it's here");
        let mut archive = Vec::new();
        archive::write(&source, Some("renamed.conf"), &mut archive).unwrap();
        let command = unpack_command(&target.display().to_string(), true);
        assert!(command.starts_with(SUDO), "{command}");
        let (code, out) = run_locally(&command, &archive);
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            std::fs::read_to_string(target.join("renamed.conf")).unwrap(),
            "port = 80\n"
        );
    }
}
