//! A QMP session with QEMU: one connection, several commands, events skipped, and a
//! file descriptor handed over with a command (SCM_RIGHTS) where QEMU needs one.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    /// Events that came while an answer was awaited, for [`Qmp::wait_event`].
    events: VecDeque<Value>,
    timeout: Duration,
}

impl Qmp {
    /// Connect, read the greeting and leave capabilities negotiation mode.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Qmp> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to QEMU's control socket {}", socket.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut qmp = Qmp {
            stream,
            reader,
            events: VecDeque::new(),
            timeout,
        };
        let greeting = qmp.read_message().context("reading QMP greeting")?;
        if greeting.get("QMP").is_none() {
            bail!("QEMU's control socket greeted with {greeting}, not QMP");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.timeout = timeout;
        Ok(self.stream.set_read_timeout(Some(timeout))?)
    }

    /// The first event `wanted` accepts, from those already seen or those coming
    /// before `deadline`; `None` at the deadline. Other events are dropped.
    pub fn wait_event(
        &mut self,
        wanted: &dyn Fn(&Value) -> bool,
        deadline: Instant,
    ) -> Result<Option<Value>> {
        while let Some(event) = self.events.pop_front() {
            if wanted(&event) {
                return Ok(Some(event));
            }
        }
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.read_message() {
                Ok(m) if m.get("event").is_some() && wanted(&m) => break Ok(Some(m)),
                Ok(_) => {}
                Err(e) if timed_out(&e) => break Ok(None),
                Err(e) => break Err(e.context("waiting for an event from QEMU")),
            }
        };
        self.stream.set_read_timeout(Some(self.timeout))?;
        result
    }

    /// Run `command` and return its `return` value; QEMU's `error` is an error with
    /// its description.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let line = request(command, arguments);
        self.stream
            .write_all(line.as_bytes())
            .with_context(|| format!("sending {command} to QEMU"))?;
        self.answer(command)
    }

    /// [`Qmp::execute`] with `fd` passed alongside the command (for `getfd`), in the
    /// same message as QEMU requires.
    pub fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        fd: RawFd,
    ) -> Result<Value> {
        let line = request(command, arguments);
        let sent = self
            .stream
            .send_with_fd(line.as_bytes(), fd)
            .map_err(|e| anyhow::anyhow!("sending {command} with a file to QEMU: {e}"))?;
        // The descriptor went with the first bytes; the rest is plain text.
        self.stream.write_all(&line.as_bytes()[sent..])?;
        self.answer(command)
    }

    /// The reply to the command just sent, skipping asynchronous events.
    fn answer(&mut self, command: &str) -> Result<Value> {
        loop {
            let message = self
                .read_message()
                .with_context(|| format!("waiting for QEMU's answer to {command}"))?;
            if let Some(ret) = message.get("return") {
                return Ok(ret.clone());
            }
            if let Some(error) = message.get("error") {
                let desc = error["desc"].as_str().unwrap_or("no reason given");
                bail!("QEMU refused {command}: {desc}");
            }
            if message.get("event").is_some() {
                self.events.push_back(message);
            }
        }
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QEMU closed its control socket");
        }
        serde_json::from_str(&line).with_context(|| format!("QEMU sent {line:?}, not JSON"))
    }
}

fn timed_out(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    })
}

fn request(command: &str, arguments: Option<Value>) -> String {
    let mut msg = json!({ "execute": command });
    if let Some(arguments) = arguments {
        msg["arguments"] = arguments;
    }
    let mut line = msg.to_string();
    line.push('\n');
    line
}

/// Where a migration stands, from a `query-migrate` answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    Completed,
    Failed(String),
    /// Still going (or not started): QEMU's status word.
    Busy(String),
}

pub fn migration_status(reply: &Value) -> Migration {
    match reply["status"].as_str() {
        Some("completed") => Migration::Completed,
        Some("failed") | Some("cancelled") => Migration::Failed(
            reply["error-desc"]
                .as_str()
                .unwrap_or("QEMU gave no reason")
                .to_string(),
        ),
        Some(other) => Migration::Busy(other.to_string()),
        None => Migration::Busy("none".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line() {
        assert_eq!(request("stop", None), "{\"execute\":\"stop\"}\n");
        let getfd = request("getfd", Some(json!({"fdname": "st"})));
        assert_eq!(
            serde_json::from_str::<Value>(&getfd).unwrap(),
            json!({"execute": "getfd", "arguments": {"fdname": "st"}})
        );
        assert!(getfd.ends_with('\n') && !getfd.trim_end().contains('\n'));
    }

    #[test]
    fn query_migrate_answers_are_read() {
        let s = |v: Value| migration_status(&v);
        assert_eq!(s(json!({"status": "completed"})), Migration::Completed);
        assert_eq!(
            s(
                json!({"status": "failed", "error-desc": "Unable to write to file: No space left on device"})
            ),
            Migration::Failed("Unable to write to file: No space left on device".into())
        );
        assert_eq!(
            s(json!({"status": "active"})),
            Migration::Busy("active".into())
        );
        // Before any migration QEMU answers with an empty object.
        assert_eq!(s(json!({})), Migration::Busy("none".into()));
    }
}
