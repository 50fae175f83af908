//! hvbox-vmm's command line. `hvbox` writes it (`hvbox up`, `hvbox vmm run`), so it
//! is plain and small: the machine is a `--config` file (the JSON of
//! [`MachineConfig`]); the run's bounds and sockets are flags.

use hvbox_vmm::MachineConfig;
use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str =
    "usage: hvbox-vmm (--config FILE | --config-fd FD) [--timeout SECS] [--stats] \
[--mask-unemulated-cpuid] [--control-socket PATH] [--console-socket PATH] \
[--no-seccomp] [--restore FILE]";

#[derive(Debug, Default)]
pub struct Args {
    pub config: Option<MachineConfig>,
    pub timeout: Option<u64>,
    pub stats: bool,
    pub mask_unemulated_cpuid: bool,
    pub control_socket: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_seccomp: bool,
    pub restore: Option<PathBuf>,
}

/// The arguments after the program's name; an error names the flag at fault.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let flag = arg.to_string_lossy().into_owned();
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => {
                let path = PathBuf::from(value()?);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                parsed.config = Some(machine(&text, &path.display().to_string())?);
            }
            // `hvbox vmm run` hands the machine over in a memory file it inherits.
            "--config-fd" => {
                let text = value()?;
                let fd = text.to_str().and_then(|t| t.parse().ok());
                let fd = fd.ok_or_else(|| format!("--config-fd: {text:?} is not a descriptor"))?;
                parsed.config = Some(machine(&read_fd(fd)?, &format!("descriptor {fd}"))?);
            }
            "--timeout" => {
                let text = value()?;
                let secs = text.to_str().and_then(|t| t.parse().ok());
                parsed.timeout = Some(secs.ok_or_else(|| {
                    format!("--timeout: {text:?} is not a whole number of seconds")
                })?);
            }
            "--control-socket" => parsed.control_socket = Some(value()?.into()),
            "--console-socket" => parsed.console_socket = Some(value()?.into()),
            "--restore" => parsed.restore = Some(value()?.into()),
            "--stats" => parsed.stats = true,
            "--mask-unemulated-cpuid" => parsed.mask_unemulated_cpuid = true,
            "--no-seccomp" => parsed.no_seccomp = true,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if parsed.config.is_none() {
        return Err("--config FILE or --config-fd FD is required".into());
    }
    Ok(parsed)
}

/// The machine in `text`, read from `source`; errors carry SOURCE:LINE:COLUMN.
fn machine(text: &str, source: &str) -> Result<MachineConfig, String> {
    let config: MachineConfig = serde_json::from_str(text)
        .map_err(|e| format!("{source}:{}:{}: {e}", e.line(), e.column()))?;
    config.validate().map_err(|e| format!("{source}: {e}"))?;
    Ok(config)
}

/// All of inherited descriptor `fd` from its start; it is closed after, so the
/// running VMM keeps nothing of its parent's.
fn read_fd(fd: i32) -> Result<String, String> {
    use std::io::{Read, Seek};
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl only looks the number up.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("--config-fd: {fd} is not an open descriptor"));
    }
    // SAFETY: open (checked above) and handed to this process for it alone to read;
    // nothing else in it refers to that number.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = String::new();
    file.rewind()
        .and_then(|_| file.read_to_string(&mut text))
        .map_err(|e| format!("reading the machine from descriptor {fd}: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Args, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn flags_and_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("vm.json");
        std::fs::write(
            &config,
            r#"{"cpus": 2, "memory": 134217728, "kernel": "/k", "cmdline": ""}"#,
        )
        .unwrap();
        let args = parse_strs(&[
            "--config",
            config.to_str().unwrap(),
            "--timeout",
            "7",
            "--stats",
            "--control-socket",
            "/r/c.sock",
        ])
        .unwrap();
        assert_eq!(args.config.unwrap().cpus, 2);
        assert_eq!(args.timeout, Some(7));
        assert!(args.stats && !args.no_seccomp);
        assert_eq!(args.control_socket, Some(PathBuf::from("/r/c.sock")));
    }

    #[test]
    fn errors_name_the_flag() {
        let err = |args: &[&str]| parse_strs(args).unwrap_err();
        assert_eq!(err(&[]), "--config FILE or --config-fd FD is required");
        assert_eq!(
            err(&["--config-fd", "999"]),
            "--config-fd: 999 is not an open descriptor"
        );
        assert_eq!(err(&["--timeout"]), "--timeout needs a value");
        assert!(err(&["--timeout", "soon"]).contains("--timeout: \"soon\""));
        assert_eq!(err(&["--frobnicate"]), "unknown argument \"--frobnicate\"");
        assert!(err(&["--config", "/nonexistent/vm.json"])
            .starts_with("cannot read /nonexistent/vm.json"));
    }
}
