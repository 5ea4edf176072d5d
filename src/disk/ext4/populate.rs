//! Copying a host directory tree into the new file system, keeping modes,
//! numeric owners, modification times, symbolic links, hard links, empty
//! directories and special files.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::backend::{Builder, Ino, Meta, Special, ROOT};
use crate::disk::DiskError;

/// Copies the contents of `dir` into the root directory, and `dir`'s own
/// mode, owner and mtime onto the root directory. `ctime` is the inode
/// change time given to every copied object (host ctimes are not
/// reproducible).
pub(crate) fn populate(b: &mut dyn Builder, dir: &Path, ctime: u32) -> Result<(), DiskError> {
    let md = lstat(dir)?;
    if !md.is_dir() {
        return Err(DiskError::Invalid(format!(
            "{}: cannot populate an ext4 file system from it: not a directory",
            dir.display()
        )));
    }
    let mut w = Walk {
        b,
        ctime,
        links: HashMap::new(),
    };
    w.dir(ROOT, dir)?;
    let meta = w.meta(dir, &md)?;
    w.b.set_meta(ROOT, &meta)
}

struct Walk<'a> {
    b: &'a mut dyn Builder,
    ctime: u32,
    /// Host (device, inode) of files with several links -> inode in the
    /// image and its number of names so far.
    links: HashMap<(u64, u64), (Ino, u32)>,
}

/// The most links (names, or subdirectories + 2) one inode may have.
const LINK_MAX: u32 = 65000;

fn lstat(p: &Path) -> Result<Metadata, DiskError> {
    std::fs::symlink_metadata(p).map_err(|source| DiskError::Io {
        op: "cannot stat",
        path: p.to_path_buf(),
        source,
    })
}

impl Walk<'_> {
    fn meta(&self, p: &Path, md: &Metadata) -> Result<Meta, DiskError> {
        let mtime = u32::try_from(md.mtime()).map_err(|_| {
            DiskError::Invalid(format!(
                "{}: modification time {} is outside what ext4 stores here (1970..2106)",
                p.display(),
                md.mtime()
            ))
        })?;
        Ok(Meta {
            mode: (md.mode() & 0o7777) as u16,
            uid: md.uid(),
            gid: md.gid(),
            atime: mtime,
            mtime,
            ctime: self.ctime,
        })
    }

    fn dir(&mut self, into: Ino, dir: &Path) -> Result<(), DiskError> {
        let rd_err = |source| DiskError::Io {
            op: "cannot read directory",
            path: dir.to_path_buf(),
            source,
        };
        let mut names: Vec<OsString> = std::fs::read_dir(dir)
            .map_err(rd_err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(rd_err)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut subdirs = 0u32;
        for name in names {
            let path = dir.join(&name);
            let md = lstat(&path)?;
            let meta = self.meta(&path, &md)?;
            let name = name.as_bytes();
            let ft = md.file_type();
            if ft.is_dir() {
                subdirs += 1;
                if subdirs + 2 > LINK_MAX {
                    return Err(DiskError::Invalid(format!(
                        "{}: more than {} subdirectories, which the ext4 writer cannot link",
                        dir.display(),
                        LINK_MAX - 2
                    )));
                }
                let ino = self.b.mkdir(into, name, &meta)?;
                self.dir(ino, &path)?;
                // Adding entries must not disturb the directory's times.
                self.b.set_meta(ino, &meta)?;
                continue;
            }
            let key = (md.dev(), md.ino());
            if md.nlink() > 1 {
                if let Some((target, count)) = self.links.get_mut(&key) {
                    *count += 1;
                    if *count > LINK_MAX {
                        return Err(DiskError::Invalid(format!(
                            "{}: more than {LINK_MAX} hard links to one file",
                            path.display()
                        )));
                    }
                    self.b.hard_link(into, name, *target)?;
                    continue;
                }
            }
            let ino = if ft.is_file() {
                self.b.file(into, name, &path, &meta)?
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).map_err(|source| DiskError::Io {
                    op: "cannot read symbolic link",
                    path: path.clone(),
                    source,
                })?;
                self.b
                    .symlink(into, name, target.as_os_str().as_bytes(), &meta)?
            } else {
                let kind = if ft.is_char_device() {
                    let (ma, mi) = split_dev(md.rdev());
                    Special::Char(ma, mi)
                } else if ft.is_block_device() {
                    let (ma, mi) = split_dev(md.rdev());
                    Special::Block(ma, mi)
                } else if ft.is_fifo() {
                    Special::Fifo
                } else if ft.is_socket() {
                    Special::Socket
                } else {
                    return Err(DiskError::Invalid(format!(
                        "{}: unknown file type, cannot copy it into an ext4 image",
                        path.display()
                    )));
                };
                self.b.special(into, name, kind, &meta)?
            };
            if md.nlink() > 1 {
                self.links.insert(key, (ino, 1));
            }
        }
        Ok(())
    }
}

/// Linux `dev_t` -> (major, minor), as glibc's `gnu_dev_major`/`gnu_dev_minor`.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::split_dev;

    #[test]
    fn dev_numbers() {
        // makedev(8, 1) and makedev(259, 65537).
        assert_eq!(split_dev(0x801), (8, 1));
        let (ma, mi) = (259u64, 65537u64);
        let dev = ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12);
        assert_eq!(split_dev(dev), (259, 65537));
    }
}
