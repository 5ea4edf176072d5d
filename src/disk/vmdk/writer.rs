//! The two writers. Both take front-to-back writes, cut them into 64 KiB
//! grains (buffering a partial grain), drop all-zero grains and append the
//! others to the file in order:
//!
//! * monolithicSparse keeps the layout `qemu-img convert -O vmdk` makes:
//!   header, embedded descriptor (sectors 1..21), redundant grain directory
//!   and its grain tables, grain directory and its grain tables, all
//!   preallocated, then the data grains from the first 64 KiB boundary. The
//!   metadata is written by `finish`, the header last.
//! * streamOptimized is truly sequential: header (grain directory "at end"),
//!   descriptor, then deflated grains with grain markers, each grain table
//!   after its grains behind a GT marker, the grain directory behind a GD
//!   marker, a footer (header copy pointing at the directory) and the
//!   end-of-stream marker. Grains are compressed by a small pool of threads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, FlushCompress, Status};

use super::descriptor;
use super::header::{
    encode_marker, SparseHeader, COMPRESSION_DEFLATE, COMPRESSION_NONE, FLAG_COMPRESSED,
    FLAG_MARKERS, FLAG_NL_DETECT, FLAG_RGD, GD_AT_END, GRAIN_MARKER_HEADER, MARKER_EOS,
    MARKER_FOOTER, MARKER_GD, MARKER_GT, SECTOR,
};
use super::{Subformat, MAX_CAPACITY_SECTORS};
use crate::disk::capability::{CreateOptions, ImageWriter};
use crate::disk::error::DiskError;

/// Sectors per grain b9 writes (64 KiB, like qemu).
pub(crate) const GRAIN_SECTORS: u64 = 128;
/// Bytes per grain.
const GRAIN_BYTES: usize = 65536;
/// Grain table entries per grain table.
pub(crate) const GTES_PER_GT: u64 = 512;
/// Sectors per grain table.
const GT_SECTORS: u64 = GTES_PER_GT * 4 / SECTOR;
/// Descriptor placement (sectors), as qemu.
const DESC_OFFSET: u64 = 1;
const DESC_SECTORS: u64 = 20;
/// Write buffer flushed when it reaches this size.
const WRITE_BUFFER: usize = 8 << 20;
/// Runs of grains at least this long are written straight from the caller's
/// buffer.
const DIRECT_WRITE: usize = 1 << 20;
/// Grains each compression thread gets per batch.
const GRAINS_PER_WORKER: usize = 32;
/// Most compression threads.
const MAX_WORKERS: usize = 16;

/// True if every byte is zero; vectorises (no early exit inside a block).
pub(crate) fn is_zero(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(256);
    for b in &mut blocks {
        if b.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DiskError + 'a {
    move |source| DiskError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The CID: a hash of what defines the image, never the clock.
fn content_id(opts: &CreateOptions, capacity: u64, subformat: Subformat) -> u32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"b9 vmdk cid\0");
    h.update(opts.timestamp.to_le_bytes());
    h.update(capacity.to_le_bytes());
    h.update([subformat as u8]);
    let d = h.finalize();
    let cid = crate::bytes::le_u32(&d, 0).unwrap_or(0);
    // ffffffff and fffffffe mean "no parent" / "zeroed" to some readers.
    if cid >= 0xffff_fffe {
        0x0b9d_15c5
    } else {
        cid
    }
}

/// Where the metadata of an image of `capacity` sectors goes (qemu's
/// `vmdk_init_extent`).
#[derive(Clone, Copy, Debug)]
struct Layout {
    capacity: u64,
    gt_count: u64,
    gd_sectors: u64,
    rgd_offset: u64,
    gd_offset: u64,
    grain_offset: u64,
}

impl Layout {
    fn new(capacity: u64) -> Layout {
        let grains = capacity.div_ceil(GRAIN_SECTORS);
        let gt_count = grains.div_ceil(GTES_PER_GT);
        let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
        let rgd_offset = DESC_OFFSET + DESC_SECTORS;
        let gd_offset = rgd_offset + gd_sectors + GT_SECTORS * gt_count;
        let meta_end = gd_offset + gd_sectors + GT_SECTORS * gt_count;
        let grain_offset = meta_end.div_ceil(GRAIN_SECTORS) * GRAIN_SECTORS;
        Layout {
            capacity,
            gt_count,
            gd_sectors,
            rgd_offset,
            gd_offset,
            grain_offset,
        }
    }
}

/// Receives whole grains, in increasing grain order.
pub(crate) trait Sink: Send {
    /// `data` holds whole grains, the first being grain number `first`.
    fn grains(&mut self, first: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Writes the metadata and flushes the file.
    fn finish(&mut self) -> Result<(), DiskError>;
}

/// Cuts front-to-back writes into grains.
pub(crate) struct Writer<S> {
    sink: S,
    size: u64,
    next: u64,
    partial: Vec<u8>,
    partial_grain: Option<u64>,
}

impl<S: Sink> Writer<S> {
    fn flush_partial(&mut self) -> Result<(), DiskError> {
        if let Some(g) = self.partial_grain.take() {
            self.sink.grains(g, &self.partial)?;
        }
        Ok(())
    }
}

impl<S: Sink> ImageWriter for Writer<S> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        if offset < self.next {
            return Err(DiskError::Invalid(format!(
                "vmdk writer: write at offset {offset} goes back before offset {}",
                self.next
            )));
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                DiskError::Invalid(format!(
                    "vmdk writer: write of {} bytes at offset {offset} goes past the end of the {}-byte disk",
                    data.len(),
                    self.size
                ))
            })?;
        if data.is_empty() {
            return Ok(());
        }
        self.next = end;
        let gb = GRAIN_BYTES as u64;
        let mut off = offset;
        let mut data = data;
        while !data.is_empty() {
            let g = off / gb;
            // Lossless: below GRAIN_BYTES.
            let within = (off % gb) as usize;
            if self.partial_grain.is_some_and(|p| p != g) {
                self.flush_partial()?;
            }
            if within == 0 && self.partial_grain.is_none() && data.len() >= GRAIN_BYTES {
                let bytes = data.len() / GRAIN_BYTES * GRAIN_BYTES;
                self.sink.grains(g, &data[..bytes])?;
                off += bytes as u64;
                data = &data[bytes..];
                continue;
            }
            if self.partial_grain.is_none() {
                self.partial.clear();
                self.partial.resize(GRAIN_BYTES, 0);
                self.partial_grain = Some(g);
            }
            let take = (GRAIN_BYTES - within).min(data.len());
            self.partial[within..within + take].copy_from_slice(&data[..take]);
            off += take as u64;
            data = &data[take..];
            if within + take == GRAIN_BYTES {
                self.flush_partial()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), DiskError> {
        self.flush_partial()?;
        self.sink.finish()
    }
}

/// Opens the output and checks what the descriptor will say.
fn prepare(path: &Path, size: u64) -> Result<(File, String, u64), DiskError> {
    let capacity = size.div_ceil(SECTOR);
    if capacity > MAX_CAPACITY_SECTORS {
        return Err(DiskError::Invalid(format!(
            "{}: a vmdk of {size} bytes is larger than b9 supports ({} bytes)",
            path.display(),
            MAX_CAPACITY_SECTORS * SECTOR
        )));
    }
    // The descriptor names the file as it will be published, not its staging name.
    let name = crate::disk::capability::published_name(path)
        .filter(|n| !n.chars().any(|c| c == '"' || c.is_control()))
        .ok_or_else(|| {
            DiskError::Invalid(format!(
                "{}: a vmdk file name must be UTF-8 without quotes or control characters (it goes into the descriptor)",
                path.display()
            ))
        })?
        .to_string();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io("cannot create", path))?;
    Ok((file, name, capacity))
}

fn descriptor_sector_bytes(path: &Path, text: &str) -> Result<Vec<u8>, DiskError> {
    let mut bytes = text.as_bytes().to_vec();
    if bytes.len() as u64 > DESC_SECTORS * SECTOR {
        return Err(DiskError::Invalid(format!(
            "{}: the vmdk descriptor does not fit in {DESC_SECTORS} sectors",
            path.display()
        )));
    }
    bytes.resize((DESC_SECTORS * SECTOR) as usize, 0);
    Ok(bytes)
}

/// Creates the writer for `subformat`.
pub(crate) fn create(
    path: &Path,
    size: u64,
    subformat: Subformat,
    opts: &CreateOptions,
) -> Result<Box<dyn ImageWriter>, DiskError> {
    let (file, name, capacity) = prepare(path, size)?;
    let cid = content_id(opts, capacity, subformat);
    let layout = Layout::new(capacity);
    let size = capacity * SECTOR;
    match subformat {
        Subformat::MonolithicSparse => {
            let text = descriptor::render("monolithicSparse", capacity, &name, cid);
            let desc = descriptor_sector_bytes(path, &text)?;
            // Usize: gt_count is at most 2^21 (MAX_CAPACITY_SECTORS).
            let tables = vec![None; layout.gt_count as usize];
            Ok(Box::new(Writer {
                sink: SparseSink {
                    file,
                    path: path.to_path_buf(),
                    layout,
                    desc,
                    tables,
                    next_sector: layout.grain_offset,
                    buf: Vec::new(),
                    buf_sector: layout.grain_offset,
                },
                size,
                next: 0,
                partial: Vec::new(),
                partial_grain: None,
            }))
        }
        Subformat::StreamOptimized => {
            let text = descriptor::render("streamOptimized", capacity, &name, cid);
            let desc = descriptor_sector_bytes(path, &text)?;
            let header = SparseHeader {
                version: 3,
                flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
                capacity,
                grain_size: GRAIN_SECTORS,
                desc_offset: DESC_OFFSET,
                desc_size: DESC_SECTORS,
                num_gtes_per_gt: GTES_PER_GT as u32,
                rgd_offset: 0,
                gd_offset: GD_AT_END,
                grain_offset: GRAIN_SECTORS,
                unclean_shutdown: 0,
                check_bytes_ok: true,
                compress_algorithm: COMPRESSION_DEFLATE,
            };
            let mut buf = Vec::with_capacity(WRITE_BUFFER + GRAIN_BYTES * 2);
            buf.extend_from_slice(&header.encode());
            buf.extend_from_slice(&desc);
            buf.resize((GRAIN_SECTORS * SECTOR) as usize, 0);
            let workers = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, MAX_WORKERS);
            Ok(Box::new(Writer {
                sink: StreamSink {
                    file,
                    path: path.to_path_buf(),
                    header,
                    gd: vec![0; layout.gt_count as usize],
                    gd_sectors: layout.gd_sectors,
                    cur_gt: 0,
                    gt: vec![0; GTES_PER_GT as usize],
                    gt_used: false,
                    next_sector: GRAIN_SECTORS,
                    buf,
                    buf_sector: 0,
                    pending: Vec::new(),
                    pending_grains: Vec::new(),
                    workers: (0..workers).map(|_| Worker::new()).collect(),
                },
                size,
                next: 0,
                partial: Vec::new(),
                partial_grain: None,
            }))
        }
    }
}

/// Grain table entry value for a grain at file sector `sector`.
fn gte(path: &Path, sector: u64) -> Result<u32, DiskError> {
    u32::try_from(sector).map_err(|_| {
        DiskError::Invalid(format!(
            "{}: the vmdk would grow past 2 TiB, the most its 32-bit grain table entries can address",
            path.display()
        ))
    })
}

struct SparseSink {
    file: File,
    path: PathBuf,
    layout: Layout,
    desc: Vec<u8>,
    /// Grain tables, allocated when a grain in their range is written.
    tables: Vec<Option<Box<[u32]>>>,
    next_sector: u64,
    buf: Vec<u8>,
    buf_sector: u64,
}

impl SparseSink {
    fn flush_buf(&mut self) -> Result<(), DiskError> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.buf_sector * SECTOR)
                .map_err(io("cannot write", &self.path))?;
            self.buf.clear();
        }
        Ok(())
    }

    fn append(&mut self, first: u64, run: &[u8]) -> Result<(), DiskError> {
        let grains = (run.len() / GRAIN_BYTES) as u64;
        gte(&self.path, self.next_sector + (grains - 1) * GRAIN_SECTORS)?;
        for k in 0..grains {
            let g = first + k;
            let t = (g / GTES_PER_GT) as usize;
            let Some(slot) = self.tables.get_mut(t) else {
                return Err(DiskError::Invalid("vmdk writer: grain past the end".into()));
            };
            let table =
                slot.get_or_insert_with(|| vec![0u32; GTES_PER_GT as usize].into_boxed_slice());
            // Checked above: fits in u32.
            table[(g % GTES_PER_GT) as usize] = (self.next_sector + k * GRAIN_SECTORS) as u32;
        }
        if run.len() >= DIRECT_WRITE {
            self.flush_buf()?;
            self.file
                .write_all_at(run, self.next_sector * SECTOR)
                .map_err(io("cannot write", &self.path))?;
        } else {
            if self.buf.is_empty() {
                self.buf_sector = self.next_sector;
                self.buf.reserve(WRITE_BUFFER + DIRECT_WRITE);
            }
            self.buf.extend_from_slice(run);
            if self.buf.len() >= WRITE_BUFFER {
                self.flush_buf()?;
            }
        }
        self.next_sector += grains * GRAIN_SECTORS;
        Ok(())
    }

    /// Writes one copy of the grain directory (at `gd`) and its tables.
    fn write_directory(&self, gd: u64) -> Result<(), DiskError> {
        let l = &self.layout;
        let gt_base = gd + l.gd_sectors;
        let mut dir = Vec::with_capacity((l.gd_sectors * SECTOR) as usize);
        for i in 0..l.gt_count {
            // Below 2^32: checked by MAX_CAPACITY_SECTORS.
            dir.extend_from_slice(&((gt_base + i * GT_SECTORS) as u32).to_le_bytes());
        }
        dir.resize((l.gd_sectors * SECTOR) as usize, 0);
        self.file
            .write_all_at(&dir, gd * SECTOR)
            .map_err(io("cannot write", &self.path))?;
        // Tables in chunks of 512 (1 MiB), skipping empty ones (left as holes).
        let mut chunk = Vec::new();
        for (c, tables) in self.tables.chunks(512).enumerate() {
            if tables.iter().all(Option::is_none) {
                continue;
            }
            chunk.clear();
            for t in tables {
                match t {
                    Some(t) => t
                        .iter()
                        .for_each(|e| chunk.extend_from_slice(&e.to_le_bytes())),
                    None => chunk.resize(chunk.len() + (GT_SECTORS * SECTOR) as usize, 0),
                }
            }
            let at = (gt_base + c as u64 * 512 * GT_SECTORS) * SECTOR;
            self.file
                .write_all_at(&chunk, at)
                .map_err(io("cannot write", &self.path))?;
        }
        Ok(())
    }
}

impl Sink for SparseSink {
    fn grains(&mut self, first: u64, data: &[u8]) -> Result<(), DiskError> {
        let n = data.len() / GRAIN_BYTES;
        let grain = |i: usize| &data[i * GRAIN_BYTES..(i + 1) * GRAIN_BYTES];
        let mut i = 0;
        while i < n {
            if is_zero(grain(i)) {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < n && !is_zero(grain(i)) {
                i += 1;
            }
            self.append(
                first + start as u64,
                &data[start * GRAIN_BYTES..i * GRAIN_BYTES],
            )?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DiskError> {
        self.flush_buf()?;
        let l = self.layout;
        self.write_directory(l.rgd_offset)?;
        self.write_directory(l.gd_offset)?;
        self.file
            .write_all_at(&self.desc, DESC_OFFSET * SECTOR)
            .map_err(io("cannot write", &self.path))?;
        let end = self.next_sector.max(l.grain_offset) * SECTOR;
        self.file
            .set_len(end)
            .map_err(io("cannot resize", &self.path))?;
        let header = SparseHeader {
            version: 1,
            flags: FLAG_NL_DETECT | FLAG_RGD,
            capacity: l.capacity,
            grain_size: GRAIN_SECTORS,
            desc_offset: DESC_OFFSET,
            desc_size: DESC_SECTORS,
            num_gtes_per_gt: GTES_PER_GT as u32,
            rgd_offset: l.rgd_offset,
            gd_offset: l.gd_offset,
            grain_offset: l.grain_offset,
            unclean_shutdown: 0,
            check_bytes_ok: true,
            compress_algorithm: COMPRESSION_NONE,
        };
        // The header last: an interrupted write leaves no valid image.
        self.file
            .write_all_at(&header.encode(), 0)
            .map_err(io("cannot write", &self.path))
    }
}

/// One compression thread's state and output.
struct Worker {
    comp: Compress,
    /// Grain records (marker, deflated data, padding), back to back.
    out: Vec<u8>,
    /// `(grain, record length)` per record in `out`.
    records: Vec<(u64, usize)>,
}

impl Worker {
    fn new() -> Worker {
        Worker {
            // qemu uses Z_DEFAULT_COMPRESSION (6).
            comp: Compress::new(Compression::new(6), true),
            out: Vec::new(),
            records: Vec::new(),
        }
    }

    fn run(&mut self, data: &[u8], grains: &[u64]) -> Result<(), String> {
        self.out.clear();
        self.records.clear();
        for (g, &n) in data.chunks_exact(GRAIN_BYTES).zip(grains) {
            let start = self.out.len();
            self.out
                .extend_from_slice(&(n * GRAIN_SECTORS).to_le_bytes());
            self.out.extend_from_slice(&[0u8; 4]);
            // deflate's worst case for 64 KiB is 64 KiB + 5 bytes per 16 KiB block + 6.
            self.out.reserve(GRAIN_BYTES + 1024);
            self.comp.reset();
            let status = self
                .comp
                .compress_vec(g, &mut self.out, FlushCompress::Finish)
                .map_err(|e| e.to_string())?;
            if status != Status::StreamEnd {
                return Err("deflate did not finish a grain".into());
            }
            let clen = self.out.len() - start - GRAIN_MARKER_HEADER;
            // Lossless: at most GRAIN_BYTES + 1024.
            self.out[start + 8..start + 12].copy_from_slice(&(clen as u32).to_le_bytes());
            let padded = (self.out.len() - start).div_ceil(SECTOR as usize) * SECTOR as usize;
            self.out.resize(start + padded, 0);
            self.records.push((n, padded));
        }
        Ok(())
    }
}

struct StreamSink {
    file: File,
    path: PathBuf,
    header: SparseHeader,
    gd: Vec<u32>,
    gd_sectors: u64,
    cur_gt: u64,
    gt: Vec<u32>,
    gt_used: bool,
    /// File sector of the end of `buf`.
    next_sector: u64,
    buf: Vec<u8>,
    /// File sector of the start of `buf`.
    buf_sector: u64,
    /// Non-zero grains waiting for compression.
    pending: Vec<u8>,
    pending_grains: Vec<u64>,
    workers: Vec<Worker>,
}

impl StreamSink {
    fn flush_buf(&mut self) -> Result<(), DiskError> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.buf_sector * SECTOR)
                .map_err(io("cannot write", &self.path))?;
            self.buf.clear();
        }
        self.buf_sector = self.next_sector;
        Ok(())
    }

    /// Appends sector-padded bytes.
    fn append(&mut self, bytes: &[u8]) -> Result<(), DiskError> {
        self.buf.extend_from_slice(bytes);
        self.next_sector += bytes.len() as u64 / SECTOR;
        if self.buf.len() >= WRITE_BUFFER {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_gt(&mut self) -> Result<(), DiskError> {
        if !self.gt_used {
            return Ok(());
        }
        self.append(&encode_marker(GT_SECTORS, MARKER_GT))?;
        let at = gte(&self.path, self.next_sector)?;
        if let Some(e) = usize::try_from(self.cur_gt)
            .ok()
            .and_then(|i| self.gd.get_mut(i))
        {
            *e = at;
        }
        let mut table = Vec::with_capacity((GT_SECTORS * SECTOR) as usize);
        for e in &self.gt {
            table.extend_from_slice(&e.to_le_bytes());
        }
        self.append(&table)?;
        self.gt.iter_mut().for_each(|e| *e = 0);
        self.gt_used = false;
        Ok(())
    }

    fn compress_pending(&mut self) -> Result<(), DiskError> {
        let n = self.pending_grains.len();
        if n == 0 {
            return Ok(());
        }
        let mut workers = std::mem::take(&mut self.workers);
        let per = n.div_ceil(workers.len());
        let result: Result<(), String> = if workers.len() == 1 || n == 1 {
            workers[0].run(&self.pending, &self.pending_grains)
        } else {
            let pending = &self.pending;
            let grains = &self.pending_grains;
            std::thread::scope(|s| {
                let handles: Vec<_> = workers
                    .iter_mut()
                    .zip(pending.chunks(per * GRAIN_BYTES).zip(grains.chunks(per)))
                    .map(|(w, (d, g))| s.spawn(move || w.run(d, g)))
                    .collect();
                handles.into_iter().try_for_each(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("compression thread panicked".into()))
                })
            })
        };
        let used = n.div_ceil(per);
        let placed = result.map_err(|e| {
            DiskError::Invalid(format!("{}: cannot compress: {e}", self.path.display()))
        });
        let placed = placed.and_then(|()| {
            for w in &workers[..used.min(workers.len())] {
                let mut pos = 0;
                for &(g, len) in &w.records {
                    self.place(g, &w.out[pos..pos + len])?;
                    pos += len;
                }
            }
            Ok(())
        });
        self.workers = workers;
        self.pending.clear();
        self.pending_grains.clear();
        placed
    }

    fn place(&mut self, grain: u64, record: &[u8]) -> Result<(), DiskError> {
        let t = grain / GTES_PER_GT;
        if t != self.cur_gt {
            self.flush_gt()?;
            self.cur_gt = t;
        }
        self.gt[(grain % GTES_PER_GT) as usize] = gte(&self.path, self.next_sector)?;
        self.gt_used = true;
        self.append(record)
    }
}

impl Sink for StreamSink {
    fn grains(&mut self, first: u64, data: &[u8]) -> Result<(), DiskError> {
        let batch = GRAINS_PER_WORKER * self.workers.len();
        for (i, g) in data.chunks_exact(GRAIN_BYTES).enumerate() {
            if is_zero(g) {
                continue;
            }
            if self.pending.is_empty() {
                self.pending.reserve(batch * GRAIN_BYTES);
            }
            self.pending.extend_from_slice(g);
            self.pending_grains.push(first + i as u64);
            if self.pending_grains.len() >= batch {
                self.compress_pending()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), DiskError> {
        self.compress_pending()?;
        self.flush_gt()?;
        self.append(&encode_marker(self.gd_sectors, MARKER_GD))?;
        let gd_at = self.next_sector;
        let mut dir = Vec::with_capacity((self.gd_sectors * SECTOR) as usize);
        for e in &self.gd {
            dir.extend_from_slice(&e.to_le_bytes());
        }
        dir.resize((self.gd_sectors * SECTOR) as usize, 0);
        self.append(&dir)?;
        self.append(&encode_marker(1, MARKER_FOOTER))?;
        let mut footer = self.header;
        footer.gd_offset = gd_at;
        self.append(&footer.encode())?;
        self.append(&encode_marker(0, MARKER_EOS))?;
        self.flush_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_qemu() {
        // qemu-img convert of a 10 MiB raw file: rgd 21, gd 26, grains at 128.
        let l = Layout::new(20480);
        assert_eq!((l.rgd_offset, l.gd_offset, l.grain_offset), (21, 26, 128));
        // 1 TiB: 32768 tables.
        let l = Layout::new((1 << 40) / 512);
        assert_eq!(l.gt_count, 32768);
        assert_eq!(l.gd_sectors, 256);
        assert_eq!(l.gd_offset, 21 + 256 + 4 * 32768);
        assert_eq!(l.grain_offset % 128, 0);
        let l = Layout::new(0);
        assert_eq!((l.gt_count, l.gd_sectors, l.grain_offset), (0, 0, 128));
    }

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; 1000];
        assert!(is_zero(&v));
        assert!(is_zero(&[]));
        v[999] = 1;
        assert!(!is_zero(&v));
        v[999] = 0;
        v[3] = 0x80;
        assert!(!is_zero(&v));
    }

    #[test]
    fn cid_is_stable_and_not_reserved() {
        let o = CreateOptions { timestamp: 1 };
        let a = content_id(&o, 100, Subformat::MonolithicSparse);
        assert_eq!(a, content_id(&o, 100, Subformat::MonolithicSparse));
        assert_ne!(a, content_id(&o, 101, Subformat::MonolithicSparse));
        assert!(a < 0xffff_fffe);
    }
}
