//! Why a boot did not reach ssh, told with the logs that show it: the engine's own
//! report and the guest's last serial lines. The builtin engine is young (proven
//! under nested AMD SVM only), so its failures also say how to run the machine
//! under QEMU instead.

use crate::engine::EngineKind;
use crate::machine::Machine;
use std::path::Path;
use std::time::Duration;

/// Serial lines shown with a failure.
const SERIAL_LINES: usize = 25;
/// Lines of the engine's own log shown with a failure.
const ENGINE_LINES: usize = 15;

/// Why a boot did not reach ssh; the VM may still be running.
#[derive(Debug)]
pub struct BootFailure {
    pub message: String,
}

impl std::fmt::Display for BootFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BootFailure {}

/// What ended the wait.
#[derive(Debug, Clone, Copy)]
pub enum Ending {
    /// The engine's process ended.
    VmExited,
    /// The guest kernel printed its panic line.
    KernelPanic,
    /// ssh did not answer in time.
    Timeout(Duration),
}

/// Where this boot's output starts in the machine's logs.
#[derive(Debug, Clone, Copy)]
pub struct LogStarts {
    pub serial: u64,
    pub engine: u64,
}

impl BootFailure {
    /// The failure of a boot on `engine`, with the logs
    /// written since `starts`.
    pub fn new(
        machine: &Machine,
        engine: EngineKind,
        ending: Ending,
        starts: LogStarts,
    ) -> BootFailure {
        let serial = machine.serial_log();
        let vm_log = machine.file("vm.log");
        let engine_said = || {
            format!(
                "The engine said ({}):\n{}",
                vm_log.display(),
                tail_since(&vm_log, starts.engine, ENGINE_LINES)
            )
        };
        let serial_said = format!(
            "The guest's serial console said ({}):\n{}",
            serial.display(),
            tail_since(&serial, starts.serial, SERIAL_LINES)
        );
        let still_running =
            "the machine is still running (`hvbox halt` or `hvbox destroy` stops it)";
        let mut message = match ending {
            Ending::VmExited => format!(
                "the VM exited before ssh answered.\n{}\n{serial_said}",
                engine_said()
            ),
            Ending::KernelPanic => {
                format!("the guest kernel panicked; {still_running}.\n{serial_said}")
            }
            Ending::Timeout(limit) => {
                let mut text = format!(
                    "ssh did not answer within {} s; {still_running}.\n{serial_said}",
                    limit.as_secs()
                );
                // The embedded VMM logs what it saw (unhandled exits, device errors)
                // while the guest runs; QEMU's log says nothing useful here.
                if engine == EngineKind::Builtin {
                    text = format!("{text}\n{}", engine_said());
                }
                text
            }
        };
        if engine == EngineKind::Builtin {
            let still_running = !matches!(ending, Ending::VmExited);
            message.push_str(&format!("\n{}", switch_to_qemu(machine, still_running)));
        }
        BootFailure { message }
    }
}

/// How to take the builtin engine out of the picture: the machine must stop to
/// change engine, so a machine still running takes `reload`, not `up`.
fn switch_to_qemu(machine: &Machine, still_running: bool) -> String {
    let (key, name) = match machine.name.as_str() {
        crate::spec::DEFAULT_MACHINE => ("`engine: qemu`".to_string(), String::new()),
        name => (
            format!("`engine: qemu` under `machines: {name}:`"),
            format!(" {name}"),
        ),
    };
    let command = if still_running { "reload" } else { "up" };
    format!(
        "This machine ran on hvbox's own VMM (the builtin engine), which so far has been proven under nested AMD SVM only, not yet on Intel VMX or on bare-metal AMD. To run it under QEMU instead, set {key} in hvbox.yaml and run `hvbox {command}{name}`; the logs above help a bug report."
    )
}

/// The last `lines` lines of what was appended to `path` after byte `start`, safe
/// to print (the guest writes the serial log). A log that rotated since (shorter
/// than `start`) is shown from its start; it is at most 8 MiB.
pub fn tail_since(path: &Path, start: u64, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(start as usize..).unwrap_or(&text));
    let all: Vec<&str> = text.lines().collect();
    crate::guest_text::sanitize(&all[all.len().saturating_sub(lines)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine folder whose logs hold an earlier boot, then this one's lines.
    fn machine(name: &str) -> (tempfile::TempDir, Machine, LogStarts) {
        let dir = tempfile::tempdir().unwrap();
        let machine = Machine::new(name, dir.path().to_path_buf());
        let earlier_serial = "earlier boot\n";
        let earlier_vm = "earlier run\n";
        std::fs::write(
            machine.serial_log(),
            format!(
                "{earlier_serial}[    0.000000] Linux version 6.1\nRun /init as init process\n"
            ),
        )
        .unwrap();
        std::fs::write(
            machine.file("vm.log"),
            format!(
                "{earlier_vm}hvbox: VM exited: triple fault (shutdown) at rip=0xffffffff81000000\n"
            ),
        )
        .unwrap();
        let starts = LogStarts {
            serial: earlier_serial.len() as u64,
            engine: earlier_vm.len() as u64,
        };
        (dir, machine, starts)
    }

    #[test]
    fn a_builtin_vmm_that_crashed_shows_its_report_and_the_way_to_qemu() {
        let (_dir, m, starts) = machine("default");
        let text = BootFailure::new(&m, EngineKind::Builtin, Ending::VmExited, starts).message;
        assert!(text.contains("triple fault (shutdown) at rip="), "{text}");
        assert!(text.contains("Run /init as init process"), "{text}");
        assert!(!text.contains("earlier"), "an earlier boot's lines: {text}");
        assert!(
            text.contains("set `engine: qemu` in hvbox.yaml and run `hvbox up`;"),
            "{text}"
        );
        assert!(text.contains("proven under nested AMD SVM only"), "{text}");
    }

    #[test]
    fn a_builtin_guest_that_went_quiet_shows_the_vmm_log_and_names_the_machine_key() {
        let (_dir, m, starts) = machine("web");
        let text = BootFailure::new(
            &m,
            EngineKind::Builtin,
            Ending::Timeout(Duration::from_secs(600)),
            starts,
        )
        .message;
        assert!(text.contains("ssh did not answer within 600 s"), "{text}");
        assert!(text.contains("The engine said"), "{text}");
        // Still running: `up` would only say so; `reload` restarts it on QEMU.
        assert!(
            text.contains(
                "set `engine: qemu` under `machines: web:` in hvbox.yaml and run `hvbox reload web`"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_guests_serial_lines_are_shown_without_their_escape_sequences() {
        let (_dir, m, starts) = machine("default");
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(m.serial_log())
            .unwrap();
        std::io::Write::write_all(&mut log, b"\x1b[2J\x1b]0;pwned\x07login: \x9b\r\n").unwrap();
        let text = BootFailure::new(&m, EngineKind::Qemu, Ending::KernelPanic, starts).message;
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(
            // A byte that is not UTF-8 (an 8-bit CSI) is already a replacement.
            text.ends_with("Run /init as init process\n\\x1b[2J\\x1b]0;pwned\\x07login: \u{fffd}"),
            "{text}"
        );
    }

    #[test]
    fn qemu_failures_keep_to_the_logs() {
        let (_dir, m, starts) = machine("default");
        let text = BootFailure::new(&m, EngineKind::Qemu, Ending::KernelPanic, starts).message;
        assert!(text.contains("the guest kernel panicked"), "{text}");
        assert!(!text.contains("engine: qemu"), "{text}");
        assert!(!text.contains("The engine said"), "{text}");
    }
}
