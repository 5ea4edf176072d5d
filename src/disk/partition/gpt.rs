//! The GPT: primary header at LBA 1 (512- or 4096-byte sectors), the backup
//! at the last LBA, every field and both CRC32s checked.

use std::path::Path;

use super::{corrupt, PartitionInfo, MAX_GPT_ENTRIES_BYTES};
use crate::bytes;
use crate::disk::capability::ImageReader;
use crate::disk::error::DiskError;

/// GPT header signature.
pub(super) const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Smallest valid GPT header size (UEFI 2.x).
const GPT_HEADER_MIN: u32 = 92;
/// Smallest valid GPT entry size (UEFI: 128 × 2^n).
const GPT_ENTRY_MIN: u32 = 128;
/// Logical sector sizes tried for a GPT, in order.
const GPT_SECTOR_SIZES: [u64; 2] = [512, 4096];

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

pub(super) fn read_gpt(
    image: &dyn ImageReader,
    path: &Path,
) -> Result<Vec<Option<PartitionInfo>>, DiskError> {
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
