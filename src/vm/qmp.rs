//! A small QMP client for the `qemu` backend: the `qapi` crate's command
//! and event types over a unix socket, with a reader thread so that every
//! command has a deadline and events (`SHUTDOWN`, `GUEST_PANICKED`) are
//! recorded whenever they arrive, even while nobody is waiting for a reply.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qapi::qmp::Event;
use qapi::Enum;
use serde_json::Value;

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QmpError {
    /// The socket failed (`what` names the step).
    #[error("cannot {what}: {source}")]
    Io {
        /// The step (`connect to QMP at PATH`, `send QMP command NAME`...).
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A command could not be encoded.
    #[error("cannot encode QMP command {name}: {source}")]
    Encode {
        /// The command.
        name: &'static str,
        /// The error.
        source: serde_json::Error,
    },
    /// The first message was not the greeting.
    #[error("unexpected first QMP message: {0}")]
    Unexpected(Value),
    /// No greeting in time.
    #[error("QMP did not greet within {0:?}")]
    NoGreeting(Duration),
    /// The connection closed before the greeting.
    #[error("QMP closed the connection before its greeting")]
    ClosedBeforeGreeting,
    /// No reply in time.
    #[error("QMP did not answer {name} within {timeout:?}")]
    NoAnswer {
        /// The command.
        name: &'static str,
        /// How long b9 waited.
        timeout: Duration,
    },
    /// The connection closed while waiting for a reply.
    #[error("QMP closed the connection during {0}")]
    Closed(&'static str),
    /// QEMU answered with an error.
    #[error("QMP {name} failed: {desc}")]
    Failed {
        /// The command.
        name: &'static str,
        /// QEMU's description.
        desc: String,
    },
    /// The reply could not be decoded.
    #[error("cannot decode the reply to {name}: {source}")]
    Decode {
        /// The command.
        name: &'static str,
        /// The error.
        source: serde_json::Error,
    },
}

/// A failed socket step `what`.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> QmpError {
    let what = what.into();
    move |source| QmpError::Io { what, source }
}

/// What QEMU's events said so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Events {
    /// A `GUEST_PANICKED` event arrived.
    pub panicked: bool,
    /// The reason of a `SHUTDOWN` event (`guest-reset`, `host-qmp-quit`...).
    pub shutdown: Option<String>,
    /// QEMU closed the monitor connection.
    pub closed: bool,
}

/// A QMP session past the capabilities negotiation.
pub(crate) struct Qmp {
    writer: UnixStream,
    replies: Receiver<Value>,
    events: Arc<Mutex<Events>>,
    reader: Option<JoinHandle<()>>,
    next_id: u64,
}

impl Qmp {
    /// Connects to the QMP socket at `path`, reads the greeting and
    /// negotiates capabilities, each step within `timeout`.
    pub(crate) fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path)
            .map_err(io(format!("connect to QMP at {}", path.display())))?;
        let read_half = stream.try_clone().map_err(io("clone the QMP socket"))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io("set the QMP write timeout"))?;
        let (tx, replies) = mpsc::channel();
        let events = Arc::new(Mutex::new(Events::default()));
        let reader = spawn_reader(read_half, tx, Arc::clone(&events))?;
        let mut qmp = Qmp {
            writer: stream,
            replies,
            events,
            reader: Some(reader),
            next_id: 0,
        };
        qmp.greeting(timeout)?;
        qmp.execute(&qapi::qmp::qmp_capabilities { enable: None }, timeout)?;
        Ok(qmp)
    }

    /// Waits for QEMU's `{"QMP": ...}` greeting.
    fn greeting(&mut self, timeout: Duration) -> Result<(), QmpError> {
        match self.replies.recv_timeout(timeout) {
            Ok(v) if v.get("QMP").is_some() => Ok(()),
            Ok(v) => Err(QmpError::Unexpected(v)),
            Err(RecvTimeoutError::Timeout) => Err(QmpError::NoGreeting(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(QmpError::ClosedBeforeGreeting),
        }
    }

    /// Runs `command` and decodes its reply, waiting at most `timeout`.
    pub(crate) fn execute<C: qapi::Command>(
        &mut self,
        command: &C,
        timeout: Duration,
    ) -> Result<C::Ok, QmpError> {
        // Replies to earlier commands that timed out are stale now.
        while self.replies.try_recv().is_ok() {}
        self.next_id += 1;
        let id = self.next_id;
        self.send(&qapi::Execute::with_id(command, id), C::NAME)?;
        let reply = self.reply_with_id(id, C::NAME, timeout)?;
        decode_reply::<C>(reply)
    }

    /// Writes one command line.
    fn send<T: serde::Serialize>(
        &mut self,
        message: &T,
        name: &'static str,
    ) -> Result<(), QmpError> {
        let mut line =
            serde_json::to_vec(message).map_err(|source| QmpError::Encode { name, source })?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(io(format!("send QMP command {name}")))
    }

    /// Waits for the reply carrying `id`.
    fn reply_with_id(
        &mut self,
        id: u64,
        name: &'static str,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(v) if v.get("id") == Some(&Value::from(id)) => return Ok(v),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => return Err(QmpError::NoAnswer { name, timeout }),
                Err(RecvTimeoutError::Disconnected) => return Err(QmpError::Closed(name)),
            }
        }
    }

    /// The events seen so far.
    pub(crate) fn events(&self) -> Events {
        lock(&self.events).clone()
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Locks the event record, also after a panic elsewhere (it stays valid).
fn lock(events: &Mutex<Events>) -> std::sync::MutexGuard<'_, Events> {
    events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the thread that reads QMP messages: replies (and the greeting)
/// go to `tx`, events into `events`.
fn spawn_reader(
    stream: UnixStream,
    tx: Sender<Value>,
    events: Arc<Mutex<Events>>,
) -> Result<JoinHandle<()>, QmpError> {
    std::thread::Builder::new()
        .name("b9-qmp".to_string())
        .spawn(move || read_messages(stream, &tx, &events))
        .map_err(io("start the QMP reader thread"))
}

/// The reader thread's loop, until QEMU closes the socket.
fn read_messages(stream: UnixStream, tx: &Sender<Value>, events: &Mutex<Events>) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            tracing::debug!("ignoring a QMP line that is not JSON: {line}");
            continue;
        };
        if message.get("event").is_some() {
            record_event(events, message);
        } else if tx.send(message).is_err() {
            break;
        }
    }
    lock(events).closed = true;
}

/// Notes the events the backend cares about.
fn record_event(events: &Mutex<Events>, message: Value) {
    tracing::debug!("QMP event: {message}");
    let (name, reason) = match serde_json::from_value::<Event>(message.clone()) {
        Ok(Event::GUEST_PANICKED { .. }) => ("GUEST_PANICKED", None),
        Ok(Event::SHUTDOWN { data, .. }) => ("SHUTDOWN", Some(data.reason.name().to_string())),
        Ok(_) => return,
        // The crate's schema is newer than some QEMUs: fall back to the name.
        Err(_) => untyped_event(&message),
    };
    let mut events = lock(events);
    match name {
        "GUEST_PANICKED" => events.panicked = true,
        "SHUTDOWN" => events.shutdown = Some(reason.unwrap_or_else(|| "unknown".to_string())),
        _ => {}
    }
}

/// An event's name and shutdown reason read from the JSON directly.
fn untyped_event(message: &Value) -> (&str, Option<String>) {
    let name = message.get("event").and_then(Value::as_str).unwrap_or("");
    let reason = message
        .pointer("/data/reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    (name, reason)
}

/// A reply's `return` value decoded, or its `error` as text.
fn decode_reply<C: qapi::Command>(reply: Value) -> Result<C::Ok, QmpError> {
    if let Some(error) = reply.get("error") {
        let desc = error.get("desc").and_then(Value::as_str).unwrap_or("");
        return Err(QmpError::Failed {
            name: C::NAME,
            desc: desc.to_string(),
        });
    }
    let value = reply.get("return").cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|source| QmpError::Decode {
        name: C::NAME,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_untyped_events_are_recorded() {
        let events = Mutex::new(Events::default());
        let shutdown = serde_json::json!({"event": "SHUTDOWN",
            "data": {"guest": true, "reason": "guest-reset"},
            "timestamp": {"seconds": 1, "microseconds": 2}});
        record_event(&events, shutdown);
        assert_eq!(lock(&events).shutdown.as_deref(), Some("guest-reset"));
        // A payload this crate's schema does not know still counts.
        let panic = serde_json::json!({"event": "GUEST_PANICKED",
            "data": {"action": "something-new"},
            "timestamp": {"seconds": 1, "microseconds": 2}});
        record_event(&events, panic);
        assert!(lock(&events).panicked);
    }

    #[test]
    fn replies_decode_or_report_errors() {
        let ok = serde_json::json!({"return": {"running": true, "status": "running"}, "id": 1});
        let info = decode_reply::<qapi::qmp::query_status>(ok).unwrap();
        assert!(info.running);
        let err = serde_json::json!({"error": {"class": "GenericError", "desc": "nope"}});
        let msg = decode_reply::<qapi::qmp::query_status>(err)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope"), "{msg}");
    }
}
