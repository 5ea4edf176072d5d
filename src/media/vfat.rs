//! `CI_VFAT`: a FAT image labelled cidata, sized to fit.
//!
//! The image is formatted and filled by fstool's allocation-free FAT driver
//! (`fstool::fs::fat::Volume`, pinned), which keeps the label's case, so the
//! label is `cidata` exactly as the original's `mkfs.vfat -n cidata`. FAT
//! type and cluster size follow mkfs.fat's choices for the image size: FAT12
//! below 16 MiB, FAT16 below 512 MiB, FAT32 above.
//!
//! The image size is computed from the tree (clusters for every file and
//! directory, long-name entries, FATs and root directory, plus 1/32 slack),
//! rounded up to 64 KiB, and at least 1 MiB. FAT has no modes, owners or
//! symbolic links: a link is stored as a copy of its target when the target
//! is a regular file inside the tree, otherwise it is an error. Every date
//! is [`MediaOptions::timestamp`] (clamped to FAT's 1980-2107); the volume
//! serial number is derived from a SHA-256 of the timestamp, the names, the
//! modes and the contents, never from the clock.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fstool::device::SectorDriver;
use fstool::fs::fat::{FatKind, FormatOpts, Timestamp, Volume};
use sha2::{Digest, Sha256};

use super::{read_tree, Civil, Entry, EntryKind, MediaError, MediaOptions};

/// The label cloud-init's NoCloud data source looks for, as stored.
pub const LABEL: [u8; 11] = *b"cidata     ";

/// Bytes per sector of the image.
const SECTOR: u64 = 512;

/// Smallest image written.
const MIN_SIZE: u64 = 1 << 20;

/// Image sizes are multiples of this.
const ROUND: u64 = 64 << 10;

/// Largest FAT file.
const MAX_FILE: u64 = u32::MAX as u64;

/// Writes `tree` as a FAT image labelled `cidata` to `out` (created or
/// truncated), sized to fit. A missing tree gives an empty 1 MiB image.
pub fn write_vfat(tree: &Path, out: &Path, opts: &MediaOptions) -> Result<(), MediaError> {
    let (entries, _) = read_tree(tree)?;
    let root = match fs::canonicalize(tree) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(MediaError::io("resolve", tree, e)),
    };
    let items = plan(&entries, root.as_deref())?;
    let mut size = image_size(&items);
    // The estimate is conservative; should it ever fall short, grow and
    // start again (deterministically: the same tree takes the same path).
    for attempt in 0..4 {
        match write_image(&items, out, size, opts.timestamp) {
            Err(WriteError::Full) if attempt < 3 => size = round_up(size + size / 4, ROUND),
            Err(WriteError::Full) => {
                return Err(MediaError::Fat {
                    image: out.to_path_buf(),
                    entry: tree.to_path_buf(),
                    message: format!("the tree does not fit into {size} bytes"),
                })
            }
            Err(WriteError::Media(e)) => return Err(e),
            Ok(()) => return Ok(()),
        }
    }
    Ok(())
}

/// One thing to put on the volume, in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// Absolute path on the volume, `/`-separated.
    fat_path: String,
    /// Where the content comes from (the link target for links).
    source: PathBuf,
    /// The tree entry (for messages).
    entry: PathBuf,
    /// Permission bits, for the serial number only.
    mode: u32,
    /// File length, or `None` for a directory.
    len: Option<u64>,
    /// Directory-entry slots of the directory this item is (for directories)
    /// and the slots this item takes in its parent.
    dir_slots: u64,
    /// Slots this item's own name takes in its parent.
    name_slots: u64,
    /// Whether this item sits in the root directory.
    in_root: bool,
}

/// Directory-entry slots a name takes: the short entry plus, conservatively,
/// long-name entries of 13 UTF-16 units each.
fn name_slots(name: &str) -> u64 {
    1 + name.encode_utf16().count().div_ceil(13) as u64
}

/// Characters a FAT long name may not hold.
const INVALID: &[char] = &['"', '*', '/', ':', '<', '>', '?', '\\', '|'];

fn plan(entries: &[Entry], root: Option<&Path>) -> Result<Vec<Item>, MediaError> {
    let mut items = Vec::new();
    walk(entries, "", root, &mut items)?;
    Ok(items)
}

fn walk(
    entries: &[Entry],
    parent: &str,
    root: Option<&Path>,
    out: &mut Vec<Item>,
) -> Result<(), MediaError> {
    for entry in entries {
        let bad = |reason| MediaError::BadName {
            path: entry.path.clone(),
            medium: "FAT",
            reason,
        };
        let name = entry.name.to_str().ok_or(bad("it is not valid UTF-8"))?;
        if name.chars().any(|c| INVALID.contains(&c) || c.is_control()) {
            return Err(bad(
                "FAT names may not contain control characters or any of \" * / : < > ? \\ |",
            ));
        }
        if name.ends_with('.') || name.ends_with(' ') {
            return Err(bad("FAT names may not end in a dot or a space"));
        }
        if name.encode_utf16().count() > 255 {
            return Err(bad("FAT names are at most 255 UTF-16 units long"));
        }
        let fat_path = format!("{parent}/{name}");
        let mut item = Item {
            fat_path: fat_path.clone(),
            source: entry.path.clone(),
            entry: entry.path.clone(),
            mode: entry.mode,
            len: None,
            dir_slots: 0,
            name_slots: name_slots(name),
            in_root: parent.is_empty(),
        };
        match &entry.kind {
            EntryKind::File { len } => {
                item.len = Some(*len);
                out.push(item);
            }
            EntryKind::Symlink(target) => {
                let (source, len) = resolve_link(entry, target, root)?;
                item.source = source;
                item.len = Some(len);
                out.push(item);
            }
            EntryKind::Dir(children) => {
                // `.`, `..` and the children's names.
                item.dir_slots = 2 + children
                    .iter()
                    .map(|c| name_slots(&c.name.to_string_lossy()))
                    .sum::<u64>();
                out.push(item);
                walk(children, &fat_path, root, out)?;
            }
        }
    }
    for item in out.iter() {
        if let Some(len) = item.len {
            if len > MAX_FILE {
                return Err(MediaError::FileTooLarge {
                    path: item.entry.clone(),
                    size: len,
                    limit: MAX_FILE,
                    medium: "FAT",
                });
            }
        }
    }
    Ok(())
}

/// The regular file inside the tree a link resolves to, and its length.
fn resolve_link(
    entry: &Entry,
    target: &Path,
    root: Option<&Path>,
) -> Result<(PathBuf, u64), MediaError> {
    let bad = |reason| MediaError::BadSymlink {
        path: entry.path.clone(),
        target: target.to_path_buf(),
        reason,
    };
    let resolved = fs::canonicalize(&entry.path).map_err(|_| bad("it does not resolve"))?;
    if !root.is_some_and(|r| resolved.starts_with(r)) {
        return Err(bad("it points outside the tree"));
    }
    let meta = fs::metadata(&resolved).map_err(|e| MediaError::io("stat", &resolved, e))?;
    if !meta.is_file() {
        return Err(bad("its target is not a regular file (FAT has no links)"));
    }
    Ok((resolved, meta.len()))
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// The FAT type and cluster size fstool's format picks for an image of
/// `bytes`, or a larger cluster (which only makes the estimate safer).
fn predicted_layout(bytes: u64) -> (FatKind, u64) {
    if bytes >= 512 << 20 {
        let cluster = match bytes {
            b if b <= 8 << 30 => 4096,
            b if b <= 16 << 30 => 8192,
            b if b <= 32 << 30 => 16384,
            _ => 32768,
        };
        return (FatKind::Fat32, cluster);
    }
    let kind = if bytes >= 16 << 20 {
        FatKind::Fat16
    } else {
        FatKind::Fat12
    };
    let mut cluster = SECTOR;
    while bytes / cluster > u64::from(kind.max_clusters()) && cluster < 32768 {
        cluster *= 2;
    }
    (kind, cluster)
}

/// Root-directory slots (FAT12/16) for the items in the root plus the label.
fn root_entries(items: &[Item]) -> u64 {
    let used = 1 + items
        .iter()
        .filter(|i| i.in_root)
        .map(|i| i.name_slots)
        .sum::<u64>();
    round_up(used.max(512), SECTOR / 32)
}

/// Bytes an image needs for `items` if formatted with this layout.
fn needed_bytes(items: &[Item], kind: FatKind, cluster: u64) -> u64 {
    let mut clusters = 0u64;
    for item in items {
        clusters += match item.len {
            Some(len) => len.div_ceil(cluster),
            None => (item.dir_slots * 32).div_ceil(cluster).max(1),
        };
    }
    let root_slots = root_entries(items);
    let (reserved, root_bytes) = if kind == FatKind::Fat32 {
        clusters += (root_slots * 32).div_ceil(cluster).max(1);
        (32 * SECTOR + cluster, 0)
    } else {
        (SECTOR, root_slots * 32)
    };
    clusters += clusters / 32 + 2;
    let fat = round_up(kind.fat_bytes(clusters + 2), SECTOR);
    reserved + 2 * fat + root_bytes + clusters * cluster
}

/// The image size for `items`: at least 1 MiB, a multiple of 64 KiB, and
/// enough for the layout fstool picks at that size.
fn image_size(items: &[Item]) -> u64 {
    let mut size = MIN_SIZE;
    for _ in 0..64 {
        let (kind, cluster) = predicted_layout(size);
        let need = round_up(needed_bytes(items, kind, cluster), ROUND);
        if need <= size {
            break;
        }
        size = need;
    }
    size
}

/// A failed attempt: out of room (retry bigger) or a real error.
enum WriteError {
    Full,
    Media(MediaError),
}

impl From<MediaError> for WriteError {
    fn from(e: MediaError) -> Self {
        WriteError::Media(e)
    }
}

/// The image file as fstool's sector device.
struct Image {
    file: fs::File,
    sectors: u64,
}

impl SectorDriver for Image {
    type Error = io::Error;

    fn sector_size(&self) -> u32 {
        SECTOR as u32
    }

    fn sector_count(&self) -> u64 {
        self.sectors
    }

    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, lba * SECTOR)
    }

    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, lba * SECTOR)
    }
}

fn fat_error(out: &Path, entry: &Path, e: fstool::fs::fat::Error<io::Error>) -> WriteError {
    match e {
        fstool::fs::fat::Error::NoSpace => WriteError::Full,
        e => WriteError::Media(MediaError::Fat {
            image: out.to_path_buf(),
            entry: entry.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

fn fat_timestamp(ts: u64) -> Timestamp {
    let c = Civil::from_unix(ts);
    Timestamp::from_ymd_hms(
        c.year.clamp(1980, 2107) as u16,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
    )
}

fn write_image(items: &[Item], out: &Path, size: u64, ts: u64) -> Result<(), WriteError> {
    let file = super::create_output(out)?;
    file.set_len(size)
        .map_err(|e| MediaError::io("set the size of", out, e))?;
    let image = Image {
        file,
        sectors: size / SECTOR,
    };
    let time = fat_timestamp(ts);
    let mut fmt = FormatOpts::default();
    fmt.label = LABEL;
    fmt.time = time;
    fmt.root_entries = u16::try_from(root_entries(items)).unwrap_or(0xFFF0);
    // Patched below, once the contents are hashed.
    fmt.volume_id = 0;
    let mut vol = Volume::<_, 512>::format(image, &fmt).map_err(|e| fat_error(out, out, e))?;
    vol.set_time(time);

    let mut hash = Sha256::new();
    hash.update(ts.to_le_bytes());
    let mut buf = vec![0u8; 64 << 10];
    for item in items {
        hash.update(item.fat_path.as_bytes());
        hash.update([0]);
        hash.update(item.mode.to_le_bytes());
        let Some(len) = item.len else {
            hash.update(b"d");
            vol.create_dir(&item.fat_path)
                .map_err(|e| fat_error(out, &item.entry, e))?;
            continue;
        };
        hash.update(len.to_le_bytes());
        let mut f = vol
            .create_file(&item.fat_path)
            .map_err(|e| fat_error(out, &item.entry, e))?;
        let mut src =
            fs::File::open(&item.source).map_err(|e| MediaError::io("open", &item.source, e))?;
        let mut copied = 0u64;
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| MediaError::io("read", &item.source, e))?;
            if n == 0 {
                break;
            }
            copied += n as u64;
            if copied > MAX_FILE {
                return Err(WriteError::Media(MediaError::FileTooLarge {
                    path: item.entry.clone(),
                    size: copied,
                    limit: MAX_FILE,
                    medium: "FAT",
                }));
            }
            hash.update(&buf[..n]);
            f.write_all(&mut vol, &buf[..n])
                .map_err(|e| fat_error(out, &item.entry, e))?;
        }
        f.flush(&mut vol)
            .map_err(|e| fat_error(out, &item.entry, e))?;
    }
    let kind = vol.kind();
    let image = vol.unmount().map_err(|e| fat_error(out, out, e))?;

    // The serial number: BS_VolID at 39 (FAT12/16) or 67 (FAT32, also in the
    // backup boot sector at sector 6).
    let digest = hash.finalize();
    let serial = [digest[0], digest[1], digest[2], digest[3]];
    let offsets: &[u64] = if kind == FatKind::Fat32 {
        &[67, 6 * SECTOR + 67]
    } else {
        &[39]
    };
    for &at in offsets {
        image
            .file
            .write_all_at(&serial, at)
            .map_err(|e| MediaError::io("write the serial number of", out, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, len: Option<u64>, dir_slots: u64) -> Item {
        Item {
            fat_path: path.to_string(),
            source: PathBuf::from(path),
            entry: PathBuf::from(path),
            mode: 0o644,
            len,
            dir_slots,
            name_slots: name_slots(path.rsplit('/').next().unwrap_or(path)),
            in_root: path.matches('/').count() == 1,
        }
    }

    #[test]
    fn small_trees_get_the_minimum_size() {
        assert_eq!(image_size(&[]), MIN_SIZE);
        let items = [
            item("/meta-data", Some(40), 0),
            item("/user-data", Some(900), 0),
        ];
        assert_eq!(image_size(&items), MIN_SIZE);
    }

    #[test]
    fn size_grows_with_content_and_switches_fat_type() {
        let items = [item("/big", Some(40 << 20), 0)];
        let size = image_size(&items);
        assert!((40 << 20..44 << 20).contains(&size), "{size}");
        assert_eq!(predicted_layout(size).0, FatKind::Fat16);
        let items = [item("/huge", Some(600 << 20), 0)];
        let size = image_size(&items);
        assert_eq!(predicted_layout(size).0, FatKind::Fat32);
        assert!(size < 640 << 20, "{size}");
    }

    #[test]
    fn many_root_entries_widen_the_root_directory() {
        let items: Vec<_> = (0..700)
            .map(|i| item(&format!("/a-rather-long-file-name-{i}"), Some(1), 0))
            .collect();
        assert!(root_entries(&items) > 512);
        assert_eq!(root_entries(&items) % 16, 0);
    }

    #[test]
    fn names_take_long_name_slots() {
        assert_eq!(name_slots("a"), 2);
        assert_eq!(name_slots("network-config"), 3);
    }

    #[test]
    fn fat_dates_are_clamped() {
        assert_eq!(fat_timestamp(0).year(), 1980);
        let t = fat_timestamp(1_709_210_096);
        assert_eq!((t.year(), t.month(), t.day()), (2024, 2, 29));
        assert_eq!((t.hour(), t.minute(), t.second()), (12, 34, 56));
    }
}
