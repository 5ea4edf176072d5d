//! Raw images: plain files, read with the file system's own map of holes
//! (`SEEK_DATA`/`SEEK_HOLE`) and written sparse.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::disk::capability::{Extent, ImageReader, ImageWriter};
use crate::disk::error::DiskError;

/// A raw image opened for reading.
pub struct RawReader {
    file: File,
    size: u64,
    path: PathBuf,
}

impl RawReader {
    /// Opens a raw image (a regular file only); its size is the file's size.
    pub fn open(path: &Path) -> Result<RawReader, DiskError> {
        let io = |op, source| DiskError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let file = crate::disk::gate::open_regular(path)?;
        let size = file.metadata().map_err(|e| io("cannot stat", e))?.len();
        Ok(RawReader {
            file,
            size,
            path: path.to_path_buf(),
        })
    }
}

/// Reads `buf` at `offset` from a file, zero-filling past its end.
pub fn read_file_at(
    file: &File,
    path: &Path,
    buf: &mut [u8],
    offset: u64,
) -> Result<(), DiskError> {
    let mut done = 0;
    while done < buf.len() {
        let n = file
            .read_at(&mut buf[done..], offset + done as u64)
            .map_err(|source| DiskError::Io {
                op: "cannot read",
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            buf[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}

impl ImageReader for RawReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        read_file_at(&self.file, &self.path, buf, offset)
    }

    fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
        use rustix::fs::{seek, SeekFrom};
        let mut extents = Vec::new();
        let mut pos = 0u64;
        while pos < self.size {
            let start = match seek(&self.file, SeekFrom::Data(pos)) {
                Ok(s) => s,
                // No data after `pos`.
                Err(rustix::io::Errno::NXIO) => break,
                // A file system without hole information: everything may be data.
                Err(_) => {
                    return Ok(vec![Extent {
                        start: 0,
                        len: self.size,
                    }])
                }
            };
            let end = seek(&self.file, SeekFrom::Hole(start))
                .unwrap_or(self.size)
                .min(self.size);
            if end > start {
                extents.push(Extent {
                    start,
                    len: end - start,
                });
            }
            pos = end.max(start + 1);
        }
        Ok(extents)
    }
}

/// A new raw image: a sparse file of the virtual size.
pub struct RawWriter {
    file: File,
    path: PathBuf,
}

impl RawWriter {
    /// Creates (or truncates) `path` as a sparse file of `size` bytes.
    pub fn create(path: &Path, size: u64) -> Result<RawWriter, DiskError> {
        let io = |op, source| DiskError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(|e| io("cannot create", e))?;
        file.set_len(size).map_err(|e| io("cannot size", e))?;
        Ok(RawWriter {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl ImageWriter for RawWriter {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.file
            .write_all_at(data, offset)
            .map_err(|source| DiskError::Io {
                op: "cannot write",
                path: self.path.clone(),
                source,
            })
    }

    fn finish(self: Box<Self>) -> Result<(), DiskError> {
        Ok(())
    }
}

/// Sets a raw image's size (grow or shrink), keeping its data.
pub fn resize(path: &Path, size: u64) -> Result<(), DiskError> {
    let io = |op, source| DiskError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io("cannot open", e))?;
    file.set_len(size).map_err(|e| io("cannot resize", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_write_then_extents_and_reads() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.raw");
        let mut w = Box::new(RawWriter::create(&p, 64 << 20).unwrap());
        w.write_at(1 << 20, &[7u8; 4096]).unwrap();
        w.write_at(40 << 20, &[9u8; 8192]).unwrap();
        w.finish().unwrap();
        let r = RawReader::open(&p).unwrap();
        assert_eq!(r.size(), 64 << 20);
        let ext = r.data_extents().unwrap();
        let covered = |o: u64| ext.iter().any(|e| e.start <= o && o < e.start + e.len);
        assert!(covered(1 << 20) && covered(40 << 20));
        assert!(ext.iter().map(|e| e.len).sum::<u64>() < 8 << 20, "{ext:?}");
        let mut buf = [0u8; 8];
        r.read_at(&mut buf, (40 << 20) + 8190).unwrap();
        assert_eq!(buf, [9, 9, 0, 0, 0, 0, 0, 0]);
        r.read_at(&mut buf, (64 << 20) - 4).unwrap();
        assert_eq!(buf, [0; 8]);
    }
}
