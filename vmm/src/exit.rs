//! Why a VM stopped, and the process exit code `hvbox vmm run` reports for it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest powered off (ACPI S5).
    Poweroff,
    /// The guest asked for a reset (i8042 reset line, or a KVM reset event).
    Reboot,
    /// The guest crashed: triple fault (KVM_EXIT_SHUTDOWN) or a crash event.
    Crash(String),
    /// The run's time limit passed with the guest still running.
    Timeout,
    /// The host stopped the VM without the guest's cooperation (control socket
    /// `kill`, or a `stop` whose grace period ran out).
    HardStop,
    /// The machine's state was saved (control socket `save stop`): it continues
    /// from that state, not from its disk.
    Saved,
}

impl ExitReason {
    /// Documented exit codes: 0 poweroff or state saved, 3 reboot, 4 crash, 5 timeout, 6 hard stop
    /// (1 is a host error, 2 bad arguments).
    pub fn exit_code(&self) -> u8 {
        match self {
            ExitReason::Poweroff => 0,
            ExitReason::Reboot => 3,
            ExitReason::Crash(_) => 4,
            ExitReason::Timeout => 5,
            ExitReason::HardStop => 6,
            ExitReason::Saved => 0,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ExitReason::Poweroff => f.write_str("poweroff"),
            ExitReason::Reboot => f.write_str("reboot"),
            ExitReason::Crash(detail) => write!(f, "guest crash: {detail}"),
            ExitReason::Timeout => f.write_str("timeout"),
            ExitReason::HardStop => f.write_str("stopped by the host"),
            ExitReason::Saved => f.write_str("state saved"),
        }
    }
}
