//! The ext4 writer behind a small interface, so fstool (the only user of
//! which is this file) can be replaced without touching the rest of b9.
//!
//! fstool 0.5.2 is pinned. Settings that matter (see docs/IMAGES.md#ext4):
//! `inode_size = 256`; `log_groups_per_flex` only through fstool's own
//! `default_log_groups_per_flex` (flex_bg below 16 groups is broken there);
//! `prezeroed = true` on a freshly truncated file keeps the image sparse.

use std::path::{Path, PathBuf};

use fstool::block::BlockDevice;
use fstool::fs::ext::superblock::Superblock;
use fstool::fs::ext::{constants::feature, csum, Ext, FormatOpts, FsKind};
use fstool::fs::{DeviceKind, FileMeta, FileSource};

use super::device::ImageFile;
use super::features::Features;
use super::geometry::{Geometry, INODE_SIZE};
use crate::disk::DiskError;

/// An inode number in the file system being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Ino(pub u32);

/// The root directory's inode.
pub(crate) const ROOT: Ino = Ino(2);

/// Owner, permissions and times of a new object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission bits (`0o7777`), no file type.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access time (UNIX seconds).
    pub atime: u32,
    /// Modification time.
    pub mtime: u32,
    /// Inode change time.
    pub ctime: u32,
}

/// A special file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    /// Character device with major and minor number.
    Char(u32, u32),
    /// Block device with major and minor number.
    Block(u32, u32),
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// Everything the formatter needs, decided by the caller.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    /// Exact length of the image file in bytes.
    pub size: u64,
    /// Sizes.
    pub geometry: Geometry,
    /// Feature set.
    pub features: Features,
    /// File-system UUID.
    pub uuid: [u8; 16],
    /// HTree hash seed.
    pub hash_seed: [u8; 16],
    /// Volume label, at most 16 bytes.
    pub label: [u8; 16],
    /// Time of creation (UNIX seconds) for the superblock and the objects
    /// the formatter itself creates.
    pub time: u32,
}

/// A file system under construction. Objects are added parent first;
/// `finish` writes the metadata.
pub(crate) trait Builder {
    /// Creates directory `name` in `parent`.
    fn mkdir(&mut self, parent: Ino, name: &[u8], meta: &Meta) -> Result<Ino, DiskError>;
    /// Creates regular file `name` with the bytes of host file `src`.
    fn file(&mut self, parent: Ino, name: &[u8], src: &Path, meta: &Meta)
        -> Result<Ino, DiskError>;
    /// Creates symbolic link `name` pointing at `target`.
    fn symlink(
        &mut self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<Ino, DiskError>;
    /// Creates special file `name`.
    fn special(
        &mut self,
        parent: Ino,
        name: &[u8],
        kind: Special,
        meta: &Meta,
    ) -> Result<Ino, DiskError>;
    /// Adds `name` in `parent` as another name of the non-directory `target`.
    fn hard_link(&mut self, parent: Ino, name: &[u8], target: Ino) -> Result<(), DiskError>;
    /// Sets owner, permissions and times of an existing object.
    fn set_meta(&mut self, ino: Ino, meta: &Meta) -> Result<(), DiskError>;
    /// Writes all metadata; the image is complete afterwards.
    fn finish(self: Box<Self>) -> Result<(), DiskError>;
}

/// Creates the image file at `path` (truncated to `params.size`, sparse) and
/// formats it.
pub(crate) fn format(path: &Path, params: &Params) -> Result<Box<dyn Builder>, DiskError> {
    let err = |e| fs_error(path, e);
    let mut dev = ImageFile::create(path, params.size).map_err(|source| DiskError::Io {
        op: "cannot create ext4 image",
        path: path.to_path_buf(),
        source,
    })?;
    let g = &params.geometry;
    let f = &params.features;
    let mut opts = FormatOpts::default();
    opts.kind = FsKind::Ext4;
    opts.block_size = g.block_size;
    opts.blocks_count = g.blocks_count;
    opts.inodes_count = g.inodes_count;
    opts.inode_size = INODE_SIZE as u16;
    opts.uuid = params.uuid;
    opts.volume_label = params.label;
    opts.mtime = params.time;
    opts.reserved_blocks_percent = 5;
    opts.create_lost_found = f.metadata_csum;
    opts.journal_blocks = g.journal_blocks;
    opts.sparse = true;
    opts.sparse_super = f.sparse_super;
    opts.sparse_super2 = f.sparse_super2;
    opts.log_groups_per_flex = if f.flex_bg { flex_log(g.groups) } else { 0 };
    opts.use_64bit = f.bit64;
    opts.inline_data = f.inline_data;
    opts.metadata_csum_seed = f.metadata_csum_seed;
    opts.prezeroed = true;
    let mut ext = Ext::format_with(&mut dev, &opts).map_err(err)?;

    // What fstool leaves to the caller, set the way mke2fs sets it.
    let sb = &mut ext.sb;
    if !f.metadata_csum {
        // fstool's ext4 always starts with metadata_csum; nothing written
        // so far depends on it except what the final flush rewrites.
        sb.feature_ro_compat &= !feature::RO_COMPAT_METADATA_CSUM;
    }
    let set = |on: bool, word: &mut u32, bit: u32| {
        if on {
            *word |= bit;
        } else {
            *word &= !bit;
        }
    };
    set(
        f.large_file,
        &mut sb.feature_ro_compat,
        feature::RO_COMPAT_LARGE_FILE,
    );
    set(
        f.huge_file,
        &mut sb.feature_ro_compat,
        feature::RO_COMPAT_HUGE_FILE,
    );
    set(
        f.dir_nlink,
        &mut sb.feature_ro_compat,
        feature::RO_COMPAT_DIR_NLINK,
    );
    set(f.ext_attr, &mut sb.feature_compat, feature::COMPAT_EXT_ATTR);
    sb.hash_seed = params.hash_seed;
    sb.errors = 1; // continue
    sb.max_mnt_count = u16::MAX; // -1: no mount-count checks
    sb.lastcheck = params.time;
    // s_default_mount_opts: user_xattr, acl (mke2fs.conf default_mntopts).
    sb.raw[0x100..0x104].copy_from_slice(&0x000c_u32.to_le_bytes());
    // s_mkfs_time.
    sb.raw[0x108..0x10c].copy_from_slice(&params.time.to_le_bytes());

    set_journal_uuid(&mut ext, &mut dev, &params.uuid).map_err(err)?;

    let mut b = FstoolBuilder {
        path: path.to_path_buf(),
        dev,
        ext,
        changed: false,
    };
    if !f.metadata_csum {
        // Made here rather than by the formatter so its blocks carry no
        // checksum tails.
        let meta = Meta {
            mode: 0o700,
            uid: 0,
            gid: 0,
            atime: params.time,
            mtime: params.time,
            ctime: params.time,
        };
        b.mkdir(ROOT, b"lost+found", &meta)?;
    }
    Ok(Box::new(b))
}

/// Stamps the file-system UUID into the journal superblock's `s_uuid`, as
/// mke2fs does for an internal journal (fstool leaves it zero).
fn set_journal_uuid(
    ext: &mut Ext,
    dev: &mut ImageFile,
    uuid: &[u8; 16],
) -> Result<(), fstool::Error> {
    let inode = ext.read_inode(dev, 8)?;
    let block = ext.file_block(dev, &inode, 0)?;
    let at = u64::from(block) * u64::from(ext.layout.block_size);
    let mut head = [0u8; 64];
    dev.read_at(at, &mut head)?;
    // JBD2 magic, then s_uuid at 48..64.
    if head[..4] != [0xc0, 0x3b, 0x39, 0x98] {
        return Err(fstool::Error::InvalidImage(
            "journal superblock not found".into(),
        ));
    }
    dev.write_at(at + 48, uuid)
}

/// `log_groups_per_flex` for `groups` block groups: fstool's own heuristic
/// (0 below 16 groups), lowered until the flex units are all complete:
/// fstool 0.5.2 mis-packs a partial last unit (e2fsck: "Block bitmap
/// differences"), so e.g. 40 groups get units of 8 and 37 groups none.
pub(crate) fn flex_log(groups: u32) -> u8 {
    let mut log = FormatOpts::default_log_groups_per_flex(groups);
    while log > 0 && !groups.is_multiple_of(1u32 << log) {
        log -= 1;
    }
    log
}

/// The fstool implementation of [`Builder`].
struct FstoolBuilder {
    path: PathBuf,
    dev: ImageFile,
    ext: Ext,
    /// Whether objects were added or changed since the formatter's flush.
    changed: bool,
}

/// A DiskError for fstool's error `e` while writing the image `path`.
pub(crate) fn fs_error(path: &Path, e: fstool::Error) -> DiskError {
    if crate::interrupt::cancelled() {
        return DiskError::Interrupted;
    }
    match e {
        fstool::Error::Io(source) => DiskError::Io {
            op: "cannot write ext4 image",
            path: path.to_path_buf(),
            source,
        },
        fstool::Error::Unsupported(m)
        | fstool::Error::InvalidArgument(m)
        | fstool::Error::InvalidImage(m) => DiskError::Invalid(format!(
            "{}: cannot write ext4 file system: {}",
            path.display(),
            m.strip_prefix("ext: ").unwrap_or(&m)
        )),
        other => DiskError::Invalid(format!(
            "{}: cannot write ext4 file system: {other}",
            path.display()
        )),
    }
}

fn file_meta(m: &Meta) -> FileMeta {
    FileMeta {
        mode: m.mode & 0o7777,
        uid: m.uid,
        gid: m.gid,
        mtime: m.mtime,
        atime: m.atime,
        ctime: m.ctime,
    }
}

impl FstoolBuilder {
    fn err(&self, e: fstool::Error) -> DiskError {
        fs_error(&self.path, e)
    }

    /// fstool's constructors stamp mtime on all three times; fix them.
    /// Every new object and `set_meta` pass here: the file system changed.
    fn times(&mut self, ino: u32, m: &Meta) -> Result<Ino, DiskError> {
        self.changed = true;
        self.ext
            .set_times(
                &mut self.dev,
                ino,
                Some(m.atime),
                Some(m.mtime),
                Some(m.ctime),
            )
            .map_err(|e| fs_error(&self.path, e))?;
        Ok(Ino(ino))
    }
}

impl FstoolBuilder {
    /// Writes the superblock and its backups, as fstool's flush ends: all
    /// a file system needs when nothing was added after the formatter's
    /// own flush (fstool's `flush` would recount every bitmap bit by bit
    /// and write all metadata again, through the journal).
    fn write_superblocks(&mut self) -> Result<(), fstool::Error> {
        let with_csum = self.ext.has_metadata_csum_pub();
        let encode = |sb: &Superblock| {
            let mut buf = sb.encode();
            if with_csum {
                buf[0x175] = 1; // s_checksum_type: crc32c
                let c = csum::superblock(&buf);
                buf[1020..1024].copy_from_slice(&c.to_le_bytes());
            }
            buf
        };
        let bs = u64::from(self.ext.layout.block_size);
        for (i, g) in self.ext.layout.groups.iter().enumerate().skip(1) {
            if g.has_superblock {
                let mut copy = self.ext.sb.clone();
                // s_block_group_nr is 16 bits wide; mke2fs truncates too.
                copy.block_group_nr = i as u16;
                self.dev
                    .write_at(u64::from(g.start_block) * bs, &encode(&copy))?;
            }
        }
        self.dev.write_at(1024, &encode(&self.ext.sb))
    }

    /// Without metadata_csum, clears what fstool's ext4 formatter set in
    /// every group descriptor while the file system still had checksums
    /// (`bg_flags`, `bg_itable_unused`, bitmap checksums, `bg_checksum`) and
    /// no longer maintains: e2fsck rejects them without a checksum feature.
    /// Patches the primary table and every backup.
    fn clear_group_desc_csum_fields(&mut self) -> Result<(), fstool::Error> {
        let layout = &self.ext.layout;
        let bs = u64::from(layout.block_size);
        let desc = layout.desc_size;
        let groups = layout.groups.len();
        let mut table = vec![0u8; layout.gdt_blocks as usize * bs as usize];
        for g in layout.groups.iter().filter(|g| g.has_superblock) {
            let at = (u64::from(g.start_block) + 1) * bs;
            self.dev.read_at(at, &mut table)?;
            for d in table.chunks_exact_mut(desc).take(groups) {
                d[0x12..0x14].fill(0); // bg_flags
                d[0x18..0x20].fill(0); // bitmap csums, itable_unused_lo, bg_checksum
                if desc >= 64 {
                    d[0x32..0x34].fill(0); // bg_itable_unused_hi
                    d[0x38..0x3c].fill(0); // bitmap csums hi
                }
            }
            self.dev.write_at(at, &table)?;
        }
        Ok(())
    }
}

impl Builder for FstoolBuilder {
    fn mkdir(&mut self, parent: Ino, name: &[u8], meta: &Meta) -> Result<Ino, DiskError> {
        let ino = self
            .ext
            .add_dir_to(&mut self.dev, parent.0, name, file_meta(meta))
            .map_err(|e| self.err(e))?;
        self.times(ino, meta)
    }

    fn file(
        &mut self,
        parent: Ino,
        name: &[u8],
        src: &Path,
        meta: &Meta,
    ) -> Result<Ino, DiskError> {
        let ino = self
            .ext
            .add_file_to(
                &mut self.dev,
                parent.0,
                name,
                FileSource::HostPath(src.to_path_buf()),
                file_meta(meta),
            )
            .map_err(|e| match e {
                // Reading the host file failed; a failed write names the
                // image, and an interruption is one.
                fstool::Error::Io(source)
                    if !self.dev.write_failed() && !crate::interrupt::cancelled() =>
                {
                    DiskError::Io {
                        op: "cannot copy into ext4 image",
                        path: src.to_path_buf(),
                        source,
                    }
                }
                other => self.err(other),
            })?;
        self.times(ino, meta)
    }

    fn symlink(
        &mut self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<Ino, DiskError> {
        let ino = self
            .ext
            .add_symlink_to(&mut self.dev, parent.0, name, target, file_meta(meta))
            .map_err(|e| self.err(e))?;
        self.times(ino, meta)
    }

    fn special(
        &mut self,
        parent: Ino,
        name: &[u8],
        kind: Special,
        meta: &Meta,
    ) -> Result<Ino, DiskError> {
        let (kind, major, minor) = match kind {
            Special::Char(ma, mi) => (DeviceKind::Char, ma, mi),
            Special::Block(ma, mi) => (DeviceKind::Block, ma, mi),
            Special::Fifo => (DeviceKind::Fifo, 0, 0),
            Special::Socket => (DeviceKind::Socket, 0, 0),
        };
        let ino = self
            .ext
            .add_device_to(
                &mut self.dev,
                parent.0,
                name,
                kind,
                major,
                minor,
                file_meta(meta),
            )
            .map_err(|e| self.err(e))?;
        self.times(ino, meta)
    }

    fn hard_link(&mut self, parent: Ino, name: &[u8], target: Ino) -> Result<(), DiskError> {
        self.changed = true;
        self.ext
            .add_link_to(&mut self.dev, parent.0, name, target.0)
            .map_err(|e| self.err(e))
    }

    fn set_meta(&mut self, ino: Ino, meta: &Meta) -> Result<(), DiskError> {
        self.ext
            .chmod(&mut self.dev, ino.0, meta.mode & 0o7777)
            .and_then(|()| self.ext.chown(&mut self.dev, ino.0, meta.uid, meta.gid))
            .map_err(|e| fs_error(&self.path, e))?;
        self.times(ino.0, meta).map(|_| ())
    }

    fn finish(mut self: Box<Self>) -> Result<(), DiskError> {
        let written = if self.changed {
            self.ext.flush(&mut self.dev).and_then(|()| {
                if self.ext.has_metadata_csum_pub() {
                    Ok(())
                } else {
                    self.clear_group_desc_csum_fields()
                }
            })
        } else {
            self.write_superblocks()
        };
        written.map_err(|e| fs_error(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::flex_log;

    #[test]
    fn flex_units_are_always_complete() {
        assert_eq!(flex_log(1), 0);
        assert_eq!(flex_log(8), 0);
        assert_eq!(flex_log(16), 4);
        assert_eq!(flex_log(64), 4);
        assert_eq!(flex_log(40), 3);
        assert_eq!(flex_log(38), 1);
        assert_eq!(flex_log(37), 0);
    }
}
