//! The host <-> agent protocol over the virtio-serial port (versioned,
//! framed; the libguestfs idea).
//!
//! A frame is a 4-byte big-endian length `n` (at most [`MAX_FRAME`]), a
//! kind byte and `n - 1` payload bytes. Kind [`Kind::Control`] carries one
//! JSON-encoded [`ToHost`] or [`ToAgent`] message; the data kinds carry raw
//! bytes of a command's stdout / stderr (agent -> host) or of the
//! interactive session's stdin (host -> agent), so output is never
//! re-encoded.
//!
//! A session: the agent sends [`ToHost::Hello`] as soon as its port is open;
//! the host answers with [`ToAgent::Job`] (or [`ToAgent::Abort`] when the
//! versions differ); the agent reports progress and ends with
//! [`ToHost::Done`] or [`ToHost::Failed`], after which the host stops the VM.
//!
//! Checkpoints (version 3): after each command listed in
//! [`Job::pause_after`] that did not end the script, the agent syncs the
//! job's mounted disk file systems and freezes those without a journal
//! (`FIFREEZE`; a synced journaled one is consistent as after a power
//! cut), sends [`ToHost::Paused`] and waits for [`ToAgent::Continue`];
//! then it thaws them and goes on. The host keeps the disks' state at that
//! point (the step cache's per-command layers). See docs/PROTOCOL.md.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The protocol version; both sides must agree exactly.
pub const VERSION: u32 = 3;

/// The name of the agent's virtio-serial port.
pub const PORT_NAME: &str = "org.b9.agent.0";

/// The largest frame accepted (length field), so a broken peer cannot make
/// the reader allocate without bound.
pub const MAX_FRAME: u32 = 16 << 20;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A JSON control message.
    Control = 0,
    /// Bytes a command wrote to stdout.
    Stdout = 1,
    /// Bytes a command wrote to stderr.
    Stderr = 2,
    /// Bytes for the interactive command's stdin (host -> agent); an empty
    /// payload closes stdin.
    Stdin = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Control,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Stdin,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: Kind,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Writes one frame (length, kind, payload) and flushes.
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len() + 1)
        .ok()
        .filter(|n| *n <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(payload.len() + 5);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Writes a control message.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let json = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_frame(w, Kind::Control, &json)
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a frame.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    if !read_exact_or_eof(r, &mut len)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_FRAME {
        return Err(bad(format!("frame length {len} out of range")));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    let kind = Kind::from_byte(body[0]).ok_or_else(|| bad(format!("frame kind {}", body[0])))?;
    body.remove(0);
    Ok(Some(Frame {
        kind,
        payload: body,
    }))
}

/// Decodes a control frame's JSON.
pub fn decode<T: for<'de> Deserialize<'de>>(frame: &Frame) -> io::Result<T> {
    if frame.kind != Kind::Control {
        return Err(bad(format!(
            "expected a control frame, got {:?}",
            frame.kind
        )));
    }
    serde_json::from_slice(&frame.payload).map_err(|e| bad(format!("bad message: {e}")))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Fills `buf`; false if the stream ended before the first byte.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Messages from the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToHost {
    /// The agent is up.
    Hello {
        /// Its protocol version.
        version: u32,
        /// The guest kernel release.
        kernel: String,
    },
    /// A progress message of the agent itself (mounts, module loading).
    Log {
        /// The message.
        line: String,
    },
    /// Command `index` of the job started.
    Started {
        /// Index into [`Job::commands`].
        index: usize,
    },
    /// Command `index` ended.
    Exited {
        /// Index into [`Job::commands`].
        index: usize,
        /// Exit code, or 128 + signal number.
        status: i32,
        /// Wall time in milliseconds.
        millis: u64,
    },
    /// A file system was resized.
    Resized {
        /// The disk's serial.
        serial: String,
        /// The new file-system size in bytes.
        bytes: u64,
        /// The file system was copied onto the scratch disk (a shrink): the
        /// host truncates that disk to `bytes` and uses it instead.
        on_scratch: bool,
    },
    /// Command `index` ended and is listed in [`Job::pause_after`]: the
    /// disks' file systems are synced (frozen when without a journal) until
    /// [`ToAgent::Continue`].
    Paused {
        /// Index into [`Job::commands`].
        index: usize,
    },
    /// Everything was done, synced and unmounted.
    Done,
    /// The job could not be carried out (not a command failure: those are
    /// [`ToHost::Exited`]); everything possible was unmounted.
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// Messages from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAgent {
    /// What to do.
    Job(Box<Job>),
    /// Stop: the versions differ or the host gives up.
    Abort {
        /// Why.
        reason: String,
    },
    /// The host kept the disks' state after a [`ToHost::Paused`]: thaw
    /// and go on.
    Continue,
    /// The interactive terminal changed size.
    WindowSize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
}

/// Everything the agent does in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Disks to mount, in the order given (the host sorts: `/` first, then
    /// by depth).
    pub disks: Vec<DiskMount>,
    /// 9p shares to mount after the disks.
    pub shares: Vec<ShareMount>,
    /// The commands, run in order chrooted into the `/` disk.
    pub commands: Vec<Command>,
    /// File-system grows before the commands (a source's `Resize`).
    #[serde(default)]
    pub grow_first: Vec<FsResize>,
    /// File-system resizes after the commands succeeded.
    pub resizes: Vec<FsResize>,
    /// Whether a network interface is present and should be configured.
    pub network: Option<Network>,
    /// Run the single command on a pseudo-terminal, forwarding stdin.
    pub interactive: bool,
    /// Indices of commands after which the agent pauses with the file
    /// systems frozen (a checkpoint), ascending.
    #[serde(default)]
    pub pause_after: Vec<usize>,
}

/// A disk and where it is mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskMount {
    /// The virtio-blk serial the host gave the disk.
    pub serial: String,
    /// The absolute mount point in the guest's new root (`/` = the root).
    pub mount_point: String,
}

/// A host directory shared over 9p.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMount {
    /// The 9p mount tag.
    pub tag: String,
    /// The absolute mount point in the new root.
    pub mount_point: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Where a command's output goes (`CmdVerbosity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// stdout and stderr streamed to the host.
    All,
    /// stdout discarded, stderr streamed.
    StderrOnly,
    /// both discarded.
    Nothing,
}

/// One `Run` with its context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The space-joined words, given to `bash -c` (`/bin/sh -c` without bash).
    pub line: String,
    /// Working directory (`In`), absolute in the new root; `None` = `/`
    /// (or the user's home).
    pub dir: Option<String>,
    /// The user (`As`), looked up in the image's /etc/passwd; `None` = root.
    pub user: Option<String>,
    /// `IgnoreErrors True`: a failure does not end the script.
    pub ignore_errors: bool,
    /// `Verbosity`.
    pub output: Output,
}

/// A file-system resize after the script.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsResize {
    /// The serial of the disk holding the file system.
    pub serial: String,
    /// What to do.
    pub how: ResizeHow,
}

/// The kinds of file-system resize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeHow {
    /// Grow (online) or shrink (by copying into `scratch`) to this many bytes.
    To {
        /// The target size in bytes.
        bytes: u64,
        /// Serial of the scratch disk used when shrinking.
        scratch: String,
    },
    /// Copy into a minimal file system on `scratch`, plus `extra` bytes.
    Minimum {
        /// Bytes added to the minimum (`ShrinkToMinimumAndIncrease`).
        extra: u64,
        /// Serial of the scratch disk (as large as the original).
        scratch: String,
    },
}

/// Static network settings (QEMU user networking or a libvirt network).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Use DHCP instead of the static address.
    pub dhcp: bool,
    /// The guest address with prefix length, e.g. `10.0.2.15/24`.
    pub address: String,
    /// The default gateway.
    pub gateway: String,
    /// The DNS server written to the image's resolv.conf while the script runs.
    pub dns: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        send(&mut buf, &ToHost::Done).unwrap();
        write_frame(&mut buf, Kind::Stdout, b"hi\n").unwrap();
        let mut r = &buf[..];
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(decode::<ToHost>(&f).unwrap(), ToHost::Done);
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, &f.payload[..]), (Kind::Stdout, &b"hi\n"[..]));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn hostile_frames_are_errors() {
        for bytes in [
            &[0u8, 0, 0, 0][..],
            &[0xff, 0xff, 0xff, 0xff, 0][..],
            &[0, 0, 0, 2, 9, 0][..],
            &[0, 0, 0, 9, 0][..],
        ] {
            let mut r = bytes;
            assert!(read_frame(&mut r).is_err(), "{bytes:?}");
        }
    }
}
