//! The control socket: one line in, one line out.
//!
//! | request        | reply                       |
//! |----------------|-----------------------------|
//! | `status`       | `running`                   |
//! | `stop [SECS]`  | `ok`: ACPI power button now, hard stop after SECS (default 30) |
//! | `kill`         | `ok`: hard stop now         |

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Stop { grace: Duration },
    Kill,
}

pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(30);

pub fn parse(line: &str) -> Result<Request, String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("status"), None, _) => Ok(Request::Status),
        (Some("kill"), None, _) => Ok(Request::Kill),
        (Some("stop"), None, _) => Ok(Request::Stop {
            grace: DEFAULT_STOP_GRACE,
        }),
        (Some("stop"), Some(secs), None) => secs
            .parse()
            .map(|s| Request::Stop {
                grace: Duration::from_secs(s),
            })
            .map_err(|_| format!("stop takes a number of seconds, not {secs:?}")),
        _ => Err(format!("unknown request {:?}", line.trim())),
    }
}

/// A request with the channel its reply line goes back on.
pub type Envelope = (Request, Sender<String>);

/// Listen on `path`; requests reach the VMM's main loop through `requests`.
pub fn serve(path: &Path, requests: Sender<Envelope>) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                // A thread per client: one that connects and says nothing must not
                // keep a `stop` from the next one waiting.
                let requests = requests.clone();
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || serve_client(stream, &requests));
            }
        })?;
    Ok(())
}

fn serve_client(stream: UnixStream, requests: &Sender<Envelope>) {
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut writer = stream;
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let reply = match parse(&line) {
            Ok(request) => {
                let (tx, rx) = mpsc::channel();
                if requests.send((request, tx)).is_err() {
                    return;
                }
                rx.recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| "error: the VMM did not answer".into())
            }
            Err(e) => format!("error: {e}"),
        };
        if writeln!(writer, "{reply}").is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse("status"), Ok(Request::Status));
        assert_eq!(parse(" kill \n"), Ok(Request::Kill));
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
}
