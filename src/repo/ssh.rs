//! SSH/SFTP file transport for remote shared-image repositories.
//!
//! The original b9 runs `ssh` and `rsync` (SPEC Part B §8.4); this module talks
//! SSH and SFTP itself (`russh` + `russh-sftp`) so no external process is run.
//! The rest of b9 is synchronous, so [`Session`] owns a current-thread tokio
//! runtime and every method blocks until its operation has finished.
//!
//! Transfers are pipelined: up to [`IN_FLIGHT`] SFTP requests of up to
//! [`CHUNK`] bytes are outstanding at any time. Files appear under their final
//! name only when complete (upload to `<name>.b9-part-<random>`, then rename).

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{self, PrivateKeyWithHashAlg};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::task::JoinHandle;

use crate::repo::is_safe_component;

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

/// Outcome of the host key check, kept for a precise error message.
#[derive(Debug)]
enum KeyVerdict {
    Changed(usize),
    Unknown,
    KnownHostsError(String),
}

struct Client {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl Client {
    fn check(&self, key: &keys::PublicKey) -> Result<(), KeyVerdict> {
        if self.policy == HostKeyPolicy::AcceptAny {
            return Ok(());
        }
        let known = if self.known_hosts.exists() {
            keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts)
        } else {
            Ok(false)
        };
        match known {
            Ok(true) => Ok(()),
            Err(keys::Error::KeyChanged { line }) => Err(KeyVerdict::Changed(line)),
            Err(e) => Err(KeyVerdict::KnownHostsError(e.to_string())),
            Ok(false) if self.policy == HostKeyPolicy::Strict => Err(KeyVerdict::Unknown),
            Ok(false) => self
                .learn(key)
                .map_err(|e| KeyVerdict::KnownHostsError(e.to_string())),
        }
    }
}

impl Client {
    /// Appends `[host]:port key` (or `host key` for port 22) to known_hosts,
    /// creating the file and its directory when missing.
    fn learn(&self, key: &keys::PublicKey) -> Result<(), Box<dyn std::error::Error>> {
        use std::io::{Seek, SeekFrom};
        if let Some(parent) = self.known_hosts.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.known_hosts)?;
        let mut line = String::new();
        if file.seek(SeekFrom::End(0))? > 0 {
            file.seek(SeekFrom::End(-1))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                line.push('\n');
            }
        }
        if self.port == 22 {
            line.push_str(&self.host);
        } else {
            line.push_str(&format!("[{}]:{}", self.host, self.port));
        }
        line.push(' ');
        line.push_str(&key.to_openssh()?);
        line.push('\n');
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match self.check(&server_public_key.public_key()) {
            Ok(()) => Ok(true),
            Err(v) => {
                if let Ok(mut slot) = self.verdict.lock() {
                    *slot = Some(v);
                }
                Ok(false)
            }
        }
    }
}

/// One authenticated SSH connection with an SFTP channel.
pub struct Session {
    // Field order matters for drop: SFTP, then SSH, then the runtime.
    sftp: Arc<RawSftpSession>,
    ssh: client::Handle<Client>,
    target: String,
    rt: tokio::runtime::Runtime,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, checks the host key according to the policy, authenticates
    /// with the private key (OpenSSH format, unencrypted; ed25519, ECDSA or
    /// RSA) and opens the SFTP subsystem. Gives up after [`CONNECT_TIMEOUT`].
    pub fn connect(remote: &Remote) -> Result<Session, SshError> {
        let target = remote.target();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SshError::Connect {
                target: target.clone(),
                reason: format!("cannot start I/O runtime: {e}"),
            })?;
        let key = keys::load_secret_key(&remote.key_file, None).map_err(|e| SshError::Key {
            path: remote.key_file.clone(),
            reason: e.to_string(),
        })?;
        let (ssh, sftp) = rt.block_on(async {
            match tokio::time::timeout(CONNECT_TIMEOUT, connect_async(remote, key)).await {
                Ok(r) => r,
                Err(_) => Err(SshError::Connect {
                    target: target.clone(),
                    reason: format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()),
                }),
            }
        })?;
        Ok(Session {
            sftp: Arc::new(sftp),
            ssh,
            target,
            rt,
        })
    }

    /// Runs `fut` to completion on the session's runtime, failing fast with
    /// [`SshError::Connection`] when the SSH connection is (or becomes)
    /// closed: a dead connection must not leave requests waiting for their
    /// timeouts; and with [`SshError::Interrupted`] on Ctrl-C or SIGTERM.
    fn run<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, SshError>>,
    ) -> Result<T, SshError> {
        self.run_with(fut, true)
    }

    /// [`Self::run`], not interruptible when cleaning up after a failure
    /// (an interrupted transfer still removes its temporary file).
    fn run_with<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, SshError>>,
        interruptible: bool,
    ) -> Result<T, SshError> {
        let closed = || SshError::Connection {
            target: self.target.clone(),
            reason: "connection closed".into(),
        };
        if self.ssh.is_closed() {
            return Err(closed());
        }
        let ssh = &self.ssh;
        let watch = async {
            loop {
                if ssh.is_closed() {
                    return closed();
                }
                if interruptible && crate::interrupt::requested() {
                    return SshError::Interrupted;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let result = self.rt.block_on(async {
            tokio::select! {
                r = fut => r,
                e = watch => Err(e),
            }
        });
        match result {
            // A request that failed because the connection went away says
            // so (the SFTP layer only reports e.g. "sender dropped").
            Err(SshError::Remote { path, reason }) if self.ssh.is_closed() => {
                Err(SshError::Connection {
                    target: self.target.clone(),
                    reason: format!("connection closed (remote path {path}: {reason})"),
                })
            }
            r => r,
        }
    }

    /// `user@host:port` of this session.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Creates `dir` and its missing parents (like `mkdir -p`).
    pub fn mkdir_p(&self, dir: &str) -> Result<(), SshError> {
        let sftp = &self.sftp;
        self.run(async {
            let mut prefix = String::new();
            if dir.starts_with('/') {
                prefix.push('/');
            }
            for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
                if !prefix.is_empty() && !prefix.ends_with('/') {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if let Ok(attrs) = sftp.stat(prefix.as_str()).await {
                    if attrs.attrs.is_dir() {
                        continue;
                    }
                    return Err(remote_err(&prefix, "exists and is not a directory"));
                }
                if let Err(e) = sftp.mkdir(prefix.as_str(), FileAttributes::default()).await {
                    // Lost a race with another creator?
                    match sftp.stat(prefix.as_str()).await {
                        Ok(a) if a.attrs.is_dir() => {}
                        _ => return Err(remote_err(&prefix, e)),
                    }
                }
            }
            Ok(())
        })
    }

    /// Whether `path` exists and is a directory; `false` when it does not
    /// exist, an error when the server cannot tell (e.g. no permission or
    /// a broken connection).
    pub fn is_dir(&self, path: &str) -> Result<bool, SshError> {
        let sftp = &self.sftp;
        self.run(async {
            match sftp.stat(path).await {
                Ok(a) => Ok(a.attrs.is_dir()),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(false),
                Err(e) => Err(remote_err(path, e)),
            }
        })
    }

    /// Lists `dir` (without `.` and `..`). Every name is checked to be one
    /// plain file name before anyone can join it to a local path.
    pub fn list(&self, dir: &str) -> Result<Vec<RemoteEntry>, SshError> {
        let sftp = &self.sftp;
        self.run(async {
            let handle = sftp
                .opendir(dir)
                .await
                .map_err(|e| remote_err(dir, e))?
                .handle;
            let mut out = Vec::new();
            let result = loop {
                match sftp.readdir(handle.as_str()).await {
                    Ok(name) => out.extend(
                        name.files
                            .into_iter()
                            .filter(|f| f.filename != "." && f.filename != "..")
                            .map(|f| RemoteEntry {
                                size: f.attrs.size.unwrap_or(0),
                                is_dir: f.attrs.is_dir(),
                                name: f.filename,
                            }),
                    ),
                    Err(e) if is_eof(&e) => break Ok(()),
                    Err(e) => break Err(remote_err(dir, e)),
                }
            };
            let _ = sftp.close(handle).await;
            result?;
            if let Some(bad) = out.iter().find(|e| !is_safe_component(&e.name)) {
                return Err(SshError::BadName {
                    dir: dir.to_owned(),
                    name: bad.name.clone(),
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    /// Uploads to `<remote>.b9-part-<random>` then renames over `remote` when
    /// complete (a broken transfer never leaves a truncated file under the
    /// final name). Calls `progress(bytes_done)` at most ~10 times a second,
    /// and once at the end.
    pub fn upload(
        &self,
        local: &Path,
        remote: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), SshError> {
        let mut file = File::open(local).map_err(|e| local_err(local, e))?;
        let part = format!("{remote}.b9-part-{}", random_suffix());
        let sftp = self.sftp.clone();
        let result = self.run(upload_async(
            &sftp, &mut file, local, &part, remote, progress,
        ));
        if result.is_err() {
            // Best effort: the connection may be gone.
            let _ = self.run_with(
                async {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), sftp.remove(part.as_str()))
                            .await;
                    Ok(())
                },
                false,
            );
        }
        result
    }

    /// Downloads to a local temp name next to `local`
    /// (`<local>.b9-part-<random>`), renamed to `local` when complete. Calls
    /// `progress(bytes_done)` at most ~10 times a second, and once at the end.
    pub fn download(
        &self,
        remote: &str,
        local: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), SshError> {
        let mut name = local.as_os_str().to_owned();
        name.push(format!(".b9-part-{}", random_suffix()));
        let part = PathBuf::from(name);
        let mut file = File::create(&part).map_err(|e| local_err(&part, e))?;
        let sftp = self.sftp.clone();
        let result = self.run(download_async(&sftp, remote, &mut file, &part, progress));
        drop(file);
        let result =
            result.and_then(|()| std::fs::rename(&part, local).map_err(|e| local_err(local, e)));
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }

    /// Removes the remote file `remote`.
    pub fn remove(&self, remote: &str) -> Result<(), SshError> {
        self.run(async {
            self.sftp
                .remove(remote)
                .await
                .map(|_| ())
                .map_err(|e| remote_err(remote, e))
        })
    }

    /// Closes the SFTP channel and disconnects politely (dropping the session
    /// also closes the connection).
    pub fn close(self) -> Result<(), SshError> {
        let _ = self.sftp.close_session();
        self.rt
            .block_on(
                self.ssh
                    .disconnect(russh::Disconnect::ByApplication, "", "en"),
            )
            .map_err(|e| SshError::Connection {
                target: self.target.clone(),
                reason: e.to_string(),
            })
    }
}

async fn connect_async(
    remote: &Remote,
    key: keys::PrivateKey,
) -> Result<(client::Handle<Client>, RawSftpSession), SshError> {
    let target = remote.target();
    let conn_err = |reason: String| SshError::Connect {
        target: target.clone(),
        reason,
    };
    let config = client::Config {
        // Large windows keep the pipe full on fast links.
        window_size: 64 * 1024 * 1024,
        maximum_packet_size: 256 * 1024,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    };
    let verdict = Arc::new(Mutex::new(None));
    let handler = Client {
        host: remote.host.clone(),
        port: remote.port,
        known_hosts: remote.known_hosts.clone(),
        policy: remote.host_key_policy,
        verdict: verdict.clone(),
    };
    let connected = client::connect(
        Arc::new(config),
        (remote.host.as_str(), remote.port),
        handler,
    )
    .await;
    let mut ssh = match connected {
        Ok(h) => h,
        Err(e) => {
            let v = verdict.lock().ok().and_then(|mut s| s.take());
            return Err(match v {
                Some(KeyVerdict::Changed(line)) => SshError::HostKeyChanged {
                    host: remote.host.clone(),
                    port: remote.port,
                    known_hosts: remote.known_hosts.clone(),
                    line,
                },
                Some(KeyVerdict::Unknown) => SshError::HostKeyUnknown {
                    host: remote.host.clone(),
                    port: remote.port,
                    known_hosts: remote.known_hosts.clone(),
                },
                Some(KeyVerdict::KnownHostsError(reason)) => SshError::KnownHosts {
                    path: remote.known_hosts.clone(),
                    reason,
                },
                None => conn_err(e.to_string()),
            });
        }
    };
    let hash = if key.algorithm().is_rsa() {
        ssh.best_supported_rsa_hash()
            .await
            .map_err(|e| conn_err(e.to_string()))?
            .flatten()
    } else {
        None
    };
    let auth = ssh
        .authenticate_publickey(
            remote.user.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await
        .map_err(|e| conn_err(format!("during authentication: {e}")))?;
    if !auth.success() {
        return Err(SshError::Auth {
            key: remote.key_file.clone(),
            target,
        });
    }
    let conn = |reason: String| SshError::Connection {
        target: target.clone(),
        reason,
    };
    let channel = ssh
        .channel_open_session()
        .await
        .map_err(|e| conn(format!("cannot open a channel: {e}")))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| conn(format!("cannot start the sftp subsystem: {e}")))?;
    let cfg = russh_sftp::client::Config {
        max_packet_len: 512 * 1024,
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Default::default()
    };
    let sftp = RawSftpSession::new_with_config(channel.into_stream(), cfg);
    sftp.init()
        .await
        .map_err(|e| conn(format!("SFTP handshake failed: {e}")))?;
    Ok((ssh, sftp))
}

fn is_eof(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::Eof)
}

/// Rate-limits progress callbacks.
struct Progress<'a> {
    f: &'a mut dyn FnMut(u64),
    last: Option<Instant>,
}

impl Progress<'_> {
    fn tick(&mut self, done: u64) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL)
        {
            self.last = Some(now);
            (self.f)(done);
        }
    }
}

/// Reads until `buf` is full or end of file; returns the number of bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

type WriteReq = JoinHandle<Result<u64, SftpError>>;

async fn upload_async(
    sftp: &Arc<RawSftpSession>,
    file: &mut File,
    local: &Path,
    part: &str,
    remote: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<(), SshError> {
    let handle = sftp
        .open(
            part,
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            FileAttributes::default(),
        )
        .await
        .map_err(|e| remote_err(part, e))?
        .handle;
    let mut progress = Progress {
        f: progress,
        last: None,
    };
    let mut inflight: VecDeque<WriteReq> = VecDeque::with_capacity(IN_FLIGHT);
    let mut offset = 0u64;
    let mut done = 0u64;
    let written: Result<(), SshError> = async {
        loop {
            let mut buf = vec![0u8; CHUNK as usize];
            let n = read_full(file, &mut buf).map_err(|e| local_err(local, e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let (s, h, at) = (sftp.clone(), handle.clone(), offset);
            inflight.push_back(tokio::spawn(async move {
                s.write(h, at, buf).await.map(|_| n as u64)
            }));
            offset += n as u64;
            if inflight.len() >= IN_FLIGHT {
                done += finish_write(inflight.pop_front(), part).await?;
                progress.tick(done);
            }
            if n < CHUNK as usize {
                break;
            }
        }
        while let Some(req) = inflight.pop_front() {
            done += finish_write(Some(req), part).await?;
            progress.tick(done);
        }
        Ok(())
    }
    .await;
    for req in inflight {
        req.abort();
    }
    let closed = sftp.close(handle).await;
    written?;
    closed.map_err(|e| remote_err(part, e))?;
    rename_over(sftp, part, remote).await?;
    (progress.f)(done);
    Ok(())
}

async fn finish_write(req: Option<WriteReq>, part: &str) -> Result<u64, SshError> {
    match req {
        None => Ok(0),
        Some(req) => match req.await {
            Ok(r) => r.map_err(|e| remote_err(part, e)),
            Err(e) => Err(remote_err(part, e)),
        },
    }
}

/// Renames `from` to `to`, replacing `to` atomically when the server has
/// `posix-rename@openssh.com`.
async fn rename_over(sftp: &RawSftpSession, from: &str, to: &str) -> Result<(), SshError> {
    let mut data = Vec::with_capacity(from.len() + to.len() + 8);
    for s in [from, to] {
        let len = u32::try_from(s.len()).map_err(|_| remote_err(to, "path too long"))?;
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(s.as_bytes());
    }
    match sftp.extended("posix-rename@openssh.com", data).await {
        Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => return Ok(()),
        Ok(Packet::Status(s)) if s.status_code != StatusCode::OpUnsupported => {
            return Err(remote_err(to, SftpError::Status(s)));
        }
        Err(e @ (SftpError::IO(_) | SftpError::Timeout)) => return Err(remote_err(to, e)),
        _ => {}
    }
    // Plain SFTP rename refuses to replace an existing file.
    let _ = sftp.remove(to).await;
    sftp.rename(from, to)
        .await
        .map(|_| ())
        .map_err(|e| remote_err(to, e))
}

type ReadReq = JoinHandle<Result<Vec<u8>, SftpError>>;

fn spawn_read(sftp: &Arc<RawSftpSession>, handle: &str, offset: u64, len: u32) -> ReadReq {
    let (s, h) = (sftp.clone(), handle.to_owned());
    tokio::spawn(async move {
        match s.read(h, offset, len).await {
            Ok(d) => Ok(d.data),
            Err(e) if is_eof(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    })
}

async fn download_async(
    sftp: &Arc<RawSftpSession>,
    remote: &str,
    file: &mut File,
    part: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), SshError> {
    let handle = sftp
        .open(remote, OpenFlags::READ, FileAttributes::default())
        .await
        .map_err(|e| remote_err(remote, e))?
        .handle;
    let size = match sftp.fstat(handle.as_str()).await {
        Ok(a) => a.attrs.size.unwrap_or(0),
        Err(_) => 0,
    };
    let mut progress = Progress {
        f: progress,
        last: None,
    };
    let mut inflight: VecDeque<(u64, u32, ReadReq)> = VecDeque::with_capacity(IN_FLIGHT);
    let mut next = 0u64;
    let mut done = 0u64;
    let result: Result<(), SshError> = async {
        loop {
            while inflight.len() < IN_FLIGHT && next < size {
                let len = (size - next).min(u64::from(CHUNK)) as u32;
                inflight.push_back((next, len, spawn_read(sftp, &handle, next, len)));
                next += u64::from(len);
            }
            let Some((at, len, req)) = inflight.pop_front() else {
                break;
            };
            let data = req
                .await
                .map_err(|e| remote_err(remote, e))?
                .map_err(|e| remote_err(remote, e))?;
            file.write_all(&data).map_err(|e| local_err(part, e))?;
            done += data.len() as u64;
            if data.is_empty() {
                // The file shrank: stop at its new end.
                break;
            }
            let mut got = data.len() as u64;
            // Short read: fetch the rest of this chunk before moving on.
            while got < u64::from(len) {
                let want = (u64::from(len) - got) as u32;
                let more = spawn_read(sftp, &handle, at + got, want)
                    .await
                    .map_err(|e| remote_err(remote, e))?
                    .map_err(|e| remote_err(remote, e))?;
                if more.is_empty() {
                    return Ok(());
                }
                file.write_all(&more).map_err(|e| local_err(part, e))?;
                got += more.len() as u64;
                done += more.len() as u64;
            }
            progress.tick(done);
        }
        // The file may have grown since fstat: read on until end of file.
        loop {
            let data = spawn_read(sftp, &handle, done, CHUNK)
                .await
                .map_err(|e| remote_err(remote, e))?
                .map_err(|e| remote_err(remote, e))?;
            if data.is_empty() {
                break;
            }
            file.write_all(&data).map_err(|e| local_err(part, e))?;
            done += data.len() as u64;
            progress.tick(done);
        }
        Ok(())
    }
    .await;
    for (_, _, req) in inflight {
        req.abort();
    }
    let _ = sftp.close(handle).await;
    result?;
    file.flush().map_err(|e| local_err(part, e))?;
    (progress.f)(done);
    Ok(())
}

/// A random-enough suffix for temporary names (process id, time and the
/// standard library's randomly seeded hasher).
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{:016x}", h.finish())
}
