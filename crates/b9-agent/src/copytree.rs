//! Copying one file system's tree into another, faithfully: file types,
//! hard links, permission bits (setuid included), owners, nanosecond
//! times, extended attributes (security.* and trusted.* too), inode flags
//! (`chattr`) and holes. Other file systems mounted inside the source are
//! not entered.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::inodeflags;
use crate::sys::cstr;

/// What was copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Objects created (the root not counted), hard links included.
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
}

/// Copies the contents of `src` into the existing directory `dst` and gives
/// `dst` the owner, mode, xattrs and times of `src`.
///
/// Errors name the path; running out of space keeps
/// [`io::ErrorKind::StorageFull`].
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<Stats> {
    let meta = lstat(src)?;
    let mut c = Copier {
        dev: meta.dev(),
        links: HashMap::new(),
        flags: Vec::new(),
        stats: Stats::default(),
        buf: vec![0u8; 1 << 20],
    };
    c.copy_contents(src, dst)?;
    apply_meta(src, dst, &meta)?;
    c.note_flags(src, dst, &meta)?;
    // Last: an immutable or append-only file refuses new links and
    // changes of its times.
    for (path, flags) in &c.flags {
        inodeflags::add(path, *flags).map_err(|e| at(path, e))?;
    }
    Ok(c.stats)
}

struct Copier {
    /// The source file system; directories on others are copied empty.
    dev: u64,
    /// (dev, inode) of multiply linked files -> their first copy.
    links: HashMap<(u64, u64), PathBuf>,
    /// Inode flags to set once everything is copied.
    flags: Vec<(PathBuf, libc::c_int)>,
    stats: Stats,
    buf: Vec<u8>,
}

impl Copier {
    /// Copies every entry of directory `src` into directory `dst`.
    fn copy_contents(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| at(src, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| at(src, e))?;
        names.sort();
        for name in names {
            self.copy_entry(&src.join(&name), &dst.join(&name))?;
        }
        Ok(())
    }

    /// Copies one object (recursively for directories).
    fn copy_entry(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let meta = lstat(src)?;
        let ft = meta.file_type();
        let key = (meta.dev(), meta.ino());
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = self.links.get(&key) {
                std::fs::hard_link(first, dst).map_err(|e| at(dst, e))?;
                self.stats.entries += 1;
                return Ok(());
            }
        }
        self.create(src, dst, &meta)?;
        self.stats.entries += 1;
        if ft.is_dir() && meta.dev() == self.dev {
            self.copy_contents(src, dst)?;
        }
        apply_meta(src, dst, &meta)?;
        self.note_flags(src, dst, &meta)?;
        if !ft.is_dir() && meta.nlink() > 1 {
            self.links.insert(key, dst.to_path_buf());
        }
        Ok(())
    }

    /// Remembers the inode flags of `src` (a file or directory) for `dst`.
    fn note_flags(&mut self, src: &Path, dst: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
        let ft = meta.file_type();
        if ft.is_file() || ft.is_dir() {
            let flags = inodeflags::get(src).map_err(|e| at(src, e))?;
            if flags != 0 {
                self.flags.push((dst.to_path_buf(), flags));
            }
        }
        Ok(())
    }

    /// Creates `dst` as an object of the type of `src` (data included).
    fn create(&mut self, src: &Path, dst: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
        let ft = meta.file_type();
        let made = if ft.is_dir() {
            make_dir(dst)
        } else if ft.is_file() {
            self.copy_file(src, dst, meta.len())
        } else if ft.is_symlink() {
            std::fs::read_link(src).and_then(|target| std::os::unix::fs::symlink(target, dst))
        } else {
            mknod(dst, meta.mode(), meta.rdev())
        };
        made.map_err(|e| at(dst, e))
    }

    /// Copies a regular file's data, leaving holes as holes.
    fn copy_file(&mut self, src: &Path, dst: &Path, len: u64) -> io::Result<()> {
        let from = File::open(src)?;
        let to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)?;
        for (start, end) in data_ranges(&from, len)? {
            self.copy_range(&from, &to, start, end)?;
        }
        to.set_len(len)
    }

    /// Copies bytes `start..end` from `from` to the same offsets of `to`.
    fn copy_range(&mut self, from: &File, to: &File, start: u64, end: u64) -> io::Result<()> {
        let mut pos = start;
        while pos < end {
            let want = usize::try_from(end - pos)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let n = from.read_at(&mut self.buf[..want], pos)?;
            if n == 0 {
                break;
            }
            to.write_all_at(&self.buf[..n], pos)?;
            pos += n as u64;
            self.stats.bytes += n as u64;
        }
        Ok(())
    }
}

/// The data (non-hole) ranges of a file of `len` bytes; the whole file when
/// the file system cannot tell.
fn data_ranges(f: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos: u64 = 0;
    while pos < len {
        let Ok(off) = libc::off_t::try_from(pos) else {
            break;
        };
        // SAFETY: lseek on a valid descriptor.
        let data = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENXIO) => Ok(ranges),
                Some(libc::EINVAL) if ranges.is_empty() => Ok(vec![(0, len)]),
                _ => Err(e),
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (data, hole) = (data as u64, (hole as u64).min(len));
        if hole > data {
            ranges.push((data, hole));
        }
        pos = hole.max(data + 1);
    }
    Ok(ranges)
}

/// Creates directory `dst`; an existing directory (lost+found) is fine.
fn make_dir(dst: &Path) -> io::Result<()> {
    match std::fs::create_dir(dst) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dst.is_dir() => Ok(()),
        other => other,
    }
}

/// Creates a device node, FIFO or socket.
fn mknod(dst: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = cstr(dst)?;
    // SAFETY: a valid path; mode carries the file type.
    let ret = unsafe { libc::mknod(p.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) };
    crate::sys::check(ret).map(drop)
}

/// Owner, xattrs, permission bits and times of `src` onto `dst`, in the
/// order that keeps setuid bits and file capabilities (chown clears them).
fn apply_meta(src: &Path, dst: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    let link = meta.file_type().is_symlink();
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(|e| at(dst, e))?;
    copy_xattrs(src, dst)?;
    if !link {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| at(dst, e))?;
    }
    set_times(dst, meta).map_err(|e| at(dst, e))
}

/// Sets atime and mtime (nanoseconds) without following a link.
fn set_times(dst: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    let p = cstr(dst)?;
    let ts = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    // SAFETY: a valid path and two timespecs.
    let ret = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    crate::sys::check(ret).map(drop)
}

/// Copies every extended attribute of `src` to `dst` (links not followed).
pub fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let s = cstr(src)?;
    let d = cstr(dst)?;
    for name in list_xattrs(&s).map_err(|e| at(src, e))? {
        let value = get_xattr(&s, &name).map_err(|e| at(src, e))?;
        // SAFETY: valid path, name and value buffer.
        let ret = unsafe {
            libc::lsetxattr(
                d.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if ret != 0 {
            let e = io::Error::last_os_error();
            let msg = format!("{}: xattr {}: {e}", dst.display(), name.to_string_lossy());
            return Err(io::Error::new(e.kind(), msg));
        }
    }
    Ok(())
}

/// The names of the extended attributes of `path`; none where the file
/// system has no xattrs.
pub fn list_xattrs(path: &CStr) -> io::Result<Vec<CString>> {
    let buf = sized_read(|ptr, len| {
        // SAFETY: `ptr` is valid for `len` bytes (or null with len 0).
        unsafe { libc::llistxattr(path.as_ptr(), ptr.cast(), len) }
    });
    let buf = match buf {
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        other => other?,
    };
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| CString::new(n).ok())
        .collect())
}

/// The value of attribute `name` of `path`.
fn get_xattr(path: &CStr, name: &CStr) -> io::Result<Vec<u8>> {
    sized_read(|ptr, len| {
        // SAFETY: `ptr` is valid for `len` bytes (or null with len 0).
        unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), ptr.cast(), len) }
    })
}

/// Calls a "size, then fill" system call until the buffer is big enough.
fn sized_read(mut call: impl FnMut(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

fn lstat(p: &Path) -> io::Result<std::fs::Metadata> {
    std::fs::symlink_metadata(p).map_err(|e| at(p, e))
}

/// The error with the path in its message, kind kept.
fn at(p: &Path, e: io::Error) -> io::Error {
    if e.to_string().starts_with(&p.display().to_string()) {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt};

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).map(|m| m.mode()).unwrap_or(0)
    }

    fn build_source(s: &Path) -> io::Result<()> {
        std::fs::create_dir_all(s.join("a/b"))?;
        std::fs::create_dir(s.join("empty"))?;
        std::fs::write(s.join("a/file"), b"hello")?;
        std::fs::set_permissions(s.join("a/file"), std::fs::Permissions::from_mode(0o4755))?;
        std::fs::hard_link(s.join("a/file"), s.join("a/b/link"))?;
        symlink("../a/file", s.join("empty/sym"))?;
        std::fs::set_permissions(s.join("empty"), std::fs::Permissions::from_mode(0o1750))?;
        // A sparse file: 1 MiB hole, 3 bytes, 1 MiB hole.
        let f = File::create(s.join("sparse"))?;
        f.write_all_at(b"abc", 1 << 20)?;
        f.set_len(2 << 20)?;
        let fifo = cstr(s.join("fifo"))?;
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
        Ok(())
    }

    #[test]
    fn copies_types_modes_links_and_times() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        let (s, t) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir(&s)?;
        std::fs::create_dir(&t)?;
        build_source(&s)?;
        // Times with nanoseconds on a file and (after its contents) a dir.
        let when = std::fs::FileTimes::new().set_modified(
            std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 123_456_789),
        );
        File::options()
            .write(true)
            .open(s.join("a/file"))?
            .set_times(when)?;
        let stats = copy_tree(&s, &t)?;
        assert_eq!(stats.entries, 8);
        assert_eq!(std::fs::read(t.join("a/b/link"))?, b"hello");
        let (m1, m2) = (lstat(&t.join("a/file"))?, lstat(&t.join("a/b/link"))?);
        assert_eq!((m1.ino(), m1.nlink()), (m2.ino(), 2));
        assert_eq!(m1.mode() & 0o7777, 0o4755);
        assert_eq!((m1.mtime(), m1.mtime_nsec()), (1_600_000_000, 123_456_789));
        assert_eq!(mode(&t.join("empty")) & 0o7777, 0o1750);
        assert_eq!(
            std::fs::read_link(t.join("empty/sym"))?,
            Path::new("../a/file")
        );
        assert!(lstat(&t.join("fifo"))?.file_type().is_fifo());
        assert_eq!(mode(&t.join("fifo")) & 0o777, 0o640);
        let sparse = lstat(&t.join("sparse"))?;
        assert_eq!(sparse.len(), 2 << 20);
        assert!(sparse.blocks() * 512 < 1 << 20, "holes kept");
        assert_eq!(
            &std::fs::read(t.join("sparse"))?[1 << 20..(1 << 20) + 3],
            b"abc"
        );
        let (ms, mt) = (lstat(&s.join("a"))?, lstat(&t.join("a"))?);
        assert_eq!((ms.mtime(), ms.mtime_nsec()), (mt.mtime(), mt.mtime_nsec()));
        Ok(())
    }

    #[test]
    fn copies_user_xattrs_where_supported() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        let (s, t) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir(&s)?;
        std::fs::create_dir(&t)?;
        std::fs::write(s.join("f"), b"x")?;
        let (p, name, value) = (cstr(s.join("f"))?, c"user.b9.test", b"v\0al");
        // SAFETY: valid path, name and value.
        let ret = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if ret != 0 {
            eprintln!("no user xattrs here: {}", io::Error::last_os_error());
            return Ok(());
        }
        copy_tree(&s, &t)?;
        let q = cstr(t.join("f"))?;
        assert!(list_xattrs(&q)?.iter().any(|n| n.as_c_str() == name));
        assert_eq!(get_xattr(&q, name)?, value);
        Ok(())
    }

    #[test]
    fn errors_name_the_path() {
        let e = copy_tree(Path::new("/nonexistent/b9"), Path::new("/tmp")).err();
        assert!(e.is_some_and(|e| e.to_string().contains("/nonexistent/b9")));
    }
}
