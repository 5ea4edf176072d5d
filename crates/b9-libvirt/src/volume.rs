//! Storage volumes on the named pool: sparse upload and download (only
//! data extents cross the connection, holes are sent as their length, as
//! `virsh vol-upload --sparse` does), volumes shared by every b9 and used
//! only once complete, create, delete, list.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use virt::connect::Connect;
use virt::enumutil::Enum;
use virt::error::{Error, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

/// Bytes per stream message (libvirt's limit is 256 KiB per packet).
const CHUNK: usize = 256 * 1024;

/// A volume operation's failure, in words.
pub type Failure = String;

/// The volume `name`, if the pool has it.
fn lookup(pool: &StoragePool, name: &str) -> Result<Option<StorageVol>, Failure> {
    match pool.lookup_storage_vol_by_name(name) {
        Ok(vol) => Ok(Some(vol)),
        Err(e) if matches!(e.code(), Enum::Known(ErrorNumber::NoStorageVolume)) => Ok(None),
        Err(e) => Err(format!("cannot look up volume {name}: {}", e.message())),
    }
}

/// Copies `path` into the volume `name` (created with the file's size,
/// replacing one of that name), telling `progress` the bytes done of all.
/// Returns the volume's path on the host.
pub fn upload(
    conn: &Connect,
    pool: &StoragePool,
    name: &str,
    path: &str,
    progress: Progress<'_>,
) -> Result<String, Failure> {
    if let Some(vol) = lookup(pool, name)? {
        vol.delete(0)
            .map_err(|e| format!("cannot replace volume {name}: {}", e.message()))?;
    }
    let (file, size) = open(path)?;
    let vol = create(pool, name, size)
        .map_err(|e| format!("cannot create volume {name}: {}", e.message()))?;
    fill(conn, &vol, name, path, &file, size, progress)
}

/// Where a transfer reports its bytes done and its total.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Opens a local file; with its size.
fn open(path: &str) -> Result<(File, u64), Failure> {
    let file = File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .len();
    Ok((file, size))
}

/// Creates the raw volume `name` of `size` bytes; fails when it exists.
fn create(pool: &StoragePool, name: &str, size: u64) -> Result<StorageVol, Error> {
    let xml = format!(
        "<volume><name>{}</name><capacity unit='bytes'>{size}</capacity>\
         <allocation unit='bytes'>0</allocation><target><format type='raw'/></target></volume>",
        escape(name)
    );
    StorageVol::create_xml(pool, &xml, 0)
}

/// Sends `file` into the new volume `vol`, deleting it on failure; its
/// path on the host.
fn fill(
    conn: &Connect,
    vol: &StorageVol,
    name: &str,
    path: &str,
    file: &File,
    size: u64,
    progress: Progress<'_>,
) -> Result<String, Failure> {
    if let Err(e) = send(conn, vol, file, size, progress) {
        let _ = vol.delete(0);
        return Err(format!("cannot upload {path} into volume {name}: {e}"));
    }
    vol_path(vol)
}

/// The shared volume `name` holding `path` (`Request::Shared`): its path
/// once complete, `None` while another b9 uploads it.
pub fn shared(
    conn: &Connect,
    pool: &StoragePool,
    name: &str,
    path: &str,
    owner: &str,
    progress: Progress<'_>,
) -> Result<Option<String>, Failure> {
    let done = format!("{name}.done");
    let lock_suffix = format!("-owns-{name}");
    let lock = format!("{owner}{lock_suffix}");
    // Twice: a dead upload's volume is deleted, then the name taken.
    for _ in 0..2 {
        if lookup(pool, &done)?.is_some() {
            match lookup(pool, name)? {
                Some(vol) => return vol_path(&vol).map(Some),
                // The volume was deleted by hand: its marker must not
                // vouch for the next upload while it runs.
                None => delete(pool, &done)?,
            }
        }
        // The lock goes first, so a volume without marker and without lock
        // is a dead upload's (an uploader makes the marker, then drops it).
        let (file, size) = open(path)?;
        ensure(pool, &lock)?;
        match create(pool, name, size) {
            Ok(vol) => {
                let made = fill(conn, &vol, name, path, &file, size, progress).and_then(|at| {
                    ensure(pool, &done)?;
                    // Another b9 that took the volume for a dead upload's
                    // meanwhile (and deleted it) holds a lock now.
                    let others = list(pool)?
                        .iter()
                        .any(|v| v.ends_with(&lock_suffix) && *v != lock);
                    let ours = !others && lookup(pool, name)?.is_some();
                    Ok(ours.then_some(at))
                });
                delete(pool, &lock)?;
                return made;
            }
            Err(e) if lookup(pool, name)?.is_none() => {
                let _ = delete(pool, &lock);
                return Err(format!("cannot create volume {name}: {}", e.message()));
            }
            Err(_) => delete(pool, &lock)?,
        }
        if list(pool)?.iter().any(|v| v.ends_with(&lock_suffix)) {
            return Ok(None);
        }
        if lookup(pool, &done)?.is_none() {
            delete(pool, name)?;
        }
    }
    Ok(None)
}

/// Makes the empty volume `name` unless it exists.
fn ensure(pool: &StoragePool, name: &str) -> Result<(), Failure> {
    match create(pool, name, 0) {
        Ok(_) => Ok(()),
        Err(_) if lookup(pool, name)?.is_some() => Ok(()),
        Err(e) => Err(format!("cannot create volume {name}: {}", e.message())),
    }
}

/// The volume's path on its host.
fn vol_path(vol: &StorageVol) -> Result<String, Failure> {
    vol.path()
        .map_err(|e| format!("cannot get a volume's path: {}", e.message()))
}

/// Sends the file's data extents and holes over an upload stream.
fn send(
    conn: &Connect,
    vol: &StorageVol,
    file: &File,
    size: u64,
    progress: Progress<'_>,
) -> Result<(), String> {
    let stream = Stream::new(conn, 0).map_err(|e| e.message().to_string())?;
    vol.upload(&stream, 0, size, sys::VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        .map_err(|e| e.message().to_string())?;
    let result = send_extents(&stream, file, size, progress);
    match result {
        Ok(()) => stream.finish().map_err(|e| e.message().to_string()),
        Err(e) => {
            let _ = stream.abort();
            Err(e)
        }
    }
}

fn send_extents(
    stream: &Stream,
    file: &File,
    size: u64,
    progress: Progress<'_>,
) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    progress(0, size);
    while offset < size {
        let data = seek(file, offset, libc::SEEK_DATA)?
            .unwrap_or(size)
            .min(size);
        if data > offset {
            send_hole(stream, data - offset)?;
            offset = data;
            progress(offset, size);
            continue;
        }
        let end = seek(file, offset, libc::SEEK_HOLE)?
            .unwrap_or(size)
            .min(size);
        while offset < end {
            let n = usize::try_from(end - offset).map_or(CHUNK, |left| left.min(CHUNK));
            file.read_exact_at(&mut buf[..n], offset)
                .map_err(|e| format!("read: {e}"))?;
            send_all(stream, &buf[..n])?;
            offset += n as u64;
            progress(offset, size);
        }
    }
    Ok(())
}

/// `lseek` with `SEEK_DATA`/`SEEK_HOLE`; `None` past the last data (ENXIO).
fn seek(file: &File, offset: u64, whence: i32) -> Result<Option<u64>, String> {
    let at = i64::try_from(offset).map_err(|_| "offset too large".to_string())?;
    // SAFETY: lseek on a descriptor `file` owns; it touches no memory.
    let got = unsafe { libc::lseek(file.as_raw_fd(), at, whence) };
    if got >= 0 {
        return Ok(Some(got as u64));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(format!("seek: {err}"))
    }
}

fn send_all(stream: &Stream, mut data: &[u8]) -> Result<(), String> {
    while !data.is_empty() {
        let n = stream.send(data).map_err(|e| e.message().to_string())?;
        let n = usize::try_from(n).map_err(|_| "stream send failed".to_string())?;
        data = &data[n..];
    }
    Ok(())
}

fn send_hole(stream: &Stream, length: u64) -> Result<(), String> {
    let length = i64::try_from(length).map_err(|_| "hole too large".to_string())?;
    // SAFETY: the stream pointer is valid while `stream` lives.
    let rc = unsafe { sys::virStreamSendHole(stream.as_ptr(), length, 0) };
    if rc < 0 {
        return Err(Error::last_error().message().to_string());
    }
    Ok(())
}

/// Copies the volume `name` into `path` (created or truncated), holes
/// kept as holes, telling `progress` the bytes done of the volume's size.
pub fn download(
    conn: &Connect,
    pool: &StoragePool,
    name: &str,
    path: &str,
    progress: Progress<'_>,
) -> Result<(), Failure> {
    let vol = lookup(pool, name)?.ok_or_else(|| format!("no volume {name}"))?;
    let total = vol
        .info()
        .map_err(|e| format!("cannot read volume {name}: {}", e.message()))?
        .capacity;
    let mut file = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
    let fail = |e: String| format!("cannot download volume {name} into {path}: {e}");
    let stream = Stream::new(conn, 0).map_err(|e| fail(e.message().to_string()))?;
    vol.download(&stream, 0, 0, sys::VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
        .map_err(|e| fail(e.message().to_string()))?;
    match receive(&stream, &mut file, total, progress) {
        Ok(()) => stream.finish().map_err(|e| fail(e.message().to_string())),
        Err(e) => {
            let _ = stream.abort();
            Err(fail(e))
        }
    }
}

fn receive(
    stream: &Stream,
    file: &mut File,
    total: u64,
    progress: Progress<'_>,
) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    progress(0, total);
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the stream pointer
        // is valid while `stream` lives.
        let got = unsafe {
            sys::virStreamRecvFlags(
                stream.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                sys::VIR_STREAM_RECV_STOP_AT_HOLE,
            )
        };
        match got {
            0 => break,
            -3 => {
                let mut length = 0i64;
                // SAFETY: `length` outlives the call; the pointer is valid.
                let rc = unsafe { sys::virStreamRecvHole(stream.as_ptr(), &mut length, 0) };
                if rc < 0 {
                    return Err(Error::last_error().message().to_string());
                }
                offset += u64::try_from(length).map_err(|_| "negative hole".to_string())?;
                progress(offset.min(total), total);
            }
            n if n > 0 => {
                let n = n as usize;
                file.write_all_at(&buf[..n], offset)
                    .map_err(|e| format!("write: {e}"))?;
                offset += n as u64;
                progress(offset.min(total), total);
            }
            _ => return Err(Error::last_error().message().to_string()),
        }
    }
    file.set_len(offset).map_err(|e| format!("truncate: {e}"))?;
    file.flush().map_err(|e| e.to_string())
}

/// Deletes the volume `name`; a missing one is fine.
pub fn delete(pool: &StoragePool, name: &str) -> Result<(), Failure> {
    match lookup(pool, name)? {
        Some(vol) => vol
            .delete(0)
            .map_err(|e| format!("cannot delete volume {name}: {}", e.message())),
        None => Ok(()),
    }
}

/// The pool's volume names (refreshed first, so files made meanwhile count).
pub fn list(pool: &StoragePool) -> Result<Vec<String>, Failure> {
    let _ = pool.refresh(0);
    pool.list_volumes()
        .map_err(|e| format!("cannot list the pool's volumes: {}", e.message()))
}

/// Escapes XML's special characters in a name.
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}
