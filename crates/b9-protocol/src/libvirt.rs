//! What b9 and its libvirt helper (`b9-libvirt`) say to each other.
//!
//! libvirt's client library pulls some fifty shared libraries into every
//! process that links it, costing each `b9` run ~10 ms before `main`. Only
//! the helper links it. b9 starts one helper per domain with
//! `--protocol VERSION` and talks over its stdin and stdout: one JSON
//! message per line, a request answered by exactly one reply. The helper
//! destroys its domain when its stdin closes (b9 ended, however it ended),
//! and libvirt destroys it when the helper's connection closes.

use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version of these messages; b9 and the helper must agree on it.
pub const VERSION: u32 = 1;

/// The helper's executable name, found next to b9's.
pub const HELPER: &str = "b9-libvirt";

/// A request from b9.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Connect to `uri` and create the transient domain described by `xml`.
    Start {
        /// The libvirt connection URI.
        uri: String,
        /// The domain XML.
        xml: String,
    },
    /// Report the domain's state.
    State,
    /// Destroy the domain (done when it is already gone).
    Stop,
}

/// The helper's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The domain runs.
    Started,
    /// The domain's state.
    State(DomainState),
    /// The domain is destroyed or was gone.
    Stopped,
    /// The request failed.
    Failed {
        /// What failed.
        stage: Stage,
        /// libvirt's message.
        message: String,
    },
}

/// A domain's state as b9 needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainState {
    /// Running (or paused, blocked...: not ended).
    Running,
    /// The guest panicked (the domain is kept, crashed).
    Crashed,
    /// The domain ended or cannot be reached; why.
    Gone(String),
}

/// The step a [`Reply::Failed`] refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Opening the connection.
    Connect,
    /// Creating the domain.
    Create,
    /// Destroying the domain.
    Destroy,
    /// The request itself (unknown, out of order).
    Protocol,
}

/// Writes one message as a line and flushes it.
pub fn send<T: Serialize>(out: &mut impl Write, message: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads one message; `None` at the end of the stream.
pub fn receive<T: DeserializeOwned>(input: &mut impl BufRead) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_one_per_line() {
        let mut buf = Vec::new();
        let start = Request::Start {
            uri: "qemu:///system".into(),
            xml: "<domain>\n  <name>a\"b</name>\n</domain>".into(),
        };
        send(&mut buf, &start).unwrap();
        send(
            &mut buf,
            &Reply::State(DomainState::Gone("shut off".into())),
        )
        .unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 2);
        let mut input = &buf[..];
        assert_eq!(receive::<Request>(&mut input).unwrap(), Some(start));
        assert_eq!(
            receive::<Reply>(&mut input).unwrap(),
            Some(Reply::State(DomainState::Gone("shut off".into())))
        );
        assert_eq!(receive::<Reply>(&mut input).unwrap(), None);
        assert!(receive::<Reply>(&mut &b"{\"Nope\":1}\n"[..]).is_err());
    }
}
