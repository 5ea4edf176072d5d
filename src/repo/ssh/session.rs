//! One SSH connection with its SFTP channel, and the blocking operations on it.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{self, PrivateKeyWithHashAlg};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, StatusCode};

use super::known_hosts::{Client, KeyVerdict};
use super::transfer::{download_async, is_eof, random_suffix, upload_async};
use super::{
    local_err, remote_err, Remote, RemoteEntry, SshError, CONNECT_TIMEOUT, REQUEST_TIMEOUT_SECS,
};
use crate::repo::is_safe_component;

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
        if interruptible {
            crate::interrupt::arm();
        }
        let watch = async {
            loop {
                if ssh.is_closed() {
                    return closed();
                }
                if interruptible && crate::interrupt::cancelled() {
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
    /// final name). Calls `progress(bytes_done, file_size)` at most ~10 times
    /// a second, and once at the end.
    pub fn upload(
        &self,
        local: &Path,
        remote: &str,
        progress: &mut dyn FnMut(u64, u64),
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
    /// `progress(bytes_done, file_size)` at most ~10 times a second, and once
    /// at the end (the size is 0 when the server does not say it, until the
    /// last call).
    pub fn download(
        &self,
        remote: &str,
        local: &Path,
        progress: &mut dyn FnMut(u64, u64),
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
    #[cfg(any(test, feature = "internals"))]
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

pub(super) async fn connect_async(
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
