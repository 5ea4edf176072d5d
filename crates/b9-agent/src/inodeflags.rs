//! Inode flags (`chattr`/`lsattr`): read and set through
//! `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS` on regular files and directories.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The flags a copy keeps: what `chattr` sets and means the same on any
/// ext4 (s, u, S, i, a, d, A, j, D, T, P). Layout flags (extents, inline
/// data, htree index...) belong to the file system that writes the copy.
pub const COPIED: libc::c_int = 0x1 // secure deletion
    | 0x2 // undelete
    | 0x8 // synchronous updates
    | 0x10 // immutable
    | 0x20 // append only
    | 0x40 // no dump
    | 0x80 // no atime
    | 0x4000 // data journalling
    | 0x1_0000 // synchronous directory updates
    | 0x2_0000 // top of directory hierarchy
    | 0x2000_0000; // project id inheritance

/// Opens `path` (a file or directory) for the flag ioctls, without
/// following a link or blocking.
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// The [`COPIED`] flags of `path`; none where the file system has no
/// inode flags.
pub fn get(path: &Path) -> io::Result<libc::c_int> {
    let f = open(path)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: a valid descriptor and a pointer to an int, which is what
    // the kernel reads and writes for these ioctls.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    match crate::sys::check(ret) {
        Ok(_) => Ok(flags & COPIED),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EOPNOTSUPP)) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Adds `flags` to those of `path`.
pub fn add(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let f = open(path)?;
    let mut now: libc::c_int = 0;
    // SAFETY: as in `get`.
    crate::sys::check(unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut now) })?;
    let new = now | flags;
    // SAFETY: a valid descriptor and a pointer to an int.
    crate::sys::check(unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &new) }).map(drop)
}
