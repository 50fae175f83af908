//! `hvbox ssh [NAME] [-- [SSH-OPTIONS] CMD…]`: a shell or a command in a machine; its
//! exit status is ours. Words after `--` that start with `-` before the command are
//! ssh's own options (`-L 8080:localhost:80`, `-A`), passed to ssh before the host. Run from a host folder inside a mount, it starts in the matching guest
//! folder (as Lima's shell does); elsewhere in the user's home.

use super::select::{Need, Selection};
use crate::kernel_install::shell_quote;
use crate::machine::runtime::MountPoint;
use crate::ssh::VALUE_OPTIONS;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// ssh's own failure status (connection, authentication, host key).
const SSH_FAILED: i32 = 255;

pub fn run(name: Option<&str>, command: &[String]) -> Result<ExitCode> {
    let target = Selection::load(Need::Names)?.one(name, "ssh")?;
    let machine = &target.machine;
    let info = target.running()?;
    let state = machine.load_state()?;
    let (options, command) = split_options(command)?;
    let mut cmd = crate::ssh::command_with(machine, &state, info.ssh_port, options);
    if command.is_empty() && std::io::stdin().is_terminal() {
        cmd.arg("-t");
    }
    let here = std::env::current_dir().and_then(std::fs::canonicalize).ok();
    let dir = here.and_then(|here| guest_dir(&info.mounts, &here));
    match remote_command(dir.as_deref(), command) {
        Some(remote) => {
            cmd.arg("--").arg(remote);
        }
        None if !command.is_empty() => {
            cmd.arg("--").args(command);
        }
        None => {}
    }
    // Not exec'd: a refused host key gets hvbox's explanation below. (An interactive
    // session's terminal is raw, so Ctrl-C reaches the guest, not us.)
    let status = cmd
        .status()
        .context("running ssh (is openssh-client installed?)")?;
    let code = status.code().unwrap_or(SSH_FAILED);
    if code == SSH_FAILED && crate::ssh::host_key_refused(machine, &state, info.ssh_port) {
        bail!(
            "the guest presented an ssh host key other than the one hvbox generated for it and pinned in {}; ssh refused to connect. The guest's host keys were replaced, or something else answers on 127.0.0.1:{}. If you replaced the keys yourself, `hvbox destroy` and `hvbox up` make a new machine with a new pinned key",
            machine.known_hosts().display(),
            info.ssh_port
        );
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// The leading words that are ssh options (each with its value), and the command
/// after them; a `--` among them ends the options.
fn split_options(words: &[String]) -> Result<(&[String], &[String])> {
    let mut i = 0;
    while let Some(word) = words.get(i) {
        if word == "--" {
            return Ok((&words[..i], &words[i + 1..]));
        }
        let Some(flags) = word.strip_prefix('-').filter(|f| !f.is_empty()) else {
            break;
        };
        i += 1;
        // `-AL8080:…` or `-A -L 8080:…`: the first flag that takes a value takes
        // the rest of the word, or the next word.
        if let Some(at) = flags.find(|c| VALUE_OPTIONS.contains(c)) {
            if at + 1 == flags.len() {
                if i == words.len() {
                    bail!("ssh option {word} needs a value after it");
                }
                i += 1;
            }
        }
    }
    Ok((&words[..i], &words[i..]))
}

/// The guest folder for host folder `here`, when a mount holds it (the deepest one).
fn guest_dir(mounts: &[MountPoint], here: &Path) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| Some((m, here.strip_prefix(&m.host).ok()?)))
        .max_by_key(|(m, _)| m.host.components().count())
        .map(|(m, rest)| m.guest.join(rest))
}

/// What the guest runs to start in `dir`: the command (its words joined as ssh joins
/// them) or a login shell, after a `cd` that falls back to the home folder.
fn remote_command(dir: Option<&Path>, command: &[String]) -> Option<String> {
    let dir = shell_quote(&dir?.to_string_lossy());
    let cd = format!(
        "cd {dir} 2>/dev/null || echo \"hvbox: \"{dir}\" is not in the guest; starting in the home folder\" >&2;"
    );
    Some(match command {
        [] => format!("{cd} exec \"$SHELL\" -l"),
        words => format!("{cd} {}", words.join(" ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<MountPoint> {
        vec![
            MountPoint {
                host: "/home/me/proj".into(),
                guest: "/home/me/proj".into(),
            },
            MountPoint {
                host: "/home/me/proj/data".into(),
                guest: "/srv/data".into(),
            },
        ]
    }

    /// The split as "OPTIONS | COMMAND".
    fn split(words: &[&str]) -> String {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let (options, command) = split_options(&words).unwrap();
        format!("{} | {}", options.join(" "), command.join(" "))
    }

    #[test]
    fn ssh_options_before_the_command_go_to_ssh() {
        assert_eq!(split(&["uname", "-a"]), " | uname -a");
        assert_eq!(
            split(&["-L", "8080:localhost:80", "-A", "ls", "-l"]),
            "-L 8080:localhost:80 -A | ls -l"
        );
        assert_eq!(
            split(&["-AL8080:localhost:80", "-N"]),
            "-AL8080:localhost:80 -N | "
        );
        assert_eq!(split(&["-At", "-o", "SendEnv=X"]), "-At -o SendEnv=X | ");
        assert_eq!(split(&["-A", "--", "-weird"]), "-A | -weird");
        assert!(split_options(&["-L".to_string()]).is_err());
    }

    #[test]
    fn a_host_folder_inside_a_mount_is_the_matching_guest_folder() {
        let dir = |p: &str| guest_dir(&mounts(), Path::new(p));
        assert_eq!(dir("/home/me/proj"), Some("/home/me/proj".into()));
        assert_eq!(
            dir("/home/me/proj/src/lib"),
            Some("/home/me/proj/src/lib".into())
        );
        // The deeper mount wins.
        assert_eq!(dir("/home/me/proj/data/set"), Some("/srv/data/set".into()));
        assert_eq!(dir("/home/me/project2"), None);
        assert_eq!(dir("/tmp"), None);
    }

    #[test]
    fn the_guest_changes_folder_first_and_runs_the_command_or_a_shell() {
        assert_eq!(remote_command(None, &["ls".into()]), None);
        let words = vec!["git".to_string(), "status".into()];
        let run = remote_command(Some(Path::new("/srv/my dir")), &words).unwrap();
        assert!(run.starts_with("cd '/srv/my dir' 2>/dev/null ||"), "{run}");
        assert!(run.ends_with("; git status"), "{run}");
        let shell = remote_command(Some(Path::new("/srv/x")), &[]).unwrap();
        assert!(shell.ends_with("exec \"$SHELL\" -l"), "{shell}");
        // Valid sh, fallback included.
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &remote_command(Some(Path::new("/nonexistent/x")), &["pwd".into()]).unwrap(),
            ])
            .env("HOME", "/")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the guest"));
    }
}
