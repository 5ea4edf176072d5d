//! The formatter for empty file systems with `metadata_csum`: writes only
//! what such a file system needs, the way mke2fs does with lazy groups
//! (docs/IMAGES.md#ext4), so its cost grows with the metadata to write,
//! not with the size.
//!
//! Written: the superblock and its backups, the descriptor table and its
//! backups, the block bitmaps of the groups that hold used blocks beyond
//! their own metadata (flex_bg's packed bitmaps and inode tables, the root
//! directory, lost+found, the journal) and of the last group, group 0's
//! inode bitmap, the inode-table block with inodes 1 to 11, the objects'
//! blocks. Every other group is `BLOCK_UNINIT` and every group but 0
//! `INODE_UNINIT`: the kernel and e2fsck derive those bitmaps. Free counts
//! come from [`plan::Plan`], by arithmetic.
//!
//! Without `metadata_csum` there are no uninitialised groups (their flags
//! need descriptor checksums); such file systems stay with the populating
//! writer (`backend.rs`), which writes every bitmap.

mod objects;
pub(crate) mod plan;

use std::path::Path;

use fstool::block::BlockDevice;
use fstool::fs::ext::constants::{feature, GROUP_DESC_SIZE, INO_JOURNAL};
use fstool::fs::ext::group::{GroupDesc, BG_BLOCK_UNINIT, BG_INODE_UNINIT, BG_INODE_ZEROED};
use fstool::fs::ext::htree::DX_HASH_HALF_MD4;
use fstool::fs::ext::superblock::{Superblock, FLAGS_UNSIGNED_HASH};
use fstool::fs::ext::{csum, inode::EXTRA_ISIZE_DEFAULT};

use super::backend::{fs_error, Params};
use super::device::ImageFile;
use super::geometry::INODE_SIZE;
use crate::disk::DiskError;
use plan::{Plan, LOST_FOUND_INO};

/// Creates the image file at `path` holding the empty file system of
/// `params` (which must have `metadata_csum`).
pub(crate) fn create(path: &Path, params: &Params) -> Result<(), DiskError> {
    let plan = Plan::new(&params.geometry, &params.features)?;
    let mut dev = ImageFile::create(path, params.size).map_err(|source| DiskError::Io {
        op: "cannot create ext4 image",
        path: path.to_path_buf(),
        source,
    })?;
    let sb = superblock(&plan, params);
    let seed = csum::fs_seed(&sb.uuid, None);
    let objects = objects::build(&plan, seed, params.time, &params.uuid)?;
    let mut sb = sb;
    for (i, word) in objects.journal_backup.iter().enumerate() {
        sb.raw[0x10C + 4 * i..0x110 + 4 * i].copy_from_slice(&word.to_le_bytes());
    }
    write(&mut dev, &plan, &sb, seed, &objects).map_err(|e| fs_error(path, e))
}

/// Writes every block of the file system, the primary superblock last.
fn write(
    dev: &mut ImageFile,
    plan: &Plan,
    sb: &Superblock,
    seed: u32,
    objects: &objects::Objects,
) -> fstool::Result<()> {
    let l = &plan.layout;
    let bs = u64::from(l.block_size);
    let at = |block: u32| u64::from(block) * bs;
    for (block, bytes) in &objects.blocks {
        dev.write_at(at(*block), bytes)?;
    }

    // Group 0's inode table up to inode 11, the rest of its slots zero.
    let isz = INODE_SIZE as usize;
    let mut table = vec![0u8; (LOST_FOUND_INO as usize * isz).next_multiple_of(bs as usize)];
    for (ino, slot) in &objects.inodes {
        let off = (*ino as usize - 1) * isz;
        table[off..off + isz].copy_from_slice(slot);
    }
    dev.write_at(at(l.groups[0].inode_table), &table)?;

    // Bitmaps, and the descriptors that carry their checksums.
    let desc_size = l.desc_size;
    let mut gdt = vec![0u8; l.gdt_blocks as usize * bs as usize];
    let block_bitmap_bytes = (l.blocks_per_group / 8) as usize;
    let mut last_bitmap: Option<((u32, u32), Vec<u8>, u32)> = None;
    for g in 0..plan.groups() {
        let gl = &l.groups[g as usize];
        let first = g == 0;
        // The image file was just created (truncated) and is sparse, so
        // every inode table reads as zeros and the kernel has nothing to
        // zero lazily. A block device must read as zeros too, as for the
        // populating writer (the agent zeroes its scratch disk).
        let mut flags = BG_INODE_ZEROED;
        if !first {
            flags |= BG_INODE_UNINIT;
        }
        let mut block_csum = 0;
        if plan.block_uninit(g) {
            flags |= BG_BLOCK_UNINIT;
        } else {
            // Used blocks are a prefix of the group; bits past its end are
            // set (padding). Most such bitmaps are alike: reuse the last.
            let key = (plan.used_blocks(g), plan.group_blocks(g));
            if last_bitmap.as_ref().is_none_or(|(k, _, _)| *k != key) {
                let bm = prefix_bitmap(key.0, key.1, l.block_size);
                let c = csum::bitmap(seed, &bm[..block_bitmap_bytes]);
                last_bitmap = Some((key, bm, c));
            }
            if let Some((_, bm, c)) = &last_bitmap {
                dev.write_at(at(gl.block_bitmap), bm)?;
                block_csum = *c;
            }
        }
        let mut inode_csum = 0;
        let used_inodes = if first { LOST_FOUND_INO } else { 0 };
        if first {
            let bm = prefix_bitmap(used_inodes, l.inodes_per_group, l.block_size);
            inode_csum = csum::bitmap(seed, &bm[..(l.inodes_per_group / 8) as usize]);
            dev.write_at(at(gl.inode_bitmap), &bm)?;
        }
        let unused = l.inodes_per_group - used_inodes;
        let desc = GroupDesc {
            block_bitmap: gl.block_bitmap,
            inode_bitmap: gl.inode_bitmap,
            inode_table: gl.inode_table,
            free_blocks_count: plan.free_blocks(g) as u16,
            free_inodes_count: unused as u16,
            used_dirs_count: if first { 2 } else { 0 },
            flags,
            itable_unused: unused as u16,
        };
        let d = &mut gdt[g as usize * desc_size..][..desc_size];
        d[..GROUP_DESC_SIZE].copy_from_slice(&desc.encode());
        d[0x18..0x1A].copy_from_slice(&(block_csum as u16).to_le_bytes());
        d[0x1A..0x1C].copy_from_slice(&(inode_csum as u16).to_le_bytes());
        if desc_size >= 64 {
            d[0x38..0x3A].copy_from_slice(&((block_csum >> 16) as u16).to_le_bytes());
            d[0x3A..0x3C].copy_from_slice(&((inode_csum >> 16) as u16).to_le_bytes());
        }
        let c = csum::group_desc(seed, g, d);
        d[0x1E..0x20].copy_from_slice(&c.to_le_bytes());
    }

    // Descriptor tables, backup superblocks, then the primary superblock.
    for (g, gl) in l.groups.iter().enumerate() {
        if gl.has_superblock {
            dev.write_at(at(gl.start_block + 1), &gdt)?;
        }
        if gl.has_superblock && g > 0 {
            let mut copy = sb.clone();
            // s_block_group_nr is 16 bits wide; mke2fs truncates too.
            copy.block_group_nr = g as u16;
            dev.write_at(at(gl.start_block), &encode(&copy))?;
        }
    }
    dev.write_at(1024, &encode(sb))
}

/// A bitmap block with bits `[0, used)` and `[len, 8 * block_size)` set.
fn prefix_bitmap(used: u32, len: u32, block_size: u32) -> Vec<u8> {
    let mut bm = vec![0u8; block_size as usize];
    set_bits(&mut bm, 0, used);
    set_bits(&mut bm, len, 8 * block_size);
    bm
}

/// Sets bits `[from, to)` of `bm`, whole bytes at a time where it can.
fn set_bits(bm: &mut [u8], from: u32, to: u32) {
    let mut bit = from;
    while bit < to {
        if bit.is_multiple_of(8) && bit + 8 <= to {
            bm[(bit / 8) as usize] = 0xff;
            bit += 8;
        } else {
            bm[(bit / 8) as usize] |= 1 << (bit % 8);
            bit += 1;
        }
    }
}

/// The superblock with its checksum.
fn encode(sb: &Superblock) -> [u8; 1024] {
    let mut buf = sb.encode();
    buf[0x175] = 1; // s_checksum_type: crc32c
    let c = csum::superblock(&buf);
    buf[1020..1024].copy_from_slice(&c.to_le_bytes());
    buf
}

/// The primary superblock of `plan` (`s_jnl_blocks` left to the caller).
fn superblock(plan: &Plan, p: &Params) -> Superblock {
    let l = &plan.layout;
    let f = &p.features;
    let mut sb = Superblock::ext2_default();
    sb.inodes_count = l.inodes_count;
    sb.blocks_count = l.blocks_count;
    sb.r_blocks_count = (u64::from(l.blocks_count) * 5 / 100) as u32;
    sb.free_blocks_count = plan.total_free_blocks() as u32;
    sb.free_inodes_count = plan.total_free_inodes() as u32;
    sb.first_data_block = l.first_data_block;
    sb.log_block_size = l.block_size.trailing_zeros() - 10;
    sb.log_frag_size = sb.log_block_size;
    sb.blocks_per_group = l.blocks_per_group;
    sb.frags_per_group = l.blocks_per_group;
    sb.inodes_per_group = l.inodes_per_group;
    // As the populating writer: mount and write times are the creation time.
    sb.mtime = p.time;
    sb.wtime = p.time;
    sb.lastcheck = p.time;
    sb.max_mnt_count = u16::MAX; // -1: no mount-count checks
    sb.errors = 1; // continue
    sb.uuid = p.uuid;
    sb.volume_name = p.label;
    sb.hash_seed = p.hash_seed;
    sb.def_hash_version = DX_HASH_HALF_MD4;
    sb.flags = FLAGS_UNSIGNED_HASH;
    sb.inode_size = INODE_SIZE as u16;
    sb.min_extra_isize = EXTRA_ISIZE_DEFAULT;
    sb.want_extra_isize = EXTRA_ISIZE_DEFAULT;
    sb.journal_inum = INO_JOURNAL;
    sb.log_groups_per_flex = l.log_groups_per_flex;
    let on = |yes: bool, bit: u32| if yes { bit } else { 0 };
    sb.feature_compat = feature::COMPAT_DIR_INDEX
        | feature::COMPAT_HAS_JOURNAL
        | on(f.ext_attr, feature::COMPAT_EXT_ATTR)
        | on(f.sparse_super2, feature::COMPAT_SPARSE_SUPER2);
    sb.feature_incompat = feature::INCOMPAT_EXTENTS
        | feature::INCOMPAT_FILETYPE
        | on(l.log_groups_per_flex > 0, feature::INCOMPAT_FLEX_BG)
        | on(f.bit64, feature::INCOMPAT_64BIT)
        | on(f.inline_data, feature::INCOMPAT_INLINE_DATA)
        | on(f.metadata_csum_seed, feature::INCOMPAT_CSUM_SEED);
    sb.feature_ro_compat = feature::RO_COMPAT_METADATA_CSUM
        | feature::RO_COMPAT_EXTRA_ISIZE
        | on(f.sparse_super, feature::RO_COMPAT_SPARSE_SUPER)
        | on(f.large_file, feature::RO_COMPAT_LARGE_FILE)
        | on(f.huge_file, feature::RO_COMPAT_HUGE_FILE)
        | on(f.dir_nlink, feature::RO_COMPAT_DIR_NLINK);
    if f.bit64 {
        sb.desc_size = l.desc_size as u16;
    }
    if f.sparse_super2 {
        sb.backup_bgs = plan.backup_bgs;
    }
    if f.metadata_csum_seed {
        // The seed mke2fs stores: the one the UUID gives.
        sb.checksum_seed = csum::fs_seed(&p.uuid, None);
    }
    // s_jnl_backup_type: the journal inode's blocks are in s_jnl_blocks.
    sb.raw[0xFD] = 1;
    // s_default_mount_opts: user_xattr, acl (mke2fs.conf default_mntopts).
    sb.raw[0x100..0x104].copy_from_slice(&0x000c_u32.to_le_bytes());
    // s_mkfs_time.
    sb.raw[0x108..0x10C].copy_from_slice(&p.time.to_le_bytes());
    sb
}

#[cfg(test)]
mod tests {
    use super::prefix_bitmap;

    #[test]
    fn prefix_bitmap_sets_used_and_padding_bits() {
        let bm = prefix_bitmap(11, 8000, 1024);
        assert_eq!(&bm[..3], &[0xff, 0x07, 0]);
        assert_eq!(bm[999], 0);
        assert_eq!(bm[1000], 0xff);
        assert_eq!(bm[1023], 0xff);
        let bm = prefix_bitmap(3, 13, 1024);
        assert_eq!(&bm[..3], &[0x07, 0xe0, 0xff]);
    }
}
