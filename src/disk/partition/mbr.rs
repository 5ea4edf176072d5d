//! The MBR: the four primary entries of LBA 0.

use std::path::Path;

use super::{corrupt, PartitionInfo};
use crate::bytes;
use crate::disk::error::DiskError;

/// MBR sector size; MBR LBAs always count 512-byte sectors here.
pub(super) const MBR_SECTOR: u64 = 512;
/// Offset of the four primary entries in LBA 0.
pub(super) const MBR_TABLE_OFFSET: usize = 446;
/// Size of one MBR entry.
pub(super) const MBR_ENTRY_SIZE: usize = 16;
/// Number of MBR primary entries.
pub(super) const MBR_PRIMARIES: u32 = 4;
/// Type of the protective MBR entry that announces a GPT.
pub(super) const MBR_TYPE_PROTECTIVE: u8 = 0xEE;
/// MBR types of extended partitions (containers of logical partitions), as
/// rendered in [`PartitionInfo::type_id`].
pub(super) const MBR_TYPES_EXTENDED: [&str; 3] = ["0x05", "0x0f", "0x85"];

pub(super) fn parse_mbr(
    lba0: &[u8; 512],
    path: &Path,
) -> Result<Vec<Option<PartitionInfo>>, DiskError> {
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
