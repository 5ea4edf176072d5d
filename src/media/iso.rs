//! `CI_ISO`: ISO9660 with Rock Ridge and Joliet, volume id `cidata`.
//!
//! The image is written by `hadris-iso` (pinned): a level-1 primary tree
//! (upper-case 8.3 names mangled by hadris, which `isovfy` accepts) carrying
//! Rock Ridge (PX modes, owner/group 0, NM long names, SL symbolic links, TF
//! times), plus a Joliet tree (level 3) for systems without Rock Ridge.
//!
//! hadris stamps directory records, volume descriptors and the root's Rock
//! Ridge times with the clock. To make the image reproducible,
//! [`normalise_times`] walks the finished image and rewrites every such date
//! to [`MediaOptions::timestamp`]. The image has no other ids or UUIDs.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use hadris_iso::joliet::JolietLevel;
use hadris_iso::read::PathSeparator;
use hadris_iso::rrip::RripOptions;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{
    FileSource, InputEntry, InputEntryKind, InputMetadata, InputTree, IsoImageWriter,
};

use crate::bytes::le_u32;

use super::{read_tree, Civil, Entry, EntryKind, MediaError, MediaOptions, RecordingFile};

/// The volume id cloud-init's NoCloud data source looks for.
pub const VOLUME_ID: &str = "cidata";

/// ISO9660 logical sector size.
const SECTOR: u64 = 2048;

/// The largest file one ISO9660 extent holds (hadris writes one extent per
/// file).
const MAX_FILE: u64 = u32::MAX as u64;

/// Writes `tree` as an ISO9660 image with Rock Ridge and Joliet, volume id
/// `cidata`, to `out` (created or truncated). A missing tree gives an image
/// with an empty root directory.
pub fn write_iso(tree: &Path, out: &Path, opts: &MediaOptions) -> Result<(), MediaError> {
    let (entries, _root_mode) = read_tree(tree)?;
    let ts = i64::try_from(opts.timestamp).unwrap_or(i64::MAX);
    let input = InputTree {
        path_separator: PathSeparator::ForwardSlash,
        entries: convert(&entries, ts)?,
    };
    let options = IsoFormatOptions {
        volume_name: VOLUME_ID.to_string(),
        system_id: Some("LINUX".to_string()),
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: Some("B9".to_string()),
        sector_size: SECTOR as usize,
        features: CreationFeatures {
            filenames: BaseIsoLevel::Level1 {
                supports_lowercase: false,
                supports_rrip: true,
            },
            long_filenames: false,
            joliet: Some(JolietLevel::Level3),
            rock_ridge: Some(RripOptions {
                enabled: true,
                relocate_deep_dirs: true,
                preserve_permissions: true,
                preserve_ownership: true,
                preserve_timestamps: true,
                preserve_symlinks: true,
                preserve_devices: false,
            }),
            el_torito: None,
            hybrid_boot: None,
        },
        path_separator: PathSeparator::ForwardSlash,
        strict_charset: false,
    };
    let first_error = Arc::default();
    let file = RecordingFile::new(super::create_output(out)?, &first_error);
    let file = IsoImageWriter::create(file, input, options).map_err(|e| {
        match first_error.lock().ok().and_then(|mut slot| slot.take()) {
            Some(os) => MediaError::io("write", out, os),
            None => MediaError::Iso {
                path: out.to_path_buf(),
                message: e.to_string(),
            },
        }
    })?;
    normalise_times(file.file(), opts.timestamp)
        .map_err(|e| MediaError::io("fix the dates in", out, e))
}

/// Converts the tree to hadris' input, with modes, owner/group 0 and every
/// time set to `ts`. File contents are streamed from the host when written.
fn convert(entries: &[Entry], ts: i64) -> Result<Vec<InputEntry>, MediaError> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = utf8(entry, &entry.name)?;
        let kind = match &entry.kind {
            EntryKind::File { len } => {
                if *len > MAX_FILE {
                    return Err(MediaError::FileTooLarge {
                        path: entry.path.clone(),
                        size: *len,
                        limit: MAX_FILE,
                        medium: "ISO9660",
                    });
                }
                let path = entry.path.clone();
                InputEntryKind::Source(FileSource::new(*len, move || {
                    fs::File::open(&path).map(|f| Box::new(f) as Box<dyn io::Read + Send>)
                }))
            }
            EntryKind::Dir(children) => InputEntryKind::Directory(convert(children, ts)?),
            EntryKind::Symlink(target) => {
                InputEntryKind::Symlink(utf8(entry, target.as_os_str())?.to_string())
            }
        };
        out.push(InputEntry {
            name: Arc::new(name.to_string()),
            kind,
            metadata: InputMetadata {
                mode: Some(entry.mode),
                uid: Some(0),
                gid: Some(0),
                created: None,
                modified: Some(ts),
                accessed: Some(ts),
            },
        });
    }
    Ok(out)
}

fn utf8<'a>(entry: &Entry, s: &'a std::ffi::OsStr) -> Result<&'a str, MediaError> {
    s.to_str().ok_or_else(|| MediaError::BadName {
        path: entry.path.clone(),
        medium: "ISO9660",
        reason: "it is not valid UTF-8",
    })
}

/// The 7-byte directory-record / Rock Ridge TF date of `ts` (UTC).
fn short_date(ts: u64) -> [u8; 7] {
    let c = Civil::from_unix(ts);
    [
        (c.year - 1900).clamp(0, 255) as u8,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        0,
    ]
}

/// The 17-byte volume-descriptor date of `ts` (UTC): `YYYYMMDDHHMMSScc` and
/// a zero time-zone offset.
fn long_date(ts: u64) -> [u8; 17] {
    let c = Civil::from_unix(ts);
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}00",
        c.year.clamp(0, 9999),
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second
    );
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(&text.as_bytes()[..16]);
    out
}

/// A field that does not lie wholly inside its record.
fn truncated() -> io::Error {
    invalid("truncated field")
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Rewrites every date of a finished image to `ts`: the creation and
/// modification dates of the primary and supplementary volume descriptors,
/// the date of every directory record in every tree, and every Rock Ridge TF
/// time (also in continuation areas).
pub(crate) fn normalise_times(img: &fs::File, ts: u64) -> io::Result<()> {
    let short = short_date(ts);
    let long = long_date(ts);
    let mut dirs: Vec<(u64, u64)> = Vec::new();
    let mut sector = 16u64;
    loop {
        let mut vd = [0u8; SECTOR as usize];
        img.read_exact_at(&mut vd, sector * SECTOR)?;
        if &vd[1..6] != b"CD001" {
            return Err(invalid("volume descriptor without CD001"));
        }
        match vd[0] {
            255 => break,
            1 | 2 => {
                vd[813..830].copy_from_slice(&long);
                vd[830..847].copy_from_slice(&long);
                vd[156 + 18..156 + 25].copy_from_slice(&short);
                dirs.push((
                    le_u32(&vd, 156 + 2).map(u64::from).ok_or_else(truncated)?,
                    le_u32(&vd, 156 + 10).map(u64::from).ok_or_else(truncated)?,
                ));
                img.write_all_at(&vd, sector * SECTOR)?;
            }
            _ => {}
        }
        sector += 1;
        if sector > 16 + 64 {
            return Err(invalid("no volume descriptor set terminator"));
        }
    }
    let mut seen = BTreeSet::new();
    while let Some((lba, len)) = dirs.pop() {
        if !seen.insert(lba) {
            continue;
        }
        let mut data = vec![0u8; len as usize];
        img.read_exact_at(&mut data, lba * SECTOR)?;
        let mut continuations = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            let rec_len = data[pos] as usize;
            if rec_len == 0 {
                // Records never cross a sector: the rest of this one is padding.
                pos = (pos / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let rec = data
                .get_mut(pos..pos + rec_len)
                .ok_or_else(|| invalid("directory record runs past its extent"))?;
            if rec_len < 34 {
                return Err(invalid("short directory record"));
            }
            rec[18..25].copy_from_slice(&short);
            let name_len = rec[32] as usize;
            let is_dir = rec[25] & 2 != 0;
            let is_self_or_parent = name_len == 1 && rec[33] <= 1;
            if is_dir && !is_self_or_parent {
                dirs.push((
                    le_u32(rec, 2).map(u64::from).ok_or_else(truncated)?,
                    le_u32(rec, 10).map(u64::from).ok_or_else(truncated)?,
                ));
            }
            let su_start = 33 + name_len + (1 - name_len % 2);
            if su_start < rec_len {
                patch_susp(&mut rec[su_start..], &short, &mut continuations)?;
            }
            pos += rec_len;
        }
        img.write_all_at(&data, lba * SECTOR)?;
        let mut done = BTreeSet::new();
        while let Some((block, offset, clen)) = continuations.pop() {
            if !done.insert((block, offset)) {
                continue;
            }
            let at = block * SECTOR + offset;
            let mut area = vec![0u8; clen as usize];
            img.read_exact_at(&mut area, at)?;
            patch_susp(&mut area, &short, &mut continuations)?;
            img.write_all_at(&area, at)?;
        }
    }
    Ok(())
}

/// Rewrites the times of every TF entry in a System Use area and collects its
/// CE continuation areas as (block, offset, length).
fn patch_susp(area: &mut [u8], short: &[u8; 7], ce: &mut Vec<(u64, u64, u64)>) -> io::Result<()> {
    let mut off = 0usize;
    while off + 4 <= area.len() {
        let len = area[off + 2] as usize;
        if len < 4 || off + len > area.len() {
            break;
        }
        let entry = &mut area[off..off + len];
        match &entry[0..2] {
            b"TF" if len >= 5 => {
                let flags = entry[4];
                let size = if flags & 0x80 != 0 { 17 } else { 7 };
                let count = (0..7).filter(|bit| flags & (1 << bit) != 0).count();
                if 5 + count * size > len {
                    return Err(invalid("TF entry shorter than its flags"));
                }
                for i in 0..count {
                    let at = 5 + i * size;
                    if size == 7 {
                        entry[at..at + 7].copy_from_slice(short);
                    } else {
                        return Err(invalid("long-form TF times are not expected"));
                    }
                }
            }
            b"CE" if len >= 28 => {
                ce.push((
                    le_u32(entry, 4).map(u64::from).ok_or_else(truncated)?,
                    le_u32(entry, 12).map(u64::from).ok_or_else(truncated)?,
                    le_u32(entry, 20).map(u64::from).ok_or_else(truncated)?,
                ));
            }
            b"ST" => break,
            _ => {}
        }
        off += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2024-02-29T12:34:56Z
        assert_eq!(short_date(1_709_210_096), [124, 2, 29, 12, 34, 56, 0]);
        assert_eq!(&long_date(1_709_210_096)[..16], b"2024022912345600");
        assert_eq!(long_date(0)[16], 0);
    }

    #[test]
    fn tf_entries_are_rewritten_and_ce_collected() {
        // TF with modify+access (flags 0b110), then a CE, then ST.
        let mut area = vec![b'T', b'F', 19, 1, 0b110];
        area.extend_from_slice(&[1; 14]);
        let mut ce = vec![b'C', b'E', 28, 1];
        ce.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 7]);
        ce.extend_from_slice(&[16, 0, 0, 0, 0, 0, 0, 16]);
        ce.extend_from_slice(&[40, 0, 0, 0, 0, 0, 0, 40]);
        area.extend_from_slice(&ce);
        area.extend_from_slice(b"ST\x04\x01");
        let mut found = Vec::new();
        patch_susp(&mut area, &[9; 7], &mut found).unwrap();
        assert_eq!(&area[5..19], &[9; 14]);
        assert_eq!(found, vec![(7, 16, 40)]);
    }
}
