//! ext4 file systems for `EmptyImage`: creation and population from a host
//! directory (docs/IMAGES.md#ext4; `ext4_attributes`: docs/COMPATIBILITY.md#config-global).
//!
//! The image is written in-process (no `mkfs.ext4`), reproducibly: the UUID,
//! the directory hash seed and every time stamp the writer invents derive
//! from [`Ext4Spec::timestamp`], the label and the size, so creating the
//! same image twice gives the same bytes.
//!
//! # Layout
//! Like `mke2fs` 1.47 with its stock `mke2fs.conf`: 1 KiB blocks below
//! 512 MiB (4096 bytes per inode; 8192 below 3 MiB), 4 KiB blocks from
//! 512 MiB (16384 bytes per inode; 32768 from 4 TiB), 256-byte inodes, 5 %
//! reserved blocks, the journal sized by `ext2fs_default_journal_size`, a
//! last block group too small to be useful is left out. Sizes from 2 MiB to
//! just under 16 TiB (2^32 blocks of 4 KiB). The image file is sparse: only
//! metadata is written. An empty file system with `metadata_csum` is
//! written by `empty` with lazy block groups, the rest through the
//! `backend`'s `Builder` (docs/IMAGES.md#ext4).
//!
//! # Features
//! The default set (`ext4_attributes: []`) is `has_journal ext_attr
//! dir_index filetype extent flex_bg sparse_super large_file huge_file
//! dir_nlink extra_isize metadata_csum`: `mke2fs -t ext4` without
//! `resize_inode` (the writer reserves no GDT blocks) and without `64bit`
//! (asked for with `"64bit"`; never needed below 16 TiB). `flex_bg` is used
//! only from 16 block groups on (the writer mis-packs smaller file systems),
//! whether it comes from the defaults or is asked for. Entries of
//! `ext4_attributes` are applied in order, `name` on, `^name` off; unknown
//! names and features the writer cannot produce are errors naming the
//! feature.
//!
//! # Population
//! [`Ext4Spec::populate_from`] is walked in byte order of the names; each
//! object keeps its permission bits, numeric uid/gid and mtime (seconds);
//! atime is set to the mtime and ctime to the timestamp. Symbolic links,
//! hard links (one inode), empty directories, device nodes, FIFOs and
//! sockets are reproduced; extended attributes are not copied. The root
//! directory takes the mode, owner and mtime of the source directory.

mod backend;
mod device;
mod empty;
mod extract;
mod features;
mod geometry;
mod populate;

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::disk::DiskError;

pub use extract::extract;

/// What to create.
#[derive(Clone, Copy, Debug)]
pub struct Ext4Spec<'a> {
    /// Image size in bytes (the file is created/truncated to exactly this size, sparse).
    pub size: u64,
    /// File-system label (at most 16 bytes; longer is an error).
    pub label: &'a str,
    /// mkfs.ext4 -O style feature list from b9.conf `ext4_attributes`: e.g.
    /// `["64bit", "^metadata_csum", "^64bit"]`; `[]` = defaults.
    pub features: &'a [String],
    /// A host directory whose contents become the file system's root
    /// (modes, owners, times, symlinks, hard links, empty dirs), or None.
    pub populate_from: Option<&'a Path>,
    /// Time stamp (UNIX seconds) for superblock/inode times of created
    /// objects and seed for UUID and hash seed.
    pub timestamp: u64,
}

/// Creates a raw image file at `path` holding a fresh ext4 file system.
///
/// The file is created or truncated to exactly `spec.size` bytes. On error
/// the file may be left half-written; callers write to a temporary path.
pub fn create(path: &Path, spec: &Ext4Spec<'_>) -> Result<(), DiskError> {
    let params = params(spec)?;
    if spec.populate_from.is_none() && params.features.metadata_csum {
        return empty::create(path, &params);
    }
    let mut builder = backend::format(path, &params)?;
    if let Some(dir) = spec.populate_from {
        populate::populate(builder.as_mut(), dir, params.time)?;
    }
    builder.finish()
}

/// What a fresh file system of a given size (default features) can hold.
#[cfg(any(test, feature = "internals"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks in the file system.
    pub blocks_count: u64,
    /// Blocks left for file data, directories and xattr blocks (metadata,
    /// journal and its extent tree, root directory and lost+found taken off).
    pub free_blocks: u64,
    /// Inodes left for new objects.
    pub free_inodes: u64,
}

/// The [`Capacity`] of a file system [`create`] would make in `size` bytes
/// with the default features (for sizing a minimal copy of a tree).
#[cfg(any(test, feature = "internals"))]
pub fn capacity(size: u64) -> Result<Capacity, DiskError> {
    let f = features::parse(&[])?;
    let g = geometry::plan(size, f.bit64, f.sparse_super)?;
    // The empty formatter's own plan: what it writes is what is promised.
    let plan = empty::plan::Plan::new(&g, &f)?;
    Ok(Capacity {
        block_size: g.block_size,
        blocks_count: u64::from(g.blocks_count),
        free_blocks: plan.total_free_blocks(),
        free_inodes: plan.total_free_inodes(),
    })
}

/// Checks the spec and derives every parameter of the file system.
fn params(spec: &Ext4Spec<'_>) -> Result<backend::Params, DiskError> {
    let label = spec.label.as_bytes();
    if label.len() > 16 {
        return Err(DiskError::Invalid(format!(
            "ext4 label {:?} is {} bytes long; at most 16 bytes are allowed",
            spec.label,
            label.len()
        )));
    }
    let time = u32::try_from(spec.timestamp).map_err(|_| {
        DiskError::Invalid(format!(
            "timestamp {} is beyond what the ext4 writer stores (2106-02-07)",
            spec.timestamp
        ))
    })?;
    let features = features::parse(spec.features)?;
    let geometry = geometry::plan(spec.size, features.bit64, features.sparse_super)?;
    let mut padded = [0u8; 16];
    padded[..label.len()].copy_from_slice(label);
    Ok(backend::Params {
        size: spec.size,
        geometry,
        features,
        uuid: derived_uuid(b"uuid", spec),
        hash_seed: derived_uuid(b"hash seed", spec),
        label: padded,
        time,
    })
}

/// A version-4-shaped UUID from SHA-256 of `what`, timestamp, size and label.
fn derived_uuid(what: &[u8], spec: &Ext4Spec<'_>) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"b9 ext4 ");
    h.update(what);
    h.update([0]);
    h.update(spec.timestamp.to_le_bytes());
    h.update(spec.size.to_le_bytes());
    h.update(spec.label.as_bytes());
    let digest = h.finalize();
    let mut u = [0u8; 16];
    u.copy_from_slice(&digest[..16]);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(label: &'a str, features: &'a [String]) -> Ext4Spec<'a> {
        Ext4Spec {
            size: 64 << 20,
            label,
            features,
            populate_from: None,
            timestamp: 1_700_000_000,
        }
    }

    #[test]
    fn label_at_most_16_bytes() {
        assert!(params(&spec("0123456789abcdef", &[])).is_ok());
        let e = params(&spec("0123456789abcdefg", &[])).err();
        assert!(e.is_some_and(|e| e.to_string().contains("at most 16 bytes")));
    }

    #[test]
    fn ids_depend_on_inputs_only() {
        let a = params(&spec("root", &[]))
            .ok()
            .map(|p| (p.uuid, p.hash_seed));
        let b = params(&spec("root", &[]))
            .ok()
            .map(|p| (p.uuid, p.hash_seed));
        let c = params(&spec("other", &[]))
            .ok()
            .map(|p| (p.uuid, p.hash_seed));
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.is_some_and(|(u, s)| u != s && u[6] >> 4 == 4));
    }

    #[test]
    fn timestamp_must_fit() {
        let mut s = spec("x", &[]);
        s.timestamp = u64::from(u32::MAX) + 1;
        assert!(params(&s).is_err());
    }
}
