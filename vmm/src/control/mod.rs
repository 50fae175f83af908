//! The control socket: one line in, one line out.
//!
//! | request        | reply                       |
//! |----------------|-----------------------------|
//! | `status`       | `running`, then `; paused: disk full on PATH (N free)` for each disk whose I/O waits for space |
//! | `stats`        | `exits N: io-serial N, mmio-ecam N, ...`: the vCPUs' exits to the VMM so far, by reason (see [`crate::exit_counts`]) |
//! | `resume`       | `ok`: retry the I/O that waits for space now, not at its next one-second tick |
//! | `stop [SECS]`  | `ok`: ACPI power button now, hard stop after SECS (default 30, at most a day) |
//! | `kill`         | `ok`: hard stop now         |
//! | `save stop`    | `ok`: the machine's whole state is in the file sent with the request; the VMM then exits (status 0) |
//! | `save continue`| `ok`: the same, and the guest runs on (a live snapshot) |
//! | `save pause`   | `ok`: the same, and the guest stays paused until `continue` (while its disks are copied) |
//! | `continue`     | `ok`: a guest paused by `save pause` runs on; `error: …` when none is |
//!
//! `save` comes with the descriptor of the file to write, open for writing, in the
//! same message (SCM_RIGHTS): the VMM opens no files once the guest runs.
//! A request the VMM cannot take is answered `error: WHY`. How the socket is served,
//! and the bounds that keep clients from exhausting the VMM, are in [`server`].

mod server;

pub use server::{serve, serve_client, serve_with, Limits};

use std::fs::File;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    /// The vCPUs' exits so far, by reason.
    Stats,
    Resume,
    Stop {
        grace: Duration,
    },
    Kill,
    /// Write the machine's state into `to` (attached by the server from the
    /// descriptor that came with the line), then stop, go on, or hold the guest.
    Save {
        then: AfterSave,
        to: Option<StateFile>,
    },
    /// Let a guest held by `save pause` run on.
    Continue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSave {
    Stop,
    Continue,
    /// Stay paused until a `continue` request.
    Pause,
}

/// The file a `save` writes, as the client sent it.
#[derive(Debug, Clone)]
pub struct StateFile(pub Arc<File>);

impl PartialEq for StateFile {
    fn eq(&self, other: &StateFile) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for StateFile {}

pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(30);
/// The longest grace `stop` takes. Longer than any shutdown needs, and far below
/// where adding it to the clock would overflow (which used to panic the VMM).
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

pub fn parse(line: &str) -> Result<Request, String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("status"), None, _) => Ok(Request::Status),
        (Some("stats"), None, _) => Ok(Request::Stats),
        (Some("kill"), None, _) => Ok(Request::Kill),
        (Some("continue"), None, _) => Ok(Request::Continue),
        (Some("resume"), None, _) => Ok(Request::Resume),
        (Some("stop"), None, _) => Ok(Request::Stop {
            grace: DEFAULT_STOP_GRACE,
        }),
        (Some("stop"), Some(secs), None) => parse_grace(secs).map(|grace| Request::Stop { grace }),
        (Some("save"), Some(then @ ("stop" | "continue" | "pause")), None) => Ok(Request::Save {
            then: match then {
                "stop" => AfterSave::Stop,
                "pause" => AfterSave::Pause,
                _ => AfterSave::Continue,
            },
            to: None,
        }),
        _ => Err(format!("unknown request {:?}", line.trim())),
    }
}

fn parse_grace(secs: &str) -> Result<Duration, String> {
    let max = MAX_STOP_GRACE.as_secs();
    match secs.parse::<u64>() {
        Ok(s) if s <= max => Ok(Duration::from_secs(s)),
        Ok(_) => Err(format!(
            "stop takes at most {max} seconds (a day), not {secs}"
        )),
        Err(_) => Err(format!("stop takes a number of seconds, not {secs:?}")),
    }
}

/// A request with the channel its reply line goes back on.
pub type Envelope = (Request, Sender<String>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse("status"), Ok(Request::Status));
        assert_eq!(parse(" kill \n"), Ok(Request::Kill));
        assert_eq!(parse("resume"), Ok(Request::Resume));
        assert_eq!(parse("stats"), Ok(Request::Stats));
        assert!(parse("stats now").is_err());
        assert_eq!(
            parse("save continue"),
            Ok(Request::Save {
                then: AfterSave::Continue,
                to: None
            })
        );
        assert!(parse("save").is_err());
        assert_eq!(parse("continue"), Ok(Request::Continue));
        assert!(parse("save later").is_err());
        assert_eq!(
            parse("stop"),
            Ok(Request::Stop {
                grace: DEFAULT_STOP_GRACE
            })
        );
        assert_eq!(
            parse("stop 5"),
            Ok(Request::Stop {
                grace: Duration::from_secs(5)
            })
        );
        assert!(parse("stop soon").is_err());
        assert!(parse("reboot").is_err());
    }

    #[test]
    fn a_grace_past_a_day_is_refused_not_added_to_the_clock() {
        assert_eq!(
            parse("stop 86400"),
            Ok(Request::Stop {
                grace: MAX_STOP_GRACE
            })
        );
        assert_eq!(
            parse("stop 18446744073709551615"),
            Err("stop takes at most 86400 seconds (a day), not 18446744073709551615".into())
        );
        // Past u64: not a number of seconds at all.
        assert!(parse("stop 99999999999999999999999")
            .unwrap_err()
            .contains("number of seconds"));
        assert!(parse("stop -1").is_err());
    }
}
