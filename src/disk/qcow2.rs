//! qcow2 through the `imago` crate: reading (v2/v3, backing chains, zlib
//! clusters), creating (v3, 64 KiB clusters), overlays with a backing file,
//! and resizing. New images written front to back use `qcow2_stream`.

use std::path::{Path, PathBuf};

use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::{
    FormatAccess, FormatCreateBuilder, FormatDriverBuilder, Mapping, PermissiveImplicitOpenGate,
    Storage, StorageCreateOptions,
};

use crate::disk::error::DiskError;
use crate::disk::image::{Extent, ImageReader};

/// The cluster size of images b9 creates (qemu-img's default).
pub const CLUSTER_SIZE: usize = 65536;

/// The first four bytes of every qcow2 image.
pub const MAGIC: &[u8; 4] = b"QFI\xfb";

/// Longest mapping asked for at once while listing data extents.
const MAPPING_STEP: u64 = 1 << 30;

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl Fn(std::io::Error) -> DiskError + 'p {
    move |source| DiskError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A qcow2 image opened with imago.
pub struct Qcow2Image {
    access: FormatAccess<ImagoFile>,
    path: PathBuf,
}

impl Qcow2Image {
    /// Opens an image (and, through it, its backing chain) read-only or writable.
    pub fn open(path: &Path, writable: bool) -> Result<Qcow2Image, DiskError> {
        let q = guard(path, || {
            Qcow2::<ImagoFile>::builder_path(path)
                .write(writable)
                .open(PermissiveImplicitOpenGate::default())
                .map_err(|e| classify(path, e))
        })?;
        Ok(Qcow2Image {
            access: FormatAccess::new(q),
            path: path.to_path_buf(),
        })
    }

    /// Creates a new, empty image of `size` bytes, optionally on top of a
    /// backing image (whose format is recorded, so QEMU never probes it).
    pub fn create(path: &Path, size: u64, backing: Option<(&Path, &str)>) -> Result<(), DiskError> {
        let storage = ImagoFile::create_open(
            StorageCreateOptions::new()
                .filename(path)
                .size(0)
                .overwrite(true),
        )
        .map_err(io_err("cannot create", path))?;
        let mut builder = Qcow2::<ImagoFile>::create_builder(storage)
            .size(size)
            .cluster_size(CLUSTER_SIZE);
        if let Some((file, format)) = backing {
            builder = builder.backing(file.to_string_lossy().into_owned(), format.to_string());
        }
        builder.create().map_err(io_err("cannot create", path))?;
        normalize_header(path)
    }

    /// Grows or shrinks the virtual size, then closes the image.
    pub fn resize(mut self, size: u64) -> Result<(), DiskError> {
        let current = self.access.size();
        let result = if size >= current {
            self.access
                .resize_grow(size, imago::format::PreallocateMode::None)
        } else {
            self.access.resize_shrink(size)
        };
        result.map_err(io_err("cannot resize", &self.path))?;
        self.access
            .flush()
            .map_err(io_err("cannot flush", &self.path))?;
        let path = self.path.clone();
        drop(self);
        normalize_header(&path)
    }
}

/// Runs a call into imago; a panic on malformed data becomes a `Corrupt`
/// error instead of ending b9 (images are hostile input).
fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, DiskError>) -> Result<T, DiskError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(DiskError::Corrupt {
            path: path.to_path_buf(),
            format: "qcow2",
            field: "image".into(),
            problem: "the qcow2 reader failed on malformed data".into(),
        })
    })
}

/// Sorts imago's errors: an `InvalidData` error is a corrupt image.
fn classify(path: &Path, e: std::io::Error) -> DiskError {
    match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => DiskError::Corrupt {
            path: path.to_path_buf(),
            format: "qcow2",
            field: "header".into(),
            problem: e.to_string(),
        },
        std::io::ErrorKind::Unsupported => DiskError::Unsupported {
            path: path.to_path_buf(),
            format: "qcow2",
            what: e.to_string(),
        },
        _ => DiskError::Io {
            op: "cannot open",
            path: path.to_path_buf(),
            source: e,
        },
    }
}

impl ImageReader for Qcow2Image {
    fn size(&self) -> u64 {
        self.access.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let size = self.access.size();
        let inside = usize::try_from(size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (head, tail) = buf.split_at_mut(inside);
        tail.fill(0);
        if head.is_empty() {
            return Ok(());
        }
        guard(&self.path, || {
            self.access
                .read(head, offset)
                .map_err(io_err("cannot read", &self.path))
        })
    }

    fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
        guard(&self.path, || {
            let size = self.access.size();
            let mut extents: Vec<Extent> = Vec::new();
            let mut pos = 0;
            while pos < size {
                let (mapping, len) = self
                    .access
                    .get_mapping(pos, MAPPING_STEP.min(size - pos))
                    .map_err(io_err("cannot read the cluster map of", &self.path))?;
                let len = len.clamp(1, size - pos);
                let data = !matches!(mapping, Mapping::Zero { .. } | Mapping::Eof { .. });
                if data {
                    match extents.last_mut() {
                        Some(last) if last.start + last.len == pos => last.len += len,
                        _ => extents.push(Extent { start: pos, len }),
                    }
                }
                pos += len;
            }
            Ok(extents)
        })
    }
}

/// Header extension type: the backing file's format name.
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;

/// Header extension type: the feature name table.
const EXT_FEATURE_NAMES: u32 = 0x6803_F857;

/// One entry of the feature name table: type, bit, 46 bytes of name.
const FEATURE_ENTRY: usize = 48;

/// Puts the feature name table in a fixed order (imago writes it in hash
/// order), so the same image is the same bytes every time.
pub fn normalize_header(path: &Path) -> Result<(), DiskError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("cannot open", path))?;
    let mut header = vec![0u8; 4096];
    crate::disk::raw::read_file_at(&file, path, &mut header, 0)?;
    let be32 = |h: &[u8], o: usize| u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    if &header[..4] != MAGIC || be32(&header, 4) != 3 {
        return Ok(());
    }
    let mut pos = be32(&header, 100) as usize;
    while pos + 8 <= header.len() {
        let (kind, len) = (be32(&header, pos), be32(&header, pos + 4) as usize);
        let data = pos + 8;
        let Some(end) = data.checked_add(len).filter(|&e| e <= header.len()) else {
            return Ok(());
        };
        if kind == 0 {
            return Ok(());
        }
        if kind == EXT_FEATURE_NAMES && len % FEATURE_ENTRY == 0 {
            let mut entries: Vec<Vec<u8>> = header[data..end]
                .chunks(FEATURE_ENTRY)
                .map(<[u8]>::to_vec)
                .collect();
            entries.sort();
            let sorted = entries.concat();
            if sorted != header[data..end] {
                file.write_all_at(&sorted, data as u64)
                    .map_err(io_err("cannot write", path))?;
            }
            return Ok(());
        }
        pos = data + len.div_ceil(8) * 8;
    }
    Ok(())
}

/// The backing file name and format recorded in a qcow2 header, if any.
pub fn backing_of(path: &Path) -> Result<Option<(String, Option<String>)>, DiskError> {
    let file = std::fs::File::open(path).map_err(io_err("cannot open", path))?;
    let corrupt = |field: &str, problem: String| DiskError::Corrupt {
        path: path.to_path_buf(),
        format: "qcow2",
        field: field.to_string(),
        problem,
    };
    let mut header = [0u8; 4096];
    crate::disk::raw::read_file_at(&file, path, &mut header, 0)?;
    let be32 =
        |o: usize| u32::from_be_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
    if &header[..4] != MAGIC {
        return Err(corrupt("magic", "not a qcow2 image".into()));
    }
    let version = be32(4);
    let offset = (u64::from(be32(8)) << 32) | u64::from(be32(12));
    let len = be32(16);
    if offset == 0 || len == 0 {
        return Ok(None);
    }
    if len > 1023 {
        return Err(corrupt(
            "backing_file_size",
            format!("{len} is more than 1023 bytes"),
        ));
    }
    let mut name = vec![0u8; len as usize];
    crate::disk::raw::read_file_at(&file, path, &mut name, offset)?;
    let name =
        String::from_utf8(name).map_err(|_| corrupt("backing file name", "not UTF-8".into()))?;
    let header_len = match version {
        2 => 72,
        3 => be32(100) as usize,
        v => return Err(corrupt("version", format!("{v} (expected 2 or 3)"))),
    };
    let mut pos = header_len;
    let mut format = None;
    while pos + 8 <= header.len() {
        let (kind, ext_len) = (be32(pos), be32(pos + 4) as usize);
        if kind == 0 {
            break;
        }
        let data = pos + 8;
        let Some(end) = data.checked_add(ext_len).filter(|&e| e <= header.len()) else {
            return Err(corrupt(
                "header extension",
                format!("length {ext_len} runs past the header cluster"),
            ));
        };
        if kind == EXT_BACKING_FORMAT {
            format = Some(String::from_utf8_lossy(&header[data..end]).into_owned());
        }
        pos = data + ext_len.div_ceil(8) * 8;
    }
    Ok(Some((name, format)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::image::ImageWriter;

    #[test]
    fn create_write_read_and_map() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.qcow2");
        let mut w =
            Box::new(crate::disk::qcow2_stream::Qcow2StreamWriter::create(&p, 64 << 20).unwrap());
        w.write_at(1 << 20, &[5u8; 100_000]).unwrap();
        w.finish().unwrap();
        let r = Qcow2Image::open(&p, false).unwrap();
        assert_eq!(r.size(), 64 << 20);
        let mut buf = vec![0u8; 16];
        r.read_at(&mut buf, (1 << 20) + 99_992).unwrap();
        assert_eq!(&buf[..8], &[5u8; 8]);
        assert_eq!(&buf[8..], &[0u8; 8]);
        let ext = r.data_extents().unwrap();
        assert_eq!(
            ext,
            vec![Extent {
                start: 1 << 20,
                len: 2 * CLUSTER_SIZE as u64
            }]
        );
        assert_eq!(backing_of(&p).unwrap(), None);
        let overlay = d.path().join("b.qcow2");
        Qcow2Image::create(&overlay, 64 << 20, Some((&p, "qcow2"))).unwrap();
        let (file, format) = backing_of(&overlay).unwrap().unwrap();
        assert_eq!(
            (file.as_str(), format.as_deref()),
            (p.to_str().unwrap(), Some("qcow2"))
        );
        let r = Qcow2Image::open(&overlay, false).unwrap();
        r.read_at(&mut buf, 1 << 20).unwrap();
        assert_eq!(buf, vec![5u8; 16]);
    }
}
