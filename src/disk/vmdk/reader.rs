//! Reading VMDK images. Images are hostile input: every header field is
//! checked before it is used, sizes are computed with checked arithmetic,
//! and no table is allocated larger than the file that holds it.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flate2::{Decompress, FlushDecompress, Status};

use super::descriptor::{self, Access, ExtentType, ParseError, MAX_DESCRIPTOR};
use super::header::{
    decode_marker, HeaderError, SparseHeader, COMPRESSION_DEFLATE, COMPRESSION_NONE,
    FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NL_DETECT, FLAG_ZERO_GRAIN, GD_AT_END, GRAIN_MARKER_HEADER,
    KNOWN_FLAGS, MAGIC, MARKER_EOS, MARKER_FOOTER, SECTOR,
};
use super::MAX_CAPACITY_SECTORS;
use crate::bytes::le_u32;
use crate::disk::capability::{Extent, ImageReader};
use crate::disk::error::DiskError;
use crate::disk::gate;

/// Largest grain b9 reads: 1 MiB (qemu writes 64 KiB).
const MAX_GRAIN_SECTORS: u64 = 2048;
/// Grain table entries per grain table: the only value VMware allows.
const GTES_PER_GT: u64 = 512;
/// No grain table for this directory entry.
const NO_TABLE: u32 = u32::MAX;
/// The text descriptor file's first line.
pub(crate) const DESCRIPTOR_SIGNATURE: &[u8] = b"# Disk DescriptorFile";

fn corrupt(path: &Path, field: impl Into<String>, problem: impl Into<String>) -> DiskError {
    DiskError::Corrupt {
        path: path.to_path_buf(),
        format: "vmdk",
        field: field.into(),
        problem: problem.into(),
    }
}

fn unsupported(path: &Path, what: impl Into<String>) -> DiskError {
    DiskError::Unsupported {
        path: path.to_path_buf(),
        format: "vmdk",
        what: what.into(),
    }
}

fn io_err(path: &Path, op: &'static str, source: std::io::Error) -> DiskError {
    DiskError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads as much of `buf` as the file holds at `off`; the rest (past the
/// end of the file) becomes zeros.
fn pread_fill(file: &File, path: &Path, buf: &mut [u8], off: u64) -> Result<(), DiskError> {
    let mut done = 0;
    while done < buf.len() {
        let at = off
            .checked_add(done as u64)
            .ok_or_else(|| corrupt(path, "offset", "past 2^64"))?;
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path, "cannot read", e)),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// Reads exactly `buf` at `off`, which the caller checked lies in the file.
fn pread_exact(file: &File, path: &Path, buf: &mut [u8], off: u64) -> Result<(), DiskError> {
    file.read_exact_at(buf, off)
        .map_err(|e| io_err(path, "cannot read", e))
}

/// `sectors * 512`, or a Corrupt error naming `field`.
fn sectors_to_bytes(path: &Path, field: &str, sectors: u64) -> Result<u64, DiskError> {
    sectors
        .checked_mul(SECTOR)
        .ok_or_else(|| corrupt(path, field, format!("{sectors} sectors overflow")))
}

/// A hosted sparse extent (`KDMV`), monolithicSparse or streamOptimized.
struct SparseExtent {
    file: File,
    path: PathBuf,
    file_len: u64,
    grain_bytes: u64,
    capacity_bytes: u64,
    compressed: bool,
    zero_grain: bool,
    /// Per grain directory entry: index into `tables`, or `NO_TABLE`.
    dir: Vec<u32>,
    /// The distinct grain tables (512 entries each).
    tables: Vec<Box<[u32]>>,
    /// The last decompressed grain: (file sector, bytes).
    cache: Mutex<Option<(u64, Vec<u8>)>>,
}

/// Checks the fields that need no file layout knowledge.
fn check_header(path: &Path, h: &SparseHeader, where_: &str) -> Result<(), DiskError> {
    if !(1..=3).contains(&h.version) {
        return Err(unsupported(
            path,
            format!("sparse extent version {} ({where_})", h.version),
        ));
    }
    if h.flags & !KNOWN_FLAGS != 0 {
        return Err(unsupported(
            path,
            format!(
                "sparse extent flags {:#x} ({where_})",
                h.flags & !KNOWN_FLAGS
            ),
        ));
    }
    if h.flags & FLAG_NL_DETECT != 0 && !h.check_bytes_ok {
        return Err(corrupt(
            path,
            format!("new-line detection bytes ({where_})"),
            "damaged (was the file transferred in text mode?)",
        ));
    }
    if h.grain_size == 0 || !h.grain_size.is_power_of_two() || h.grain_size > MAX_GRAIN_SECTORS {
        return Err(corrupt(
            path,
            format!("grain size ({where_})"),
            format!(
                "{} sectors; must be a power of two up to {MAX_GRAIN_SECTORS}",
                h.grain_size
            ),
        ));
    }
    if u64::from(h.num_gtes_per_gt) != GTES_PER_GT {
        return Err(unsupported(
            path,
            format!(
                "{} grain table entries per grain table ({where_}); only 512 is supported",
                h.num_gtes_per_gt
            ),
        ));
    }
    if h.capacity > MAX_CAPACITY_SECTORS {
        return Err(corrupt(
            path,
            format!("capacity ({where_})"),
            format!(
                "{} sectors is more than the {MAX_CAPACITY_SECTORS} b9 accepts",
                h.capacity
            ),
        ));
    }
    let compressed = h.flags & FLAG_COMPRESSED != 0 || h.compress_algorithm == COMPRESSION_DEFLATE;
    if compressed {
        if h.compress_algorithm != COMPRESSION_DEFLATE {
            return Err(unsupported(
                path,
                format!("compression algorithm {}", h.compress_algorithm),
            ));
        }
        if h.flags & FLAG_MARKERS == 0 {
            return Err(unsupported(path, "compressed grains without grain markers"));
        }
    } else {
        if h.compress_algorithm != COMPRESSION_NONE {
            return Err(unsupported(
                path,
                format!("compression algorithm {}", h.compress_algorithm),
            ));
        }
        if h.flags & FLAG_MARKERS != 0 {
            return Err(unsupported(path, "markers without compression"));
        }
    }
    Ok(())
}

impl SparseExtent {
    fn open(file: File, path: &Path) -> Result<SparseExtent, DiskError> {
        let file_len = file
            .metadata()
            .map_err(|e| io_err(path, "cannot stat", e))?
            .len();
        if file_len < SECTOR {
            return Err(corrupt(
                path,
                "header",
                format!("the file is {file_len} bytes; a sparse extent header needs 512"),
            ));
        }
        let mut first = [0u8; 512];
        pread_exact(&file, path, &mut first, 0)?;
        let mut h = match SparseHeader::decode(&first) {
            Ok(h) => h,
            Err(HeaderError::Truncated) => return Err(corrupt(path, "header", "truncated")),
            Err(HeaderError::BadMagic) => {
                return Err(corrupt(path, "magic", "not a sparse extent (KDMV)"))
            }
        };
        check_header(path, &h, "header")?;
        if h.gd_offset == GD_AT_END {
            h = Self::footer(&file, path, file_len)?;
        }

        let grain_sectors = h.grain_size;
        let grain_bytes = grain_sectors * SECTOR; // at most 1 MiB
        let capacity_bytes = h.capacity * SECTOR; // at most 2^46
        let grains = h.capacity.div_ceil(grain_sectors);
        let gt_count = grains.div_ceil(GTES_PER_GT);
        let gd_bytes = gt_count * 4;
        let compressed =
            h.flags & FLAG_COMPRESSED != 0 || h.compress_algorithm == COMPRESSION_DEFLATE;

        let grain_offset = sectors_to_bytes(path, "overhead", h.grain_offset)?;
        if grain_offset > file_len {
            return Err(corrupt(
                path,
                "overhead",
                format!("data starts at byte {grain_offset}, past the end of the {file_len}-byte file (truncated?)"),
            ));
        }
        Self::check_descriptor(&file, path, &h, file_len)?;

        let gd_start = sectors_to_bytes(path, "grain directory offset", h.gd_offset)?;
        if gt_count > 0
            && (h.gd_offset == 0
                || gd_start
                    .checked_add(gd_bytes)
                    .is_none_or(|end| end > file_len))
        {
            return Err(corrupt(
                path,
                "grain directory offset",
                format!(
                    "a {gd_bytes}-byte directory at sector {} does not lie within the {file_len}-byte file",
                    h.gd_offset
                ),
            ));
        }
        // Bounded by the file size (checked just above).
        let mut raw = vec![0u8; gd_bytes as usize];
        pread_exact(&file, path, &mut raw, gd_start)?;

        let mut dir = Vec::with_capacity(raw.len() / 4);
        let mut tables: Vec<Box<[u32]>> = Vec::new();
        let mut by_sector: HashMap<u32, u32> = HashMap::new();
        let mut table_bytes = [0u8; (GTES_PER_GT * 4) as usize];
        for (i, e) in raw.chunks_exact(4).enumerate() {
            let sector = le_u32(e, 0).unwrap_or(0);
            if sector == 0 {
                dir.push(NO_TABLE);
                continue;
            }
            if let Some(&t) = by_sector.get(&sector) {
                dir.push(t);
                continue;
            }
            let at = u64::from(sector) * SECTOR;
            if at + GTES_PER_GT * 4 > file_len {
                return Err(corrupt(
                    path,
                    format!("grain directory entry {i}"),
                    format!("grain table at sector {sector} lies past the end of the file"),
                ));
            }
            pread_exact(&file, path, &mut table_bytes, at)?;
            let first_grain = i as u64 * GTES_PER_GT;
            let table: Box<[u32]> = table_bytes
                .chunks_exact(4)
                .map(|b| le_u32(b, 0).unwrap_or(0))
                .collect();
            for (j, &g) in table.iter().enumerate() {
                if first_grain + j as u64 >= grains || g == 0 {
                    continue;
                }
                if g == 1 && h.flags & FLAG_ZERO_GRAIN != 0 {
                    continue;
                }
                let off = u64::from(g) * SECTOR;
                if off >= file_len {
                    return Err(corrupt(
                        path,
                        format!("grain table {i} entry {j}"),
                        format!("grain at sector {g} lies outside the {file_len}-byte file"),
                    ));
                }
            }
            // Lossless: fewer tables than directory entries, which fit in memory.
            let t = tables.len() as u32;
            tables.push(table);
            by_sector.insert(sector, t);
            dir.push(t);
        }
        Ok(SparseExtent {
            file,
            path: path.to_path_buf(),
            file_len,
            grain_bytes,
            capacity_bytes,
            compressed,
            zero_grain: h.flags & FLAG_ZERO_GRAIN != 0,
            dir,
            tables,
            cache: Mutex::new(None),
        })
    }

    /// The footer of a streamOptimized extent: footer marker, header copy,
    /// end-of-stream marker in the last three sectors.
    fn footer(file: &File, path: &Path, file_len: u64) -> Result<SparseHeader, DiskError> {
        let end = file_len / SECTOR * SECTOR;
        if end < 4 * SECTOR {
            return Err(corrupt(
                path,
                "footer",
                "the grain directory is at the end, but the file is too short for a footer",
            ));
        }
        let mut b = [0u8; 1536];
        pread_exact(file, path, &mut b, end - 1536)?;
        let mut m = [0u8; 16];
        m.copy_from_slice(&b[..16]);
        let (_, size, kind) = decode_marker(&m);
        if size != 0 || kind != MARKER_FOOTER {
            return Err(corrupt(
                path,
                "footer marker",
                "missing (is the stream complete?)",
            ));
        }
        m.copy_from_slice(&b[1024..1040]);
        if decode_marker(&m) != (0, 0, MARKER_EOS) {
            return Err(corrupt(path, "end-of-stream marker", "missing"));
        }
        if b[512..516] != MAGIC {
            return Err(corrupt(path, "footer", "does not start with KDMV"));
        }
        let h = SparseHeader::decode(&b[512..1024])
            .map_err(|_| corrupt(path, "footer", "not a sparse extent header"))?;
        check_header(path, &h, "footer")?;
        if h.gd_offset == GD_AT_END {
            return Err(corrupt(
                path,
                "footer grain directory offset",
                "also says \"at end\"",
            ));
        }
        Ok(h)
    }

    /// Reads the embedded descriptor, if any, to refuse delta disks.
    fn check_descriptor(
        file: &File,
        path: &Path,
        h: &SparseHeader,
        file_len: u64,
    ) -> Result<(), DiskError> {
        if h.desc_offset == 0 || h.desc_size == 0 {
            return Ok(());
        }
        let start = sectors_to_bytes(path, "descriptor offset", h.desc_offset)?;
        let len = sectors_to_bytes(path, "descriptor size", h.desc_size)?;
        if start >= file_len {
            return Err(corrupt(
                path,
                "descriptor offset",
                format!("sector {} is past the end of the file", h.desc_offset),
            ));
        }
        // Clipped to the file and to MAX_DESCRIPTOR, so the buffer is bounded.
        let len = len.min(file_len - start).min(MAX_DESCRIPTOR);
        let mut buf = vec![0u8; len as usize];
        pread_exact(file, path, &mut buf, start)?;
        let d = descriptor::parse(&buf).map_err(|e| match e {
            ParseError::Bad(m) => corrupt(path, "embedded descriptor", m),
            ParseError::Unsupported(m) => unsupported(path, m),
        })?;
        check_no_parent(path, &d)
    }

    /// The file sector of grain `g`, or None if it reads as zeros.
    fn grain_sector(&self, g: u64) -> Option<u64> {
        let t = usize::try_from(g / GTES_PER_GT).ok()?;
        let idx = *self.dir.get(t)?;
        let table = self.tables.get(usize::try_from(idx).ok()?)?;
        let v = *table.get(usize::try_from(g % GTES_PER_GT).ok()?)?;
        if v == 0 || (v == 1 && self.zero_grain) {
            None
        } else {
            Some(u64::from(v))
        }
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let gb = self.grain_bytes;
        let mut done = 0usize;
        while done < buf.len() {
            let off = offset + done as u64;
            if off >= self.capacity_bytes {
                buf[done..].fill(0);
                break;
            }
            let g = off / gb;
            let within = off % gb;
            let remaining = (buf.len() - done) as u64;
            let mut n = (gb - within).min(remaining).min(self.capacity_bytes - off);
            match self.grain_sector(g) {
                None => {
                    // Lossless: n <= remaining.
                    buf[done..done + n as usize].fill(0);
                }
                Some(sector) if !self.compressed => {
                    // Coalesce grains that follow each other in the file.
                    let mut next = g + 1;
                    while n < remaining
                        && off + n < self.capacity_bytes
                        && self.grain_sector(next) == Some(sector + (next - g) * (gb / SECTOR))
                    {
                        n = (n + gb).min(remaining).min(self.capacity_bytes - off);
                        next += 1;
                    }
                    pread_fill(
                        &self.file,
                        &self.path,
                        &mut buf[done..done + n as usize],
                        sector * SECTOR + within,
                    )?;
                }
                Some(sector) => {
                    let dst = &mut buf[done..done + n as usize];
                    self.read_compressed(sector, within as usize, dst)?;
                }
            }
            done += n as usize;
        }
        Ok(())
    }

    fn read_compressed(&self, sector: u64, within: usize, dst: &mut [u8]) -> Result<(), DiskError> {
        if let Some((s, data)) = lock(&self.cache).as_ref() {
            if *s == sector {
                dst.copy_from_slice(&data[within..within + dst.len()]);
                return Ok(());
            }
        }
        let data = self.inflate(sector)?;
        dst.copy_from_slice(&data[within..within + dst.len()]);
        *lock(&self.cache) = Some((sector, data));
        Ok(())
    }

    /// Reads and inflates the grain whose marker is at `sector`.
    fn inflate(&self, sector: u64) -> Result<Vec<u8>, DiskError> {
        let field = || format!("compressed grain at sector {sector}");
        let at = sector * SECTOR; // sector < 2^32
        let mut m = [0u8; GRAIN_MARKER_HEADER];
        if at + GRAIN_MARKER_HEADER as u64 > self.file_len {
            return Err(corrupt(&self.path, field(), "past the end of the file"));
        }
        pread_exact(&self.file, &self.path, &mut m, at)?;
        let size = u64::from(le_u32(&m, 8).unwrap_or(0));
        let data_at = at + GRAIN_MARKER_HEADER as u64;
        if size == 0 || size > 2 * self.grain_bytes || data_at + size > self.file_len {
            return Err(corrupt(
                &self.path,
                field(),
                format!(
                    "compressed size {size} is zero, larger than twice the grain or past the end of the file"
                ),
            ));
        }
        // Bounded: at most two grains (2 MiB).
        let mut input = vec![0u8; size as usize];
        pread_exact(&self.file, &self.path, &mut input, data_at)?;
        let mut out = vec![0u8; self.grain_bytes as usize];
        let mut z = Decompress::new(true);
        match z.decompress(&input, &mut out, FlushDecompress::Finish) {
            Ok(Status::StreamEnd) => Ok(out),
            Ok(_) => Err(corrupt(
                &self.path,
                field(),
                "the deflate stream is truncated or inflates to more than a grain",
            )),
            Err(e) => Err(corrupt(
                &self.path,
                field(),
                format!("bad deflate data: {e}"),
            )),
        }
    }

    /// Allocated grains, merged, relative to the extent.
    fn extents(&self, out: &mut Vec<Extent>, base: u64, limit: u64) {
        let gb = self.grain_bytes;
        let end_all = self.capacity_bytes.min(limit);
        for (t, &idx) in self.dir.iter().enumerate() {
            let Some(table) = usize::try_from(idx).ok().and_then(|i| self.tables.get(i)) else {
                continue;
            };
            for (j, &v) in table.iter().enumerate() {
                if v == 0 || (v == 1 && self.zero_grain) {
                    continue;
                }
                let start = (t as u64 * GTES_PER_GT + j as u64) * gb;
                if start >= end_all {
                    return;
                }
                let len = gb.min(end_all - start);
                push_merged(out, base + start, len);
            }
        }
    }
}

/// Locks the grain cache. A panic elsewhere cannot leave it half-written in
/// a way that matters: entries are replaced whole.
fn lock(c: &Mutex<Option<(u64, Vec<u8>)>>) -> std::sync::MutexGuard<'_, Option<(u64, Vec<u8>)>> {
    match c.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn push_merged(out: &mut Vec<Extent>, start: u64, len: u64) {
    if let Some(last) = out.last_mut() {
        if last.start + last.len == start {
            last.len += len;
            return;
        }
    }
    out.push(Extent { start, len });
}

fn check_no_parent(path: &Path, d: &descriptor::Descriptor) -> Result<(), DiskError> {
    if let Some(hint) = &d.parent_hint {
        return Err(unsupported(
            path,
            format!("a delta disk (parent {hint:?}); convert the whole chain with qemu-img"),
        ));
    }
    if let Some(cid) = &d.parent_cid {
        if cid != "ffffffff" {
            return Err(unsupported(path, format!("a delta disk (parentCID {cid})")));
        }
    }
    Ok(())
}

enum PartKind {
    Zero,
    Flat {
        file: File,
        path: PathBuf,
        offset: u64,
        file_len: u64,
    },
    Sparse(Box<SparseExtent>),
}

struct Part {
    start: u64,
    len: u64,
    kind: PartKind,
}

/// A VMDK image: its extents laid end to end.
pub(crate) struct VmdkReader {
    size: u64,
    parts: Vec<Part>,
}

/// Opens a VMDK: a sparse extent or a descriptor file.
pub(crate) fn open(path: &Path) -> Result<VmdkReader, DiskError> {
    let file = gate::open_regular(path)?;
    let mut head = [0u8; 64];
    let len = file
        .metadata()
        .map_err(|e| io_err(path, "cannot stat", e))?
        .len();
    let n = head.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    pread_exact(&file, path, &mut head[..n], 0)?;
    let head = &head[..n];
    if head.starts_with(&MAGIC) {
        let s = SparseExtent::open(file, path)?;
        let size = s.capacity_bytes;
        return Ok(VmdkReader {
            size,
            parts: vec![Part {
                start: 0,
                len: size,
                kind: PartKind::Sparse(Box::new(s)),
            }],
        });
    }
    if head.starts_with(b"COWD") {
        return Err(unsupported(
            path,
            "VMware Workstation 4 (COWD) sparse extents",
        ));
    }
    if !head.starts_with(DESCRIPTOR_SIGNATURE) {
        return Err(corrupt(
            path,
            "magic",
            "neither a sparse extent (KDMV) nor a text descriptor (# Disk DescriptorFile)",
        ));
    }
    open_descriptor(file, path, len)
}

fn open_descriptor(file: File, path: &Path, len: u64) -> Result<VmdkReader, DiskError> {
    if len > MAX_DESCRIPTOR {
        return Err(corrupt(
            path,
            "descriptor",
            format!("{len} bytes; b9 reads descriptors up to {MAX_DESCRIPTOR}"),
        ));
    }
    // Bounded by MAX_DESCRIPTOR.
    let mut text = vec![0u8; len as usize];
    pread_exact(&file, path, &mut text, 0)?;
    let d = descriptor::parse(&text).map_err(|e| match e {
        ParseError::Bad(m) => corrupt(path, "descriptor", m),
        ParseError::Unsupported(m) => unsupported(path, m),
    })?;
    check_no_parent(path, &d)?;
    match d.create_type.as_deref() {
        Some(
            "monolithicFlat"
            | "twoGbMaxExtentFlat"
            | "vmfs"
            | "monolithicSparse"
            | "twoGbMaxExtentSparse"
            | "streamOptimized",
        ) => {}
        Some(t) => return Err(unsupported(path, format!("createType {t:?}"))),
        None => return Err(corrupt(path, "descriptor", "no createType")),
    }
    if d.extents.is_empty() {
        return Err(corrupt(path, "descriptor", "no extents"));
    }
    let mut parts = Vec::with_capacity(d.extents.len());
    let mut start = 0u64;
    for (i, e) in d.extents.iter().enumerate() {
        if e.access == Access::None {
            return Err(unsupported(path, format!("extent {i} is NOACCESS")));
        }
        let len = e
            .sectors
            .checked_mul(SECTOR)
            .filter(|_| e.sectors <= MAX_CAPACITY_SECTORS)
            .ok_or_else(|| corrupt(path, format!("extent {i} size"), "absurd"))?;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= MAX_CAPACITY_SECTORS * SECTOR)
            .ok_or_else(|| corrupt(path, "extents", "the disk is absurdly large"))?;
        let kind = match e.kind {
            ExtentType::Zero => PartKind::Zero,
            ExtentType::Flat | ExtentType::Sparse => {
                let p = gate::confine(path, "extent file", Path::new(&e.file))?;
                let f = gate::open_regular(&p)?;
                if e.kind == ExtentType::Sparse {
                    PartKind::Sparse(Box::new(SparseExtent::open(f, &p)?))
                } else {
                    let file_len = f
                        .metadata()
                        .map_err(|err| io_err(&p, "cannot stat", err))?
                        .len();
                    let offset = e
                        .offset
                        .checked_mul(SECTOR)
                        .ok_or_else(|| corrupt(path, format!("extent {i} offset"), "absurd"))?;
                    PartKind::Flat {
                        file: f,
                        path: p,
                        offset,
                        file_len,
                    }
                }
            }
        };
        parts.push(Part { start, len, kind });
        start = end;
    }
    Ok(VmdkReader { size: start, parts })
}

impl ImageReader for VmdkReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let mut done = 0usize;
        let first = self.parts.partition_point(|p| p.start + p.len <= offset);
        for p in &self.parts[first..] {
            if done == buf.len() {
                break;
            }
            let off = offset + done as u64;
            if p.start > off || p.len == 0 {
                continue;
            }
            let rel = off - p.start;
            let n = (p.len - rel).min((buf.len() - done) as u64) as usize;
            let dst = &mut buf[done..done + n];
            match &p.kind {
                PartKind::Zero => dst.fill(0),
                PartKind::Flat {
                    file, path, offset, ..
                } => {
                    let at = offset
                        .checked_add(rel)
                        .ok_or_else(|| corrupt(path, "extent offset", "past 2^64"))?;
                    pread_fill(file, path, dst, at)?;
                }
                PartKind::Sparse(s) => s.read(dst, rel)?,
            }
            done += n;
        }
        buf[done..].fill(0);
        Ok(())
    }

    fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
        let mut out = Vec::new();
        for p in &self.parts {
            match &p.kind {
                PartKind::Zero => {}
                PartKind::Flat {
                    offset, file_len, ..
                } => {
                    let len = p.len.min(file_len.saturating_sub(*offset));
                    if len > 0 {
                        push_merged(&mut out, p.start, len);
                    }
                }
                PartKind::Sparse(s) => s.extents(&mut out, p.start, p.len),
            }
        }
        Ok(out)
    }
}
