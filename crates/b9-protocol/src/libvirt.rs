//! What b9 and its libvirt helper (`b9-libvirt`) say to each other.
//!
//! libvirt's client library pulls some fifty shared libraries into every
//! process that links it, costing each `b9` run ~10 ms before `main`. Only
//! the helper links it. b9 starts one helper per domain with
//! `--protocol VERSION` and talks over its stdin and stdout: one JSON
//! message per line, a request answered by exactly one reply. The helper
//! destroys its domain when its stdin closes (b9 ended, however it ended),
//! and libvirt destroys it when the helper's connection closes.
//!
//! Version 2 adds the remote path (docs/PROTOCOL.md#helper-remote): storage
//! volumes on a named pool (sparse upload and download, delete, list), and
//! a domain whose agent channel and console the helper relays over the
//! connection (`virDomainOpenChannel`, `virDomainOpenConsole`), so nothing
//! but libvirt's own transport joins b9 and a remote host.
//!
//! Version 3 adds volumes shared by every b9 process and client (the
//! appliance), used only once complete (`Shared`, `Busy`).
//!
//! Version 4 adds checkpoints of a local domain (`Snapshot`): a disk-only
//! external snapshot of the running domain into qcow2 overlays b9 created,
//! for the step cache's layers.
//!
//! Version 5 reports the progress of volume transfers: before its reply to
//! `Upload`, `Shared` or `Download` the helper may send any number of
//! `Progress` messages (bytes done of the volume's size, holes included).

use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The version of these messages; b9 and the helper must agree on it.
pub const VERSION: u32 = 5;

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
        /// Relay the agent channel and the console (the remote path);
        /// `None`: the XML names local files for both.
        relay: Option<Relay>,
    },
    /// Connect to `uri` (kept for the requests that follow) and check that
    /// the storage pool `pool` exists and is active.
    Pool {
        /// The libvirt connection URI.
        uri: String,
        /// The pool's name.
        pool: String,
    },
    /// Copy the local file `path` into the volume `name` of the pool
    /// (replacing one of that name), holes kept (only data extents cross
    /// the connection).
    Upload {
        /// The volume's name.
        name: String,
        /// The local file.
        path: String,
    },
    /// The volume `name` shared by every b9 (the appliance), holding the
    /// local file `path`: used only once complete (a marker volume
    /// `NAME.done` says so), else uploaded by the one process that creates
    /// the name, under a lock volume `OWNER-owns-NAME` (`owner`: this b9's
    /// run-volume prefix, so a killed uploader's lock is swept); a volume
    /// with neither marker nor lock is a dead upload's and is replaced.
    /// [`Reply::Volume`], or [`Reply::Busy`] while another b9 uploads it.
    Shared {
        /// The volume's name.
        name: String,
        /// The local file.
        path: String,
        /// The lock volume's prefix, `b9-<client>-<pid>`.
        owner: String,
    },
    /// Copy the volume `name` into the local file `path` (created or
    /// truncated), holes kept.
    Download {
        /// The volume's name.
        name: String,
        /// The local file.
        path: String,
    },
    /// Delete the volume `name` (done when it does not exist).
    Delete {
        /// The volume's name.
        name: String,
    },
    /// The names of the pool's volumes.
    Volumes,
    /// What `b9 farm` shows of the host of `uri`.
    Host {
        /// The libvirt connection URI.
        uri: String,
        /// The storage pool b9 uses there.
        pool: String,
    },
    /// Report the domain's state.
    State,
    /// Moves disks of the running domain on to existing qcow2 overlays (a
    /// disk-only external snapshot without metadata,
    /// `virDomainSnapshotCreateXML`): the file each wrote to keeps its
    /// state. [`Reply::Done`].
    Snapshot {
        /// Every disk of the domain, with its overlay or none (left out).
        disks: Vec<SnapshotDisk>,
    },
    /// Destroy the domain (done when it is already gone).
    Stop,
}

/// Where the helper relays a remote domain's agent channel and console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// A unix socket the helper listens on (in b9's private run
    /// directory); b9's agent client connects to it as to a local VM's.
    pub agent_socket: String,
    /// The virtio-serial port's name.
    pub port: String,
    /// The local file the console's output is appended to.
    pub console_log: String,
}

/// One disk of a [`Request::Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDisk {
    /// The disk's target in the domain XML (`vda`, `vdb`...).
    pub target: String,
    /// The local qcow2 file it goes on writing into; `None`: the disk is
    /// not part of the snapshot.
    pub overlay: Option<String>,
}

/// A host as `b9 farm` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// libvirt's version on the host (`major.minor.micro`).
    pub libvirt: String,
    /// The hypervisor's (QEMU's) version.
    pub qemu: String,
    /// CPUs.
    pub cpus: u32,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// Free memory in bytes.
    pub free_bytes: u64,
    /// The host offers KVM domains.
    pub kvm: bool,
    /// The pool's capacity and free space in bytes; `None` when missing.
    pub pool: Option<(u64, u64)>,
    /// Names of the b9 domains running.
    pub domains: Vec<String>,
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
    /// Done (`Pool`, `Download`, `Delete`, `Snapshot`).
    Done,
    /// The volume is there; its path on the host.
    Volume(String),
    /// Another b9 is uploading the shared volume: not to be used yet.
    Busy,
    /// The pool's volumes.
    Volumes(Vec<String>),
    /// The host's description.
    Host(HostInfo),
    /// Progress of the transfer a request started (not its reply: the
    /// reply follows).
    Progress {
        /// Bytes done (holes count as done once skipped).
        done: u64,
        /// Bytes in all: the file's or the volume's size.
        total: u64,
    },
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
    /// The storage pool is missing or inactive.
    Pool,
    /// A volume operation or transfer.
    Volume,
    /// Taking a snapshot of the domain's disks.
    Snapshot,
    /// The request itself (unknown, out of order).
    Protocol,
}

/// How often transfer progress is worth reporting: on the first call, when
/// another percent of the total is done, and at the end. The helper sends
/// `Progress` lines at this pace; b9's transfer events follow it too.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerPercent {
    last: Option<u64>,
}

impl PerPercent {
    /// Whether `done` of `total` bytes is to be reported (and remembered).
    pub fn due(&mut self, done: u64, total: u64) -> bool {
        let percent = done.saturating_mul(100) / total.max(1);
        if self.last == Some(percent) && done < total {
            return false;
        }
        self.last = Some(percent);
        true
    }
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
    fn progress_is_due_once_per_percent_and_at_the_end() {
        let mut pace = PerPercent::default();
        let due: Vec<u64> = (0..=1000u64).filter(|&d| pace.due(d, 1000)).collect();
        assert_eq!(due.len(), 101);
        assert_eq!((due[0], due[1], due[100]), (0, 10, 1000));
        // The end is always reported, also twice.
        assert!(pace.due(1000, 1000));
        // An empty transfer reports its start and its end.
        let mut empty = PerPercent::default();
        assert!(empty.due(0, 0) && empty.due(0, 0));
    }

    #[test]
    fn messages_round_trip_one_per_line() {
        let mut buf = Vec::new();
        let start = Request::Start {
            uri: "qemu:///system".into(),
            xml: "<domain>\n  <name>a\"b</name>\n</domain>".into(),
            relay: Some(Relay {
                agent_socket: "/r/agent.sock".into(),
                port: "org.b9.agent.0".into(),
                console_log: "/b/console.log".into(),
            }),
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
