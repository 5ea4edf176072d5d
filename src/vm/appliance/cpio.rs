//! A newc ("070701") cpio writer: the format the kernel unpacks an
//! initramfs from.
//!
//! Entries are written in the order given; every parent directory is
//! written (once) before the first entry inside it, because the kernel's
//! unpacker does not create missing parents. Owners are root, times are
//! zero, inode numbers count up: the same entries give the same bytes.

use std::collections::BTreeSet;
use std::io::{self, Write};

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc archive to `W`.
pub(super) struct Writer<W: Write> {
    out: W,
    /// Bytes written so far (for the 4-byte alignment).
    pos: u64,
    /// The next inode number.
    ino: u32,
    /// Directories already written.
    dirs: BTreeSet<String>,
}

/// The fields of one header that vary between entries.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    size: u32,
    nlink: u32,
    rdev: (u32, u32),
}

impl<W: Write> Writer<W> {
    /// A writer that appends to `out`.
    pub(super) fn new(out: W) -> Self {
        Writer {
            out,
            pos: 0,
            ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    /// A directory (with its parents) at the absolute `path`.
    pub(super) fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        let name = relative(path)?;
        if name.is_empty() {
            return Ok(());
        }
        self.parents(name)?;
        if self.dirs.insert(name.to_string()) {
            self.entry(&Header {
                name,
                mode: S_IFDIR | (perm & 0o7777),
                size: 0,
                nlink: 2,
                rdev: (0, 0),
            })?;
        }
        Ok(())
    }

    /// A regular file with `data` at the absolute `path`.
    pub(super) fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let name = relative(path)?;
        self.parents(name)?;
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: larger than 4 GiB, too large for a newc archive"),
            )
        })?;
        self.entry(&Header {
            name,
            mode: S_IFREG | (perm & 0o7777),
            size,
            nlink: 1,
            rdev: (0, 0),
        })?;
        self.write(data)?;
        self.pad()
    }

    /// A character device node (`major`, `minor`) at the absolute `path`.
    pub(super) fn char_dev(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        let name = relative(path)?;
        self.parents(name)?;
        self.entry(&Header {
            name,
            mode: S_IFCHR | (perm & 0o7777),
            size: 0,
            nlink: 1,
            rdev: (major, minor),
        })
    }

    /// Writes the trailer and returns the output.
    pub(super) fn finish(mut self) -> io::Result<W> {
        self.ino = 0;
        self.entry(&Header {
            name: "TRAILER!!!",
            mode: 0,
            size: 0,
            nlink: 1,
            rdev: (0, 0),
        })?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes the directories above `name` not written yet.
    fn parents(&mut self, name: &str) -> io::Result<()> {
        let mut end = 0;
        while let Some(i) = name[end..].find('/') {
            end += i;
            let parent = &name[..end];
            if !parent.is_empty() && self.dirs.insert(parent.to_string()) {
                self.entry(&Header {
                    name: parent,
                    mode: S_IFDIR | 0o755,
                    size: 0,
                    nlink: 2,
                    rdev: (0, 0),
                })?;
            }
            end += 1;
        }
        Ok(())
    }

    fn entry(&mut self, h: &Header<'_>) -> io::Result<()> {
        let namesize = u32::try_from(h.name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        let ino = self.ino;
        self.ino = self.ino.wrapping_add(1);
        let header = format!(
            "070701{ino:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
            h.mode, 0, 0, h.nlink, 0, h.size, 0, 0, h.rdev.0, h.rdev.1, 0
        );
        self.write(header.as_bytes())?;
        self.write(h.name.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Pads to a multiple of 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.pos % 4) as usize) % 4;
        self.write(&[0; 3][..n])
    }
}

/// `path` without its leading `/`; it must be absolute and clean.
fn relative(path: &str) -> io::Result<&str> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{path:?}: not a clean absolute path"),
        )
    };
    let rel = path.strip_prefix('/').ok_or_else(bad)?;
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    if rel
        .split('/')
        .any(|c| (c.is_empty() && !rel.is_empty()) || c == "." || c == "..")
        || rel.contains('\0')
    {
        return Err(bad());
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: (name, mode, rdev, data).
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads the entries back.
    fn parse(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let start = b.len();
        let hex = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap(), 16).unwrap();
        loop {
            assert_eq!(&b[..6], b"070701");
            let f = |i: usize| hex(&b[6 + i * 8..14 + i * 8]);
            let (mode, size, rmaj, rmin, namesize) = (f(1), f(6), f(9), f(10), f(11));
            let name = String::from_utf8(b[110..110 + namesize as usize - 1].to_vec()).unwrap();
            let mut off = 110 + namesize as usize;
            off += (4 - (start - b.len() + off) % 4) % 4;
            b = &b[off..];
            if name == "TRAILER!!!" {
                return out;
            }
            let data = b[..size as usize].to_vec();
            let off = size as usize + (4 - (start - b.len() + size as usize) % 4) % 4;
            b = &b[off..];
            out.push((name, mode, (rmaj, rmin), data));
        }
    }

    #[test]
    fn writes_parents_first_once_and_aligned() {
        let mut w = Writer::new(Vec::new());
        w.dir("/dev", 0o755).unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.file("/lib/x86_64-linux-gnu/libc.so.6", 0o755, b"abcde")
            .unwrap();
        w.file("/lib/x86_64-linux-gnu/libm.so.6", 0o644, b"")
            .unwrap();
        w.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        let e = parse(&out);
        let names: Vec<_> = e.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "lib",
                "lib/x86_64-linux-gnu",
                "lib/x86_64-linux-gnu/libc.so.6",
                "lib/x86_64-linux-gnu/libm.so.6",
                "init"
            ]
        );
        assert_eq!(e[1].1, 0o020600);
        assert_eq!(e[1].2, (5, 1));
        assert_eq!(e[4].1, 0o100755);
        assert_eq!(e[4].3, b"abcde");
        assert_eq!(e[6].3, b"#!/bin/sh\n");
    }

    #[test]
    fn rejects_unclean_paths() {
        let mut w = Writer::new(Vec::new());
        for p in ["init", "/a/../b", "/a//b", "/./a"] {
            assert!(w.file(p, 0o644, b"").is_err(), "{p}");
        }
    }
}
