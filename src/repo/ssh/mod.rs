//! SSH/SFTP file transport for remote shared-image repositories.
//!
//! The original b9 runs `ssh` and `rsync` (docs/COMPATIBILITY.md#remotes); this module talks
//! SSH and SFTP itself (`russh` + `russh-sftp`) so no external process is run.
//! The rest of b9 is synchronous, so [`Session`] owns a current-thread tokio
//! runtime and every method blocks until its operation has finished.
//!
//! Transfers are pipelined: up to [`IN_FLIGHT`] SFTP requests of up to
//! [`CHUNK`] bytes are outstanding at any time. Files appear under their final
//! name only when complete (upload to `<name>.b9-part-<random>`, then rename).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod known_hosts;
mod session;
mod transfer;

pub use session::Session;

/// Largest payload of one SFTP read or write request (OpenSSH's `sftp-server`
/// accepts messages up to 256 KiB; its read limit is 256 KiB minus 1 KiB).
pub const CHUNK: u32 = 255 * 1024;
/// How many SFTP read or write requests are outstanding at once.
pub const IN_FLIGHT: usize = 48;
/// Time allowed for the TCP connection, SSH handshake and authentication.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for any single SFTP request to be answered.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// Minimum time between two progress callbacks.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Where and how to connect (from a `[<id>-repo]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Host name or address (`ssh_remote_host`).
    pub host: String,
    /// TCP port (`ssh_remote_port`).
    pub port: u16,
    /// Login user (`ssh_remote_user`).
    pub user: String,
    /// Unencrypted OpenSSH private key (`ssh_priv_key_file`).
    pub key_file: PathBuf,
    /// known_hosts file consulted and updated by the host key policy,
    /// e.g. `~/.b9/known_hosts`.
    pub known_hosts: PathBuf,
    /// What to do with the server's host key.
    pub host_key_policy: HostKeyPolicy,
}

impl Remote {
    /// `user@host:port`, as used in messages.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// How the server's host key is checked against [`Remote::known_hosts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Unknown host: record its key in known_hosts and continue; a key that
    /// differs from the recorded one is an error.
    #[default]
    TrustOnFirstUse,
    /// Unknown host or changed key: error.
    Strict,
    /// Accept any key without looking at known_hosts (what the original b9
    /// does with `StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null`).
    AcceptAny,
}

/// One entry of a remote directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// File name (no directory part).
    pub name: String,
    /// Size in bytes (0 if the server did not say).
    pub size: u64,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// Errors of the SSH transport.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// TCP connection, SSH handshake or timeout failure before authentication.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// `user@host:port`.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// The private key file cannot be read or decoded.
    #[error("cannot load SSH private key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The server rejected the key.
    #[error("authentication with key {} failed for {target}", key.display())]
    Auth {
        /// The key file.
        key: PathBuf,
        /// `user@host:port`.
        target: String,
    },
    /// The host key differs from the one recorded in known_hosts.
    #[error(
        "host key of {host}:{port} changed (known_hosts line {line} of {}); \
         if the change is expected, remove that line",
        known_hosts.display()
    )]
    HostKeyChanged {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// The known_hosts file.
        known_hosts: PathBuf,
        /// 1-based line number of the recorded key.
        line: usize,
    },
    /// Strict policy and the host is not in known_hosts.
    #[error(
        "host key of {host}:{port} is unknown: not in {} (strict host key checking)",
        known_hosts.display()
    )]
    HostKeyUnknown {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// The known_hosts file.
        known_hosts: PathBuf,
    },
    /// known_hosts cannot be read or written.
    #[error("known_hosts file {}: {reason}", path.display())]
    KnownHosts {
        /// The known_hosts file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The connection broke or the SFTP subsystem failed after authentication.
    #[error("SSH connection to {target}: {reason}")]
    Connection {
        /// `user@host:port`.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// An SFTP operation on a remote path failed.
    #[error("remote path {path}: {reason}")]
    Remote {
        /// The remote path.
        path: String,
        /// What went wrong (the server's status or a transport error).
        reason: String,
    },
    /// The server listed a name that is not one plain file name (`..`,
    /// `a/b`, an absolute path, NUL): joined to a local directory it would
    /// lead outside it.
    #[error(
        "the server listed {name:?} in {dir}, which is not a plain file name; \
         refusing to use this listing (the server is broken or hostile)"
    )]
    BadName {
        /// The listed directory.
        dir: String,
        /// The name as listed.
        name: String,
    },
    /// Ctrl-C or SIGTERM stopped the operation.
    #[error("interrupted by Ctrl-C or SIGTERM")]
    Interrupted,
    /// A local file operation failed.
    #[error("local file {}: {source}", path.display())]
    Local {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn remote_err(path: &str, e: impl fmt::Display) -> SshError {
    SshError::Remote {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn local_err(path: &Path, source: std::io::Error) -> SshError {
    SshError::Local {
        path: path.to_owned(),
        source,
    }
}
