//! The image file as fstool's block device.
//!
//! fstool's own `FileBackend` seeks before every read and write and
//! `fdatasync`s after each formatting stage (five times for an empty file
//! system). This device reads and writes positionally (one system call
//! each), punches holes for zeroed ranges so the image stays sparse, and
//! leaves durability to the output policy (docs/OUTPUTS.md#durability):
//! `sync` is a no-op, and nothing is flushed at the end either, like every
//! other output b9 writes (mkfs.ext4 does `fsync`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use fstool::block::BlockDevice;
use rustix::fs::{fallocate, FallocateFlags};

/// Sector size fstool may use for alignment hints.
const SECTOR: u32 = 512;

/// A regular image file of fixed length.
pub(crate) struct ImageFile {
    file: File,
    size: u64,
    /// Stream position for fstool's `Read`/`Write`/`Seek` users.
    pos: u64,
    /// Whether a write to the image failed (fstool's errors do not say
    /// which file an I/O error came from when it copies a host file in).
    write_failed: bool,
}

impl ImageFile {
    /// Creates (or truncates) `path` as a sparse file of `size` bytes, or
    /// opens the block device `path` (exclusively: not one that is
    /// mounted), which must hold at least `size` bytes.
    pub(crate) fn create(path: &Path, size: u64) -> io::Result<ImageFile> {
        if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device()) {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_EXCL)
                .open(path)?;
            let capacity = file.seek(SeekFrom::End(0))?;
            if capacity < size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the device holds {capacity} bytes, the file system needs {size}"),
                ));
            }
            return Ok(ImageFile {
                file,
                size,
                pos: 0,
                write_failed: false,
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(size)?;
        Ok(ImageFile {
            file,
            size,
            pos: 0,
            write_failed: false,
        })
    }

    /// True once a write to the image failed.
    pub(crate) fn write_failed(&self) -> bool {
        self.write_failed
    }

    /// Notes a failed write to the image and passes its error on.
    fn failed<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        self.write_failed |= r.is_err();
        r
    }

    fn check(&self, offset: u64, len: u64) -> fstool::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(fstool::Error::OutOfBounds {
                offset,
                len,
                size: self.size,
            }),
        }
    }

    /// Writes zeros over `[offset, offset + len)` (for file systems that
    /// cannot punch holes).
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()> {
        let zero = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zero.len() as u64) as usize;
            self.file.write_all_at(&zero[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Fails once Ctrl-C or SIGTERM was received (where b9 watches for them),
/// so a long format or population stops between two writes. Not
/// `ErrorKind::Interrupted`: writers retry on that.
fn stop_if_interrupted() -> io::Result<()> {
    if crate::interrupt::cancelled() {
        return Err(io::Error::other("interrupted by Ctrl-C or SIGTERM"));
    }
    Ok(())
}

impl Read for ImageFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for ImageFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.size.saturating_sub(self.pos);
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the image",
            ));
        }
        stop_if_interrupted()?;
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.file.write_at(&buf[..n], self.pos);
        let n = self.failed(n)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for ImageFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the image start")
        })?;
        Ok(self.pos)
    }
}

impl BlockDevice for ImageFile {
    fn block_size(&self) -> u32 {
        SECTOR
    }

    fn total_size(&self) -> u64 {
        self.size
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> fstool::Result<()> {
        self.check(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if fallocate(&self.file, punch, offset, len).is_err() {
            let r = self.write_zeros(offset, len);
            self.failed(r)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> fstool::Result<()> {
        Ok(())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> fstool::Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> fstool::Result<()> {
        self.check(offset, buf.len() as u64)?;
        stop_if_interrupted()?;
        let r = self.file.write_all_at(buf, offset);
        self.failed(r)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positional_and_stream_io_agree_and_stay_in_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut f = ImageFile::create(&path, 8192).unwrap();
        f.write_at(4096, b"abcd").unwrap();
        f.seek(SeekFrom::Start(4094)).unwrap();
        let mut got = [0u8; 8];
        f.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\0\0abcd\0\0");
        assert!(f.write_at(8190, b"xyz").is_err());
        assert!(f.read_at(u64::MAX, &mut got).is_err());
        f.seek(SeekFrom::End(-2)).unwrap();
        assert_eq!(f.write(b"xyz").unwrap(), 2);
        assert!(f.write(b"z").is_err());
        assert!(f.seek(SeekFrom::Current(-9000)).is_err());
    }

    #[test]
    fn zero_range_clears_data_and_keeps_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut f = ImageFile::create(&path, 1 << 20).unwrap();
        f.write_at(0, &[0xaa; 1 << 20]).unwrap();
        f.zero_range(4096, 65536).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 1 << 20);
        assert!(data[4096..69632].iter().all(|&b| b == 0));
        assert!(data[..4096].iter().all(|&b| b == 0xaa));
        assert!(data[69632..].iter().all(|&b| b == 0xaa));
        assert!(f.zero_range(1 << 20, 1).is_err());
    }
}
