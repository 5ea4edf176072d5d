//! MBR and GPT partition tables: finding partition n of an image.
//!
//! `SourceImage img (Partition n) resize` takes one partition out of an
//! image (SPEC Part A: MBR primaries 1-4 and GPT entries 1-128, detected
//! from the image; Part B §6.4 for the original's MBR-only behaviour).
//! [`find`] locates the partition and [`PartitionReader`] presents it as a
//! whole disk, so it can be converted without copying the rest of the image.
//!
//! Detection:
//! - LBA 0 must end in the boot signature `0x55 0xAA`; without it the image
//!   has no partition table ([`read_table`] returns `None`).
//! - If any of the four MBR entries has type `0xEE` (protective MBR) the
//!   image is GPT: the primary header is looked for at LBA 1 with 512-byte
//!   and then 4096-byte sectors; it must pass every check (signature, header
//!   size, header CRC32, own LBA, usable range, entries array inside the
//!   image, entries CRC32, every entry inside the usable range). If the
//!   primary header is missing or corrupt, the backup header at the last LBA
//!   is used instead (with a warning).
//! - Otherwise the four MBR primary entries are read. Logical partitions
//!   inside an extended partition (numbers 5 and up) are not supported.
//!
//! Images are hostile input: every field is checked before use, arithmetic
//! is checked, and the GPT entries array is capped at
//! [`MAX_GPT_ENTRIES_BYTES`] before anything is allocated.

use std::fmt;
use std::path::Path;

use crate::bytes;
use crate::disk::capability::{Extent, ImageReader};
use crate::disk::error::DiskError;

/// The largest GPT partition entry array read (entry count × entry size):
/// 1 MiB, 64 times the usual 128 entries of 128 bytes.
pub const MAX_GPT_ENTRIES_BYTES: u64 = 1 << 20;

/// MBR sector size; MBR LBAs always count 512-byte sectors here.
const MBR_SECTOR: u64 = 512;
/// Offset of the four primary entries in LBA 0.
const MBR_TABLE_OFFSET: usize = 446;
/// Size of one MBR entry.
const MBR_ENTRY_SIZE: usize = 16;
/// Number of MBR primary entries.
const MBR_PRIMARIES: u32 = 4;
/// Type of the protective MBR entry that announces a GPT.
const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
/// MBR types of extended partitions (containers of logical partitions), as
/// rendered in [`PartitionInfo::type_id`].
const MBR_TYPES_EXTENDED: [&str; 3] = ["0x05", "0x0f", "0x85"];
/// GPT header signature.
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Smallest valid GPT header size (UEFI 2.x).
const GPT_HEADER_MIN: u32 = 92;
/// Smallest valid GPT entry size (UEFI: 128 × 2^n).
const GPT_ENTRY_MIN: u32 = 128;
/// Logical sector sizes tried for a GPT, in order.
const GPT_SECTOR_SIZES: [u64; 2] = [512, 4096];

/// The partition table kind found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// A DOS/MBR partition table (primary partitions 1-4).
    Mbr,
    /// A GUID partition table behind a protective MBR.
    Gpt,
}

impl TableKind {
    /// `"MBR"` or `"GPT"`, as used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Mbr => "MBR",
            TableKind::Gpt => "GPT",
        }
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One partition: number (1-based), byte offset and length in the image,
/// type and name when known.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    /// The partition number: 1-4 for MBR, the 1-based entry index for GPT.
    pub number: u32,
    /// First byte of the partition in the image.
    pub start: u64,
    /// Length in bytes (never 0; `start + len` does not overflow).
    pub len: u64,
    /// MBR: the type byte as `0x83`; GPT: the partition type GUID in the
    /// usual upper-case text form (`0FC63DAF-8483-4772-8E79-3D69D8477DE4`).
    pub type_id: String,
    /// GPT: the partition name (UTF-16 decoded, up to the first NUL; invalid
    /// code units become U+FFFD). MBR: empty.
    pub name: String,
}

/// The table of an image: `None` when the image has no MBR/GPT (no `0x55AA`
/// boot signature at byte 510).
///
/// The partitions come in number order; empty entries are left out. A
/// protective MBR without a valid GPT (neither primary nor backup header) is
/// an error, as is any field with an impossible value. A partition that
/// extends past the end of the image is listed here (only [`find`] refuses
/// it), so that a truncated image can still be inspected.
pub fn read_table(
    image: &dyn ImageReader,
    path: &Path,
) -> Result<Option<(TableKind, Vec<PartitionInfo>)>, DiskError> {
    Ok(read_slots(image, path)?
        .map(|table| (table.kind, table.slots.into_iter().flatten().collect())))
}

/// Partition `n` of an image (MBR 1-4 / GPT 1-128, detected).
///
/// Errors: `n` is 0 (`Invalid`); the image has no partition table
/// (`Invalid`); `n` is 5 or more on an MBR (`Unsupported`: logical
/// partitions are not supported); `n` names an MBR extended partition, the
/// container of logical partitions (`Unsupported`); `n` is above the GPT's
/// entry count, 128 on every common GPT (`Invalid`); entry `n` is empty
/// (`Invalid`); the partition extends past the end of the image
/// (`Corrupt`); and every error of [`read_table`].
pub fn find(image: &dyn ImageReader, path: &Path, n: u32) -> Result<PartitionInfo, DiskError> {
    if n == 0 {
        return Err(DiskError::Invalid(format!(
            "{}: there is no partition 0: partition numbers start at 1",
            path.display()
        )));
    }
    let Some(table) = read_slots(image, path)? else {
        return Err(DiskError::Invalid(format!(
            "{}: cannot take partition {n}: the image has no partition table \
             (no MBR boot signature 0x55AA at byte 510)",
            path.display()
        )));
    };
    let count = table.slots.len();
    let index = usize::try_from(n - 1).unwrap_or(usize::MAX);
    let Some(slot) = table.slots.get(index) else {
        return Err(match table.kind {
            TableKind::Mbr => DiskError::Unsupported {
                path: path.to_path_buf(),
                format: "MBR",
                what: format!(
                    "partition {n}: only the primary partitions 1-4 can be used; \
                     logical partitions (5 and up, inside an extended partition) are not supported"
                ),
            },
            TableKind::Gpt if count == 0 => DiskError::Invalid(format!(
                "{}: partition {n} does not exist: the GPT has no partition entries",
                path.display()
            )),
            TableKind::Gpt => DiskError::Invalid(format!(
                "{}: partition {n} does not exist: the GPT has {count} entries (1-{count})",
                path.display()
            )),
        });
    };
    let Some(part) = slot else {
        let used: Vec<String> = table
            .slots
            .iter()
            .flatten()
            .map(|p| p.number.to_string())
            .collect();
        let used = if used.is_empty() {
            "no partitions at all".to_string()
        } else {
            format!("partitions {}", used.join(", "))
        };
        return Err(DiskError::Invalid(format!(
            "{}: partition {n} is empty in the {} table (it has {used})",
            path.display(),
            table.kind
        )));
    };
    if table.kind == TableKind::Mbr && MBR_TYPES_EXTENDED.contains(&part.type_id.as_str()) {
        return Err(DiskError::Unsupported {
            path: path.to_path_buf(),
            format: "MBR",
            what: format!(
                "partition {n} is an extended partition (type {}), a container of logical \
                 partitions, which are not supported",
                part.type_id
            ),
        });
    }
    let size = image.size();
    // `start + len` was checked when the entry was parsed.
    let end = part.start.saturating_add(part.len);
    if end > size {
        return Err(DiskError::Corrupt {
            path: path.to_path_buf(),
            format: table.kind.name(),
            field: format!("partition {n}"),
            problem: format!(
                "bytes {}..{end} extend past the end of the image ({size} bytes); \
                 is the image truncated?",
                part.start
            ),
        });
    }
    Ok(part.clone())
}

/// A reader presenting one partition of an image as a whole disk (offset
/// view): size = partition length, reads shifted, data extents clipped and
/// shifted. This is how `Partition n` is extracted without copying the rest
/// of the image.
///
/// It borrows the image (`&dyn ImageReader`); a caller holding an
/// `Arc<dyn ImageReader>` or `Box<dyn ImageReader>` passes `&*image`.
/// Reads past the partition's end read zeros, like past the end of any
/// image; reads never reach outside the partition.
pub struct PartitionReader<'a> {
    inner: &'a dyn ImageReader,
    start: u64,
    len: u64,
}

impl<'a> PartitionReader<'a> {
    /// The view of `part` (normally from [`find`]) in `image`. A
    /// hand-made `part` whose end would overflow is cut at `u64::MAX`.
    pub fn new(image: &'a dyn ImageReader, part: &PartitionInfo) -> Self {
        PartitionReader {
            inner: image,
            start: part.start,
            len: part.len.min(u64::MAX - part.start),
        }
    }
}

impl fmt::Debug for PartitionReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionReader")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl ImageReader for PartitionReader<'_> {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let avail = self.len.saturating_sub(offset);
        let inside = usize::try_from(avail).map_or(buf.len(), |a| a.min(buf.len()));
        let (head, tail) = buf.split_at_mut(inside);
        if !head.is_empty() {
            // offset < len and start + len <= u64::MAX, so this cannot overflow.
            self.inner
                .read_at(head, self.start.saturating_add(offset))?;
        }
        tail.fill(0);
        Ok(())
    }

    fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
        let lo = self.start;
        let hi = self.start.saturating_add(self.len);
        Ok(self
            .inner
            .data_extents()?
            .into_iter()
            .filter_map(|e| {
                let s = e.start.max(lo);
                let t = e.start.saturating_add(e.len).min(hi);
                (s < t).then(|| Extent {
                    start: s - lo,
                    len: t - s,
                })
            })
            .collect())
    }
}

/// A parsed table with one slot per entry (4 for MBR, the entry count for
/// GPT); `None` marks an empty entry.
struct Table {
    kind: TableKind,
    slots: Vec<Option<PartitionInfo>>,
}

fn read_slots(image: &dyn ImageReader, path: &Path) -> Result<Option<Table>, DiskError> {
    let mut lba0 = [0u8; 512];
    image.read_at(&mut lba0, 0)?;
    if lba0[510..512] != [0x55, 0xAA] {
        return Ok(None);
    }
    let protective = (0..MBR_PRIMARIES as usize)
        .any(|i| lba0[MBR_TABLE_OFFSET + i * MBR_ENTRY_SIZE + 4] == MBR_TYPE_PROTECTIVE);
    if protective {
        let slots = read_gpt(image, path)?;
        return Ok(Some(Table {
            kind: TableKind::Gpt,
            slots,
        }));
    }
    let slots = parse_mbr(&lba0, path)?;
    Ok(Some(Table {
        kind: TableKind::Mbr,
        slots,
    }))
}

fn corrupt(path: &Path, format: &'static str, field: String, problem: String) -> DiskError {
    DiskError::Corrupt {
        path: path.to_path_buf(),
        format,
        field,
        problem,
    }
}

fn parse_mbr(lba0: &[u8; 512], path: &Path) -> Result<Vec<Option<PartitionInfo>>, DiskError> {
    let mut slots = Vec::with_capacity(MBR_PRIMARIES as usize);
    for number in 1..=MBR_PRIMARIES {
        let at = MBR_TABLE_OFFSET + (number as usize - 1) * MBR_ENTRY_SIZE;
        let entry = &lba0[at..at + MBR_ENTRY_SIZE];
        let status = entry[0];
        let kind = entry[4];
        let first = bytes::le_u32(entry, 8).unwrap_or(0);
        let count = bytes::le_u32(entry, 12).unwrap_or(0);
        if status & 0x7F != 0 {
            return Err(corrupt(
                path,
                "MBR",
                format!("partition entry {number} status"),
                format!(
                    "0x{status:02x}, expected 0x00 or 0x80 \
                     (is LBA 0 a file system boot sector rather than an MBR?)"
                ),
            ));
        }
        if kind == 0 || count == 0 {
            slots.push(None);
            continue;
        }
        if first == 0 {
            return Err(corrupt(
                path,
                "MBR",
                format!("partition entry {number} start LBA"),
                "0: the partition would overlap the MBR".to_string(),
            ));
        }
        // u32 × 512 and their sum stay far below u64::MAX.
        slots.push(Some(PartitionInfo {
            number,
            start: u64::from(first) * MBR_SECTOR,
            len: u64::from(count) * MBR_SECTOR,
            type_id: format!("0x{kind:02x}"),
            name: String::new(),
        }));
    }
    Ok(slots)
}

/// Which copy of the GPT header is being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HeaderCopy {
    Primary,
    Backup,
}

impl HeaderCopy {
    fn name(self) -> &'static str {
        match self {
            HeaderCopy::Primary => "primary",
            HeaderCopy::Backup => "backup",
        }
    }
}

fn read_gpt(image: &dyn ImageReader, path: &Path) -> Result<Vec<Option<PartitionInfo>>, DiskError> {
    let size = image.size();
    // The primary header: LBA 1 for the first sector size showing the signature.
    let mut primary: Option<(u64, DiskError)> = None;
    for sector in GPT_SECTOR_SIZES {
        if has_signature(image, sector)? {
            match parse_gpt(image, path, sector, 1, HeaderCopy::Primary) {
                Ok(slots) => return Ok(slots),
                Err(e @ DiskError::Corrupt { .. }) => {
                    primary = Some((sector, e));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    // The backup header at the last LBA, with the primary's sector size if
    // it had a signature, otherwise with any.
    let sizes: &[u64] = match &primary {
        Some((sector, _)) => std::slice::from_ref(sector),
        None => &GPT_SECTOR_SIZES,
    };
    let mut backup: Option<DiskError> = None;
    for &sector in sizes {
        let sectors = size / sector;
        // LBA 0 (MBR), LBA 1 (primary), the backup: anything smaller is not a GPT disk.
        if sectors < 3 {
            continue;
        }
        let last = sectors - 1;
        if !has_signature(image, last * sector)? {
            continue;
        }
        match parse_gpt(image, path, sector, last, HeaderCopy::Backup) {
            Ok(slots) => {
                let why = match &primary {
                    Some((_, e)) => e.to_string(),
                    None => "the primary GPT header is missing".to_string(),
                };
                tracing::warn!("{}: using the backup GPT header: {why}", path.display());
                return Ok(slots);
            }
            Err(e @ DiskError::Corrupt { .. }) => {
                backup = Some(e);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let backup_note = match backup {
        Some(DiskError::Corrupt { field, problem, .. }) => format!("{field}: {problem}"),
        Some(other) => other.to_string(),
        None => "no backup header at the last LBA either".to_string(),
    };
    Err(match primary {
        Some((
            _,
            DiskError::Corrupt {
                path,
                format,
                field,
                problem,
            },
        )) => DiskError::Corrupt {
            path,
            format,
            field,
            problem: format!("{problem}; {backup_note}"),
        },
        Some((_, other)) => other,
        None => corrupt(
            path,
            "GPT",
            "primary header".to_string(),
            format!(
                "the MBR is protective (type 0xEE) but LBA 1 holds no GPT header \
                 (signature \"EFI PART\") for 512- or 4096-byte sectors; {backup_note}"
            ),
        ),
    })
}

fn has_signature(image: &dyn ImageReader, offset: u64) -> Result<bool, DiskError> {
    let mut sig = [0u8; 8];
    image.read_at(&mut sig, offset)?;
    Ok(&sig == GPT_SIGNATURE)
}

/// Parses and checks the GPT whose header is at `lba` (sectors of `sector`
/// bytes), returning one slot per entry.
fn parse_gpt(
    image: &dyn ImageReader,
    path: &Path,
    sector: u64,
    lba: u64,
    copy: HeaderCopy,
) -> Result<Vec<Option<PartitionInfo>>, DiskError> {
    let which = copy.name();
    let bad = |field: &str, problem: String| {
        corrupt(path, "GPT", format!("{which} header {field}"), problem)
    };
    let size = image.size();
    let header_at = lba
        .checked_mul(sector)
        .ok_or_else(|| bad("LBA", format!("{lba} × {sector} overflows")))?;
    // `sector` is 512 or 4096.
    let mut header = vec![0u8; sector as usize];
    image.read_at(&mut header, header_at)?;

    if header.get(0..8) != Some(&GPT_SIGNATURE[..]) {
        return Err(bad("signature", "is not \"EFI PART\"".to_string()));
    }
    let header_size = bytes::le_u32(&header, 12).unwrap_or(0);
    if header_size < GPT_HEADER_MIN || u64::from(header_size) > sector {
        return Err(bad(
            "size",
            format!("{header_size} bytes, expected {GPT_HEADER_MIN} to {sector}"),
        ));
    }
    let stored = bytes::le_u32(&header, 16).unwrap_or(0);
    let mut hashed = header[..header_size as usize].to_vec();
    hashed[16..20].fill(0);
    let computed = crc32fast::hash(&hashed);
    if stored != computed {
        return Err(bad(
            "CRC32",
            format!("stored 0x{stored:08x}, computed 0x{computed:08x}"),
        ));
    }
    let my_lba = bytes::le_u64(&header, 24).unwrap_or(0);
    if my_lba != lba {
        return Err(bad(
            "my LBA",
            format!("says {my_lba}, but the header was read from LBA {lba}"),
        ));
    }
    let first_usable = bytes::le_u64(&header, 40).unwrap_or(0);
    let last_usable = bytes::le_u64(&header, 48).unwrap_or(0);
    if first_usable > last_usable {
        return Err(bad(
            "usable LBAs",
            format!("first usable LBA {first_usable} is after last usable LBA {last_usable}"),
        ));
    }
    let entries_lba = bytes::le_u64(&header, 72).unwrap_or(0);
    let count = bytes::le_u32(&header, 80).unwrap_or(0);
    let entry_size = bytes::le_u32(&header, 84).unwrap_or(0);
    let entries_crc = bytes::le_u32(&header, 88).unwrap_or(0);
    if entry_size < GPT_ENTRY_MIN || !entry_size.is_power_of_two() {
        return Err(bad(
            "entry size",
            format!("{entry_size} bytes, expected 128 × 2^n"),
        ));
    }
    // Both factors are u32, so the product fits in u64.
    let array_len = u64::from(count) * u64::from(entry_size);
    if array_len > MAX_GPT_ENTRIES_BYTES {
        return Err(DiskError::Unsupported {
            path: path.to_path_buf(),
            format: "GPT",
            what: format!(
                "{which} header: the entry array ({count} entries × {entry_size} bytes = \
                 {array_len} bytes) is larger than the {MAX_GPT_ENTRIES_BYTES}-byte limit"
            ),
        });
    }
    let array_sectors = array_len.div_ceil(sector);
    let array_at = entries_lba
        .checked_mul(sector)
        .filter(|_| entries_lba != 0)
        .ok_or_else(|| bad("entries LBA", format!("{entries_lba} is impossible")))?;
    array_at
        .checked_add(array_len)
        .filter(|&end| end <= size)
        .ok_or_else(|| {
            bad(
                "entries LBA",
                format!(
                    "the entry array at LBA {entries_lba} ({array_len} bytes) extends past \
                     the end of the image ({size} bytes)"
                ),
            )
        })?;
    if entries_lba <= lba && lba < entries_lba.saturating_add(array_sectors) {
        return Err(bad(
            "entries LBA",
            format!(
                "the entry array (LBA {entries_lba}, {array_sectors} sectors) overlaps the header"
            ),
        ));
    }
    // array_len <= 1 MiB.
    let mut array = vec![0u8; array_len as usize];
    image.read_at(&mut array, array_at)?;
    let computed = crc32fast::hash(&array);
    if entries_crc != computed {
        return Err(bad(
            "entries CRC32",
            format!("stored 0x{entries_crc:08x}, computed 0x{computed:08x}"),
        ));
    }

    let mut slots = Vec::with_capacity(count as usize);
    for (index, entry) in array.chunks_exact(entry_size as usize).enumerate() {
        // index < count <= u32::MAX.
        let number = u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1);
        let type_guid = &entry[0..16];
        if type_guid.iter().all(|&b| b == 0) {
            slots.push(None);
            continue;
        }
        let bad_entry = |problem: String| {
            corrupt(
                path,
                "GPT",
                format!("{which} table entry {number}"),
                problem,
            )
        };
        let first = bytes::le_u64(entry, 32).unwrap_or(0);
        let last = bytes::le_u64(entry, 40).unwrap_or(0);
        if first > last {
            return Err(bad_entry(format!(
                "first LBA {first} is after last LBA {last}"
            )));
        }
        if first < first_usable || last > last_usable {
            return Err(bad_entry(format!(
                "LBAs {first}..={last} are outside the usable area {first_usable}..={last_usable}"
            )));
        }
        let overflow = || bad_entry(format!("LBAs {first}..={last} overflow a byte offset"));
        let start = first.checked_mul(sector).ok_or_else(overflow)?;
        let len = (last - first)
            .checked_add(1)
            .and_then(|n| n.checked_mul(sector))
            .ok_or_else(overflow)?;
        start.checked_add(len).ok_or_else(overflow)?;
        slots.push(Some(PartitionInfo {
            number,
            start,
            len,
            type_id: guid_string(type_guid),
            name: utf16_name(&entry[56..128]),
        }));
    }
    Ok(slots)
}

/// A GUID in its text form: the first three fields little-endian, the rest
/// as stored.
fn guid_string(g: &[u8]) -> String {
    let tail: String = g
        .get(10..16)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{tail}",
        bytes::le_u32(g, 0).unwrap_or(0),
        bytes::le_u16(g, 4).unwrap_or(0),
        bytes::le_u16(g, 6).unwrap_or(0),
        g.get(8).copied().unwrap_or(0),
        g.get(9).copied().unwrap_or(0),
    )
}

/// A GPT name: UTF-16LE up to the first NUL.
fn utf16_name(raw: &[u8]) -> String {
    let units = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// An image in memory.
    struct Mem(Vec<u8>);

    impl ImageReader for Mem {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
            buf.fill(0);
            let len = self.0.len() as u64;
            if offset < len {
                let from = offset as usize;
                let n = buf.len().min(self.0.len() - from);
                buf[..n].copy_from_slice(&self.0[from..from + n]);
            }
            Ok(())
        }
        fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
            Ok(vec![Extent {
                start: 0,
                len: self.size(),
            }])
        }
    }

    fn path() -> PathBuf {
        PathBuf::from("disk.img")
    }

    /// (status, type, first LBA, sector count)
    type MbrEntry = (u8, u8, u32, u32);

    fn mbr(size: usize, entries: &[MbrEntry]) -> Vec<u8> {
        let mut d = vec![0u8; size];
        for (i, &(status, kind, first, count)) in entries.iter().enumerate() {
            let at = 446 + 16 * i;
            d[at] = status;
            d[at + 4] = kind;
            d[at + 8..at + 12].copy_from_slice(&first.to_le_bytes());
            d[at + 12..at + 16].copy_from_slice(&count.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    const LINUX: [u8; 16] = [
        0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D,
        0xE4,
    ];

    /// (entry index 0-based, first LBA, last LBA, name)
    type GptEntry<'a> = (usize, u64, u64, &'a str);

    /// A complete GPT disk: protective MBR, primary header and 128-entry
    /// array, backup array and header.
    fn gpt(sector: usize, sectors: usize, entries: &[GptEntry]) -> Vec<u8> {
        let mut d = mbr(sector * sectors, &[(0, 0xEE, 1, (sectors - 1) as u32)]);
        let count = 128usize;
        let esize = 128usize;
        let array_sectors = (count * esize).div_ceil(sector);
        let mut array = vec![0u8; count * esize];
        for &(i, first, last, name) in entries {
            let e = &mut array[i * esize..(i + 1) * esize];
            e[0..16].copy_from_slice(&LINUX);
            e[16] = i as u8 + 1;
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (k, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
        }
        let last_lba = sectors as u64 - 1;
        let first_usable = 2 + array_sectors as u64;
        let last_usable = last_lba - 1 - array_sectors as u64;
        let backup_array = last_lba - array_sectors as u64;
        let put = |d: &mut Vec<u8>, my: u64, alt: u64, arr: u64| {
            let h = my as usize * sector;
            d[h..h + 8].copy_from_slice(GPT_SIGNATURE);
            d[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            d[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
            d[h + 24..h + 32].copy_from_slice(&my.to_le_bytes());
            d[h + 32..h + 40].copy_from_slice(&alt.to_le_bytes());
            d[h + 40..h + 48].copy_from_slice(&first_usable.to_le_bytes());
            d[h + 48..h + 56].copy_from_slice(&last_usable.to_le_bytes());
            d[h + 56] = 0x42;
            d[h + 72..h + 80].copy_from_slice(&arr.to_le_bytes());
            d[h + 80..h + 84].copy_from_slice(&(count as u32).to_le_bytes());
            d[h + 84..h + 88].copy_from_slice(&(esize as u32).to_le_bytes());
            d[h + 88..h + 92].copy_from_slice(&crc32fast::hash(&array).to_le_bytes());
            let a = arr as usize * sector;
            d[a..a + array.len()].copy_from_slice(&array);
            fix_header_crc(d, h);
        };
        put(&mut d, 1, last_lba, 2);
        put(&mut d, last_lba, 1, backup_array);
        d
    }

    fn fix_header_crc(d: &mut [u8], h: usize) {
        let hs = bytes::le_u32(&d, h + 12).unwrap() as usize;
        let hs = hs.clamp(20, 4096).min(d.len() - h);
        d[h + 16..h + 20].fill(0);
        let crc = crc32fast::hash(&d[h..h + hs]);
        d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    }

    /// Recomputes the entries CRC and the header CRC of the header at `h`,
    /// as far as the (possibly mutated) fields allow.
    fn fix_crcs(d: &mut [u8], h: usize, sector: usize) {
        if h + 92 > d.len() {
            return;
        }
        let lba = bytes::le_u64(&d, h + 72).unwrap();
        let count = bytes::le_u32(&d, h + 80).unwrap() as u64;
        let esize = bytes::le_u32(&d, h + 84).unwrap() as u64;
        let at = lba.saturating_mul(sector as u64);
        let len = count.saturating_mul(esize);
        if let (Ok(at), Ok(len)) = (usize::try_from(at), usize::try_from(len)) {
            if at.checked_add(len).is_some_and(|e| e <= d.len()) {
                let crc = crc32fast::hash(&d[at..at + len]);
                d[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
            }
        }
        fix_header_crc(d, h);
    }

    fn corrupt_field(r: Result<impl fmt::Debug, DiskError>) -> (String, String, String) {
        match r {
            Err(DiskError::Corrupt {
                format,
                field,
                problem,
                ..
            }) => (format.to_string(), field, problem),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn no_signature_is_no_table() {
        let img = Mem(vec![0u8; 4096]);
        assert_eq!(read_table(&img, &path()).unwrap(), None);
        let img = Mem(Vec::new());
        assert_eq!(read_table(&img, &path()).unwrap(), None);
        let e = find(&img, &path(), 1).unwrap_err().to_string();
        assert!(e.contains("no partition table"), "{e}");
    }

    #[test]
    fn mbr_primaries() {
        let img = Mem(mbr(
            64 * 512,
            &[
                (0x80, 0x83, 2, 10),
                (0, 0, 0, 0),
                (0, 0x0c, 20, 30),
                (0, 0x83, 0, 0),
            ],
        ));
        let (kind, parts) = read_table(&img, &path()).unwrap().unwrap();
        assert_eq!(kind, TableKind::Mbr);
        assert_eq!(
            parts,
            vec![
                PartitionInfo {
                    number: 1,
                    start: 1024,
                    len: 5120,
                    type_id: "0x83".into(),
                    name: String::new()
                },
                PartitionInfo {
                    number: 3,
                    start: 20 * 512,
                    len: 30 * 512,
                    type_id: "0x0c".into(),
                    name: String::new()
                },
            ]
        );
        assert_eq!(find(&img, &path(), 3).unwrap(), parts[1]);
        let e = find(&img, &path(), 2).unwrap_err().to_string();
        assert!(
            e.contains("partition 2 is empty in the MBR table (it has partitions 1, 3)"),
            "{e}"
        );
        let e = find(&img, &path(), 4).unwrap_err().to_string();
        assert!(e.contains("partition 4 is empty"), "{e}");
        assert!(matches!(
            find(&img, &path(), 5),
            Err(DiskError::Unsupported { format: "MBR", .. })
        ));
        let e = find(&img, &path(), 0).unwrap_err().to_string();
        assert!(e.contains("no partition 0"), "{e}");

        let img = Mem(mbr(64 * 512, &[(0, 0x83, 2, 10), (0, 0x0f, 20, 30)]));
        let e = find(&img, &path(), 2).unwrap_err();
        assert!(
            matches!(e, DiskError::Unsupported { format: "MBR", .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("extended partition (type 0x0f)"),
            "{e}"
        );
        assert_eq!(read_table(&img, &path()).unwrap().unwrap().1.len(), 2);
    }

    #[test]
    fn mbr_corrupt() {
        let img = Mem(mbr(64 * 512, &[(0x12, 0x83, 2, 10)]));
        let (f, field, problem) = corrupt_field(read_table(&img, &path()));
        assert_eq!(
            (f.as_str(), field.as_str()),
            ("MBR", "partition entry 1 status")
        );
        assert!(problem.contains("0x12"), "{problem}");

        let img = Mem(mbr(64 * 512, &[(0, 0x83, 0, 10)]));
        let (_, field, _) = corrupt_field(read_table(&img, &path()));
        assert_eq!(field, "partition entry 1 start LBA");

        // Past the end: listed by read_table, refused by find.
        let img = Mem(mbr(
            64 * 512,
            &[(0, 0x83, 60, 10), (0, 0x83, u32::MAX, u32::MAX)],
        ));
        assert_eq!(read_table(&img, &path()).unwrap().unwrap().1.len(), 2);
        let (_, field, problem) = corrupt_field(find(&img, &path(), 1));
        assert_eq!(field, "partition 1");
        assert!(
            problem.contains("past the end of the image (32768 bytes)"),
            "{problem}"
        );
        let (_, field, _) = corrupt_field(find(&img, &path(), 2));
        assert_eq!(field, "partition 2");
    }

    #[test]
    fn gpt_512_and_4096() {
        for sector in [512usize, 4096] {
            let sectors = 200;
            let img = Mem(gpt(
                sector,
                sectors,
                &[(0, 40, 49, "root"), (3, 50, 50, "é"), (127, 60, 79, "")],
            ));
            let (kind, parts) = read_table(&img, &path()).unwrap().unwrap();
            assert_eq!(kind, TableKind::Gpt);
            let s = sector as u64;
            assert_eq!(
                parts,
                vec![
                    PartitionInfo {
                        number: 1,
                        start: 40 * s,
                        len: 10 * s,
                        type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                        name: "root".into()
                    },
                    PartitionInfo {
                        number: 4,
                        start: 50 * s,
                        len: s,
                        type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                        name: "é".into()
                    },
                    PartitionInfo {
                        number: 128,
                        start: 60 * s,
                        len: 20 * s,
                        type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                        name: String::new()
                    },
                ]
            );
            assert_eq!(find(&img, &path(), 128).unwrap(), parts[2]);
            let e = find(&img, &path(), 2).unwrap_err().to_string();
            assert!(
                e.contains("partition 2 is empty in the GPT table (it has partitions 1, 4, 128)"),
                "{e}"
            );
            let e = find(&img, &path(), 129).unwrap_err().to_string();
            assert!(e.contains("the GPT has 128 entries (1-128)"), "{e}");
            let e = find(&img, &path(), 5).unwrap_err().to_string();
            assert!(e.contains("partition 5 is empty"), "{e}");
        }
    }

    #[test]
    fn gpt_backup_used_when_primary_is_corrupt() {
        let good = gpt(512, 200, &[(0, 40, 49, "a")]);
        let want = read_table(&Mem(good.clone()), &path()).unwrap();

        // Bad header CRC.
        let mut d = good.clone();
        d[512 + 56] ^= 1;
        assert_eq!(read_table(&Mem(d.clone()), &path()).unwrap(), want);
        // And a corrupt backup too: the primary's fault is reported, with the backup's.
        d[199 * 512 + 56] ^= 1;
        let (f, field, problem) = corrupt_field(read_table(&Mem(d), &path()));
        assert_eq!(
            (f.as_str(), field.as_str()),
            ("GPT", "primary header CRC32")
        );
        assert!(problem.contains("backup header CRC32"), "{problem}");

        // Bad entries CRC in the primary array only.
        let mut d = good.clone();
        d[2 * 512 + 100] ^= 1;
        assert_eq!(read_table(&Mem(d), &path()).unwrap(), want);

        // Missing primary (wiped LBA 1).
        let mut d = good.clone();
        d[512..1024].fill(0);
        assert_eq!(read_table(&Mem(d.clone()), &path()).unwrap(), want);
        // Missing both.
        d[199 * 512..].fill(0);
        let (_, field, problem) = corrupt_field(read_table(&Mem(d), &path()));
        assert_eq!(field, "primary header");
        assert!(problem.contains("no backup header"), "{problem}");
    }

    /// Mutates one field of the primary header, fixes the CRCs, and returns
    /// the error (the backup is wiped so that the primary's error shows).
    fn primary_with(f: impl Fn(&mut [u8])) -> (String, String) {
        let mut d = gpt(512, 200, &[(0, 40, 49, "a")]);
        d[199 * 512..].fill(0);
        f(&mut d);
        fix_crcs(&mut d, 512, 512);
        let (_, field, problem) = corrupt_field(read_table(&Mem(d), &path()));
        (field, problem)
    }

    fn put64(d: &mut [u8], at: usize, v: u64) {
        d[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(d: &mut [u8], at: usize, v: u32) {
        d[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    type Mutation<'a> = Box<dyn Fn(&mut [u8]) + 'a>;

    #[test]
    fn gpt_header_checks() {
        let h = 512;
        let e = 1024; // first entry
        let cases: Vec<(&str, Mutation<'_>)> = vec![
            ("primary header size", Box::new(|d| put32(d, h + 12, 91))),
            ("primary header size", Box::new(|d| put32(d, h + 12, 513))),
            ("primary header my LBA", Box::new(|d| put64(d, h + 24, 7))),
            (
                "primary header usable LBAs",
                Box::new(|d| put64(d, h + 40, 1000)),
            ),
            (
                "primary header entry size",
                Box::new(|d| put32(d, h + 84, 100)),
            ),
            (
                "primary header entry size",
                Box::new(|d| put32(d, h + 84, 192)),
            ),
            (
                "primary header entries LBA",
                Box::new(|d| put64(d, h + 72, 0)),
            ),
            (
                "primary header entries LBA",
                Box::new(|d| put64(d, h + 72, 1)),
            ),
            (
                "primary header entries LBA",
                Box::new(|d| put64(d, h + 72, 199)),
            ),
            (
                "primary header entries LBA",
                Box::new(|d| put64(d, h + 72, u64::MAX / 2)),
            ),
            (
                "primary table entry 1",
                Box::new(|d| {
                    put64(d, e + 32, 50);
                    put64(d, e + 40, 49);
                    fix_crcs(d, h, 512);
                }),
            ),
            (
                "primary table entry 1",
                Box::new(|d| {
                    put64(d, e + 40, 10_000);
                    fix_crcs(d, h, 512);
                }),
            ),
        ];
        for (want, f) in cases {
            let (field, problem) = primary_with(f);
            assert_eq!(field, want, "{problem}");
        }
        // A changed entry without the CRC fixed.
        let mut d = gpt(512, 200, &[(0, 40, 49, "a")]);
        d[199 * 512..].fill(0);
        d[e + 40] ^= 1;
        let (_, field, _) = corrupt_field(read_table(&Mem(d), &path()));
        assert_eq!(field, "primary header entries CRC32");
    }

    #[test]
    fn gpt_entry_overflow() {
        // Usable range up to u64::MAX lets the LBA × sector product overflow.
        let (field, problem) = primary_with(|d| {
            put64(d, 512 + 48, u64::MAX);
            put64(d, 1024 + 32, u64::MAX / 2);
            put64(d, 1024 + 40, u64::MAX);
            fix_crcs(d, 512, 512);
        });
        assert_eq!(field, "primary table entry 1");
        assert!(problem.contains("overflow"), "{problem}");
    }

    #[test]
    fn gpt_huge_array_is_refused_before_allocating() {
        let mut d = gpt(512, 200, &[(0, 40, 49, "a")]);
        put32(&mut d, 512 + 80, u32::MAX);
        put32(&mut d, 512 + 84, 1 << 31);
        fix_header_crc(&mut d, 512);
        assert!(matches!(
            read_table(&Mem(d), &path()),
            Err(DiskError::Unsupported { format: "GPT", .. })
        ));
    }

    #[test]
    fn partition_reader_view() {
        let mut data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        data[510] = 0x55;
        data[511] = 0xAA;
        struct Sparse(Mem);
        impl ImageReader for Sparse {
            fn size(&self) -> u64 {
                self.0.size()
            }
            fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
                self.0.read_at(buf, offset)
            }
            fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
                Ok(vec![
                    Extent {
                        start: 0,
                        len: 1000,
                    },
                    Extent {
                        start: 2000,
                        len: 100,
                    },
                    Extent {
                        start: 3000,
                        len: 5000,
                    },
                ])
            }
        }
        let img = Sparse(Mem(data.clone()));
        let part = PartitionInfo {
            number: 1,
            start: 1024,
            len: 2048,
            type_id: String::new(),
            name: String::new(),
        };
        let r = PartitionReader::new(&img, &part);
        assert_eq!(r.size(), 2048);
        let mut buf = vec![0xFFu8; 100];
        r.read_at(&mut buf, 10).unwrap();
        assert_eq!(buf, data[1034..1134]);
        // Straddling the end: the tail reads zeros.
        let mut buf = vec![0xFFu8; 100];
        r.read_at(&mut buf, 2000).unwrap();
        assert_eq!(buf[..48], data[3024..3072]);
        assert!(buf[48..].iter().all(|&b| b == 0));
        let mut buf = vec![0xFFu8; 10];
        r.read_at(&mut buf, u64::MAX - 3).unwrap();
        assert_eq!(buf, [0; 10]);
        assert_eq!(
            r.data_extents().unwrap(),
            vec![
                Extent {
                    start: 976,
                    len: 100
                },
                Extent {
                    start: 1976,
                    len: 72
                },
            ]
        );
        // An overflowing hand-made entry is clipped, not a panic.
        let wild = PartitionInfo {
            start: u64::MAX - 5,
            len: u64::MAX,
            ..part
        };
        let r = PartitionReader::new(&img, &wild);
        assert_eq!(r.size(), 5);
        assert_eq!(r.data_extents().unwrap(), vec![]);
        let mut buf = [1u8; 8];
        r.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0; 8]);
    }

    /// splitmix64: a small deterministic PRNG.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// 10,000 random and mutated 64 KiB images: `read_table`, `find` and
    /// the partition view must return, never panic.
    #[test]
    fn random_and_mutated_images_never_panic() {
        const SIZE: usize = 64 * 1024;
        let bases = [
            mbr(
                SIZE,
                &[
                    (0x80, 0x83, 1, 40),
                    (0, 0x05, 41, 20),
                    (0, 0x0c, 70, 1000),
                    (0, 0x83, 100, 3),
                ],
            ),
            gpt(
                512,
                SIZE / 512,
                &[(0, 40, 49, "a"), (1, 50, 60, "b"), (127, 61, 90, "c")],
            ),
            gpt(4096, SIZE / 4096, &[(0, 6, 7, "x"), (2, 8, 10, "y")]),
        ];
        let mut rng = Rng(0x0b9_5eed);
        // [MBR accepted, GPT accepted, no table, error]
        let mut outcomes = [0usize; 4];
        for round in 0..10_000 {
            let mut d = match round % 4 {
                3 => {
                    let mut d: Vec<u8> = (0..SIZE).map(|_| rng.next() as u8).collect();
                    d[510] = 0x55;
                    d[511] = 0xAA;
                    if rng.below(2) == 0 {
                        d[446 + 16 * rng.below(4) as usize + 4] = 0xEE;
                    }
                    d
                }
                i => bases[i].clone(),
            };
            let sector = if round % 4 == 2 { 4096 } else { 512 };
            let mutations = 1 + rng.below(8);
            for _ in 0..mutations {
                // Mostly the metadata: LBA 0, the headers, the first entries.
                let region = match rng.below(5) {
                    0 => 0..512,
                    1 => sector..sector + 92,
                    2 => 2 * sector..2 * sector + 512,
                    3 => SIZE - sector..SIZE - sector + 92,
                    _ => 0..SIZE,
                };
                let at = region.start + rng.below((region.end - region.start) as u64) as usize;
                match rng.below(4) {
                    0 => d[at] ^= 1 << rng.below(8),
                    1 => d[at] = rng.next() as u8,
                    2 if at + 8 <= SIZE => {
                        let v = [0, 1, u64::MAX, u64::MAX / 2, rng.next(), 1 << 32]
                            [rng.below(6) as usize];
                        d[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    _ if at + 4 <= SIZE => {
                        let v = [0, 1, u32::MAX, 128, 92, 4096, rng.next() as u32]
                            [rng.below(7) as usize];
                        d[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    }
                    _ => {}
                }
            }
            if rng.below(2) == 0 {
                fix_crcs(&mut d, sector, sector);
                fix_crcs(&mut d, SIZE - sector, sector);
            }
            if rng.below(8) == 0 {
                d.truncate(rng.below(SIZE as u64) as usize);
            }
            let img = Mem(d);
            match read_table(&img, &path()) {
                Ok(Some((TableKind::Mbr, _))) => outcomes[0] += 1,
                Ok(Some((TableKind::Gpt, _))) => outcomes[1] += 1,
                Ok(None) => outcomes[2] += 1,
                Err(_) => outcomes[3] += 1,
            }
            let n = [0, 1, 2, 3, 4, 5, 128, 129, u32::MAX][rng.below(9) as usize];
            if let Ok(p) = find(&img, &path(), n) {
                let r = PartitionReader::new(&img, &p);
                let mut buf = [0u8; 64];
                r.read_at(&mut buf, rng.below(r.size().saturating_add(64)))
                    .unwrap();
                r.data_extents().unwrap();
            }
        }
        // The mutations must reach both the accepting and the rejecting paths.
        let [mbr, gpt, _, err] = outcomes;
        assert!(mbr > 100 && gpt > 100 && err > 100, "{outcomes:?}");
    }
}
