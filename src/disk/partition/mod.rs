//! MBR and GPT partition tables: finding partition n of an image.
//!
//! `SourceImage img (Partition n) resize` takes one partition out of an
//! image (docs/IMAGES.md#partitions: MBR primaries 1-4 and GPT entries 1-128, detected
//! from the image; docs/COMPATIBILITY.md#differences for the original's MBR-only behaviour).
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

mod gpt;
mod mbr;
mod reader;

use std::fmt;
use std::path::Path;

use crate::disk::capability::ImageReader;
use crate::disk::error::DiskError;
use gpt::read_gpt;
use mbr::{
    parse_mbr, MBR_ENTRY_SIZE, MBR_PRIMARIES, MBR_TABLE_OFFSET, MBR_TYPES_EXTENDED,
    MBR_TYPE_PROTECTIVE,
};
pub use reader::PartitionReader;

/// The largest GPT partition entry array read (entry count × entry size):
/// 1 MiB, 64 times the usual 128 entries of 128 bytes.
pub const MAX_GPT_ENTRIES_BYTES: u64 = 1 << 20;

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

#[cfg(test)]
mod tests;
