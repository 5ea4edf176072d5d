//! qcow2 through the `imago` crate: reading (v2/v3, backing chains, zlib
//! clusters), creating (v3, 64 KiB clusters), overlays with a backing file,
//! and resizing. New images written front to back use `qcow2_stream`.
//!
//! imago trusts most of what a qcow2 header says, so every qcow2 file —
//! the image and each qcow2 image of its backing chain — is first checked by
//! `qcow2_header` (header fields and L1 table bounded as QEMU bounds them),
//! and calls into imago are guarded so a panic becomes an error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use imago::file::File as ImagoFile;
use imago::format::gate::ImplicitOpenGate;
use imago::qcow2::Qcow2;
use imago::{
    FormatAccess, FormatCreateBuilder, FormatDriverBuilder, Mapping, Storage, StorageCreateOptions,
    StorageOpenOptions,
};

use crate::bytes::be_u32;
use crate::disk::capability::{Extent, ImageReader};
use crate::disk::error::DiskError;
use crate::disk::gate;
use crate::disk::qcow2_header::{self, MAGIC};

/// The cluster size of images b9 creates (qemu-img's default).
pub const CLUSTER_SIZE: usize = 65536;

/// How many backing images deep a chain may go (a loop of backing files
/// ends here instead of exhausting the stack).
const MAX_CHAIN_DEPTH: usize = 64;

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
        qcow2_header::check(path)?;
        let gate = CheckedGate::top(path);
        let refusal = Arc::clone(&gate.refusal);
        let q = guard(path, || {
            Qcow2::<ImagoFile>::builder_path(path)
                .write(writable)
                .open(gate)
                .map_err(|e| take_refusal(&refusal).unwrap_or_else(|| classify(path, e)))
        })?;
        Ok(Qcow2Image {
            access: FormatAccess::new(q),
            path: path.to_path_buf(),
        })
    }

    /// Creates a new, empty image of `size` bytes, optionally on top of a
    /// backing image (whose format is recorded, so QEMU never probes it).
    /// b9 chose that backing file, so this process opens the overlay
    /// trusting it (`gate::own_overlay`).
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
        if backing.is_some() {
            gate::own_overlay(path);
        }
        normalize_header(path)
    }

    /// Writes `buf` at `offset` of an image opened writable (clusters
    /// allocated as needed).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        guard(&self.path, || {
            self.access
                .write(buf, offset)
                .map_err(io_err("cannot write", &self.path))
        })
    }

    /// Flushes what was written, then closes the image.
    pub fn close(self) -> Result<(), DiskError> {
        self.access
            .flush()
            .map_err(io_err("cannot flush", &self.path))?;
        let path = self.path.clone();
        drop(self);
        normalize_header(&path)
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
        self.close()
    }
}

/// Opens what a qcow2 image names (backing images, an external data file)
/// for imago, with b9's checks: only regular files (`gate`), inside the
/// image's directory or a trusted one (`gate::confine`), each qcow2 layer's
/// header and L1 table checked before imago reads it, at most
/// `MAX_CHAIN_DEPTH` images deep. imago turns errors into text on the way
/// up, so the first refusal is also kept whole for the caller.
struct CheckedGate {
    /// Backing images above the ones this gate opens.
    depth: usize,
    /// The first refusal of this gate or the ones below it.
    refusal: Arc<Mutex<Option<DiskError>>>,
    /// The image whose backing and data files this gate opens.
    image: PathBuf,
    /// The top image, which the first gate opens too (the user named it).
    top: bool,
    /// Whether the image's own references are trusted: an overlay b9 made
    /// over a backing file it chose (`gate::own_overlay`).
    trusted: bool,
}

impl CheckedGate {
    /// The gate for opening the image at `path` and what it names.
    fn top(path: &Path) -> CheckedGate {
        CheckedGate {
            depth: 0,
            refusal: Arc::default(),
            image: path.to_path_buf(),
            top: true,
            trusted: gate::is_own_overlay(path),
        }
    }

    /// Keeps `e` (unless an earlier refusal is kept) and hands imago its text.
    fn refuse(&self, e: DiskError) -> std::io::Error {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
        if let Ok(mut kept) = self.refusal.lock() {
            kept.get_or_insert(e);
        }
        io
    }

    /// Refuses an image one level too deep.
    fn check_depth(&self, path: &Path) -> Result<(), DiskError> {
        if self.depth < MAX_CHAIN_DEPTH {
            return Ok(());
        }
        Err(DiskError::Corrupt {
            path: path.to_path_buf(),
            format: "qcow2",
            field: "backing chain".into(),
            problem: format!(
                "more than {MAX_CHAIN_DEPTH} backing images deep (do the backing files form a loop?)"
            ),
        })
    }
}

/// The refusal a `CheckedGate` kept, if any.
fn take_refusal(refusal: &Mutex<Option<DiskError>>) -> Option<DiskError> {
    refusal.lock().ok().and_then(|mut kept| kept.take())
}

impl ImplicitOpenGate<ImagoFile> for CheckedGate {
    fn open_format<F: FormatDriverBuilder<ImagoFile>>(
        &mut self,
        builder: F,
    ) -> std::io::Result<FormatAccess<ImagoFile>> {
        let path = builder.get_image_path().unwrap_or_default();
        self.check_depth(&path).map_err(|e| self.refuse(e))?;
        if F::FORMAT == imago::format::Format::Qcow2 {
            qcow2_header::check(&path).map_err(|e| self.refuse(e))?;
        }
        let below = CheckedGate {
            depth: self.depth + 1,
            refusal: Arc::clone(&self.refusal),
            image: path,
            top: false,
            trusted: false,
        };
        Ok(FormatAccess::new(builder.open(below)?))
    }

    fn open_storage(&mut self, options: StorageOpenOptions) -> std::io::Result<ImagoFile> {
        if let Some(path) = options.get_filename() {
            let named = !(self.top && path == self.image);
            if named && !self.trusted {
                // imago opens backing files read-only, a data file writable.
                let what = if options.get_writable() {
                    "external data file"
                } else {
                    "backing file"
                };
                // imago resolved the name against the image's directory
                // already (relative to the working directory).
                let resolved = std::path::absolute(path).map_err(|source| {
                    self.refuse(DiskError::Io {
                        op: "cannot resolve",
                        path: path.to_path_buf(),
                        source,
                    })
                })?;
                gate::confine(&self.image, what, &resolved).map_err(|e| self.refuse(e))?;
            }
            gate::check_regular(path).map_err(|e| self.refuse(e))?;
        }
        ImagoFile::open(options)
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
            // Ask for the rest of the disk: imago answers up to the end of one
            // L2 table, so there is one step per L1 entry and per run of
            // clusters, both bounded by the file's length (`qcow2_header`).
            // A fixed step would add size/step steps: 2^31 for a 2 EiB disk.
            while pos < size {
                let (mapping, len) = self
                    .access
                    .get_mapping(pos, size - pos)
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
    let be32 = |h: &[u8], o: usize| be_u32(h, o).unwrap_or(0);
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
    let h = qcow2_header::read(path)?;
    if h.backing_file_offset == 0 || h.backing_file_size == 0 {
        return Ok(None);
    }
    let file = gate::open_regular(path)?;
    // At most 1023 bytes, inside the first cluster (checked by `read`).
    let mut name = vec![0u8; h.backing_file_size as usize];
    crate::disk::raw::read_file_at(&file, path, &mut name, h.backing_file_offset)?;
    let name = String::from_utf8(name).map_err(|_| DiskError::Corrupt {
        path: path.to_path_buf(),
        format: "qcow2",
        field: "backing file name".into(),
        problem: "not UTF-8".into(),
    })?;
    Ok(Some((name, backing_format(&file, path, &h)?)))
}

/// The backing format from the header extensions (after the header, inside
/// the first cluster).
fn backing_format(
    file: &std::fs::File,
    path: &Path,
    h: &qcow2_header::Header,
) -> Result<Option<String>, DiskError> {
    let cluster = 1usize << h.cluster_bits;
    let mut header = vec![0u8; cluster.min(4096)];
    crate::disk::raw::read_file_at(file, path, &mut header, 0)?;
    let be32 = |o: usize| be_u32(&header, o).unwrap_or(0);
    let mut pos = h.header_length as usize;
    let mut format = None;
    while pos + 8 <= header.len() {
        let (kind, ext_len) = (be32(pos), be32(pos + 4) as usize);
        if kind == 0 {
            break;
        }
        let data = pos + 8;
        let Some(end) = data.checked_add(ext_len).filter(|&e| e <= header.len()) else {
            return Err(DiskError::Corrupt {
                path: path.to_path_buf(),
                format: "qcow2",
                field: "header extension".into(),
                problem: format!("length {ext_len} runs past the header cluster"),
            });
        };
        if kind == EXT_BACKING_FORMAT {
            format = Some(String::from_utf8_lossy(&header[data..end]).into_owned());
        }
        pos = data + ext_len.div_ceil(8) * 8;
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::capability::ImageWriter;

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

    #[test]
    fn a_backing_loop_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("loop.qcow2");
        Qcow2Image::create(&p, 1 << 20, Some((&p, "qcow2"))).unwrap();
        let e = Qcow2Image::open(&p, false).err().unwrap();
        assert!(
            matches!(&e, DiskError::Corrupt { field, .. } if field == "backing chain"),
            "{e}"
        );
    }

    #[test]
    fn a_backing_device_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("dev.qcow2");
        Qcow2Image::create(&p, 1 << 20, Some((Path::new("/dev/zero"), "raw"))).unwrap();
        let e = Qcow2Image::open(&p, false).err().unwrap();
        assert!(
            e.to_string()
                .contains("/dev/zero: a character device, not a regular file"),
            "{e}"
        );
    }

    /// A sparse image of 2^55 bytes: 2 MiB clusters, an empty L1 table of
    /// 65536 entries. Mapping it takes one step per L1 entry, not one per
    /// GiB (2^25).
    #[test]
    fn a_huge_empty_disk_maps_in_one_step_per_l1_entry() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("huge.qcow2");
        let mut h = vec![0u8; 104];
        let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, MAGIC);
        put(4, &3u32.to_be_bytes());
        put(20, &21u32.to_be_bytes());
        put(24, &(1u64 << 55).to_be_bytes());
        put(36, &65536u32.to_be_bytes());
        put(40, &(4u64 << 20).to_be_bytes());
        put(48, &(2u64 << 20).to_be_bytes());
        put(56, &1u32.to_be_bytes());
        put(96, &4u32.to_be_bytes());
        put(100, &104u32.to_be_bytes());
        let f = std::fs::File::create(&p).unwrap();
        f.write_all_at(&h, 0).unwrap();
        f.set_len((4 << 20) + 65536 * 8).unwrap();
        let r = Qcow2Image::open(&p, false).unwrap();
        assert_eq!(r.size(), 1 << 55);
        assert_eq!(r.data_extents().unwrap(), vec![]);
    }
}
