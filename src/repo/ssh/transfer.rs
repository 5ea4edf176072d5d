//! The pipelined SFTP transfers: up to [`IN_FLIGHT`](super::IN_FLIGHT) requests of
//! [`CHUNK`](super::CHUNK) bytes outstanding, files renamed into place when complete.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::task::JoinHandle;

use super::{local_err, remote_err, SshError, CHUNK, IN_FLIGHT, PROGRESS_INTERVAL};

pub(super) fn is_eof(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::Eof)
}

/// Rate-limits progress callbacks.
pub(super) struct Progress<'a> {
    f: &'a mut dyn FnMut(u64, u64),
    total: u64,
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
            (self.f)(done, self.total);
        }
    }

    /// The last call, with the bytes transferred in all.
    fn end(&mut self, done: u64) {
        (self.f)(done, self.total.max(done));
    }
}

/// Reads until `buf` is full or end of file; returns the number of bytes read.
pub(super) fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
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

pub(super) type WriteReq = JoinHandle<Result<u64, SftpError>>;

pub(super) async fn upload_async(
    sftp: &Arc<RawSftpSession>,
    file: &mut File,
    local: &Path,
    part: &str,
    remote: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), SshError> {
    let total = file.metadata().map_or(0, |m| m.len());
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
        total,
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
    progress.end(done);
    Ok(())
}

pub(super) async fn finish_write(req: Option<WriteReq>, part: &str) -> Result<u64, SshError> {
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
pub(super) async fn rename_over(
    sftp: &RawSftpSession,
    from: &str,
    to: &str,
) -> Result<(), SshError> {
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

pub(super) type ReadReq = JoinHandle<Result<Vec<u8>, SftpError>>;

pub(super) fn spawn_read(
    sftp: &Arc<RawSftpSession>,
    handle: &str,
    offset: u64,
    len: u32,
) -> ReadReq {
    let (s, h) = (sftp.clone(), handle.to_owned());
    tokio::spawn(async move {
        match s.read(h, offset, len).await {
            Ok(d) => Ok(d.data),
            Err(e) if is_eof(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    })
}

pub(super) async fn download_async(
    sftp: &Arc<RawSftpSession>,
    remote: &str,
    file: &mut File,
    part: &Path,
    progress: &mut dyn FnMut(u64, u64),
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
        total: size,
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
    progress.end(done);
    Ok(())
}

/// A random-enough suffix for temporary names (process id, time and the
/// standard library's randomly seeded hasher).
pub(super) fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    format!("{:016x}", h.finish())
}
