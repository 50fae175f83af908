//! A QMP session with QEMU: one connection, several commands, events skipped, and a
//! file descriptor handed over with a command (SCM_RIGHTS) where QEMU needs one.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    /// Connect, read the greeting and leave capabilities negotiation mode.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Qmp> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("connecting to QEMU's control socket {}", socket.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut qmp = Qmp { stream, reader };
        let greeting = qmp.read_message().context("reading QMP greeting")?;
        if greeting.get("QMP").is_none() {
            bail!("QEMU's control socket greeted with {greeting}, not QMP");
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        Ok(self.stream.set_read_timeout(Some(timeout))?)
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
