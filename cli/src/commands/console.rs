//! `hvbox console [NAME]`: a machine's serial console in this terminal. Ctrl-]
//! detaches, as in telnet and virsh; the machine keeps running.

use super::select::{Need, Selection};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

const DETACH: u8 = 0x1d; // Ctrl-]

pub fn run(name: Option<&str>) -> Result<ExitCode> {
    let target = Selection::load(Need::Names)?.one(name, "console")?;
    let info = target.running()?;
    let stream = UnixStream::connect(&info.console_socket).with_context(|| {
        format!(
            "connecting to the console at {}",
            info.console_socket.display()
        )
    })?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("hvbox: attached to the serial console; Ctrl-] detaches\r");
    }
    let mut from_guest = stream.try_clone()?;
    let output = std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let mut buf = [0u8; 4096];
        while let Ok(n) = from_guest.read(&mut buf) {
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
    });
    let raw = interactive.then(RawTerminal::enter).transpose()?;
    let mut to_guest = stream;
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 1024];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (input, detach) = match buf[..n].iter().position(|&b| b == DETACH) {
            Some(i) if raw.is_some() => (&buf[..i], true),
            _ => (&buf[..n], false),
        };
        if to_guest.write_all(input).is_err() || detach {
            break;
        }
    }
    drop(raw);
    if interactive {
        eprintln!("\nhvbox: detached");
        return Ok(ExitCode::SUCCESS);
    }
    // Piped input ended: keep showing output until the machine closes the console.
    let _ = output.join();
    Ok(ExitCode::SUCCESS)
}

/// The terminal in raw mode while attached, restored however we leave.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0, a terminal.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is open and `saved` is a valid termios to write into.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            bail!(
                "reading terminal settings: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: fd 0 is a terminal and `raw` a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            bail!("setting raw mode: {}", std::io::Error::last_os_error());
        }
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from the same terminal in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}
