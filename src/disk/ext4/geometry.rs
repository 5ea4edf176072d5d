//! Sizes of a new ext4 file system, chosen the way `mke2fs` 1.47 chooses
//! them (`/etc/mke2fs.conf` defaults and `ext2fs_initialize`).

use crate::disk::DiskError;

/// Bytes per inode: 256, as mke2fs uses for ext4 (128 would end the time
/// stamps in 2038).
pub(crate) const INODE_SIZE: u32 = 256;

/// The smallest image b9 formats: 2 MiB. Below 2048 blocks mke2fs makes no
/// journal, and the writer always makes one.
pub(crate) const MIN_SIZE: u64 = 2 << 20;

/// Every size the writer needs, decided before any byte is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// 1024 or 4096.
    pub block_size: u32,
    /// Blocks in the file system (the image may be a little longer).
    pub blocks_count: u32,
    /// Inodes in the file system (the writer rounds it to whole groups).
    pub inodes_count: u32,
    /// Journal length in blocks.
    pub journal_blocks: u32,
    /// Number of block groups.
    pub groups: u32,
}

/// The mke2fs usage type: block size and bytes per inode by image size.
fn usage_type(size: u64) -> (u32, u64) {
    const MIB: u64 = 1 << 20;
    const TIB: u64 = 1 << 40;
    match size {
        s if s < 3 * MIB => (1024, 8192),   // floppy
        s if s < 512 * MIB => (1024, 4096), // small
        s if s < 4 * TIB => (4096, 16384),  // default
        s if s < 16 * TIB => (4096, 32768), // big
        _ => (4096, 65536),                 // huge
    }
}

/// `ext2fs_default_journal_size`: journal blocks for a file system of `blocks`.
pub(crate) fn journal_blocks(blocks: u64) -> Option<u32> {
    Some(match blocks {
        b if b < 2048 => return None,
        b if b < 32768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16384,
        b if b < 8192 * 1024 => 32768,
        b if b < 16384 * 1024 => 65536,
        b if b < 32768 * 1024 => 131072,
        _ => 262144,
    })
}

/// Whether group `g` holds a superblock backup under `sparse_super`.
fn has_super(g: u32, sparse_super: bool) -> bool {
    if !sparse_super || g <= 1 {
        return true;
    }
    [3u32, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            match p.checked_mul(base) {
                Some(n) => p = n,
                None => return false,
            }
        }
        p == g
    })
}

/// Plans a file system filling an image of `size` bytes.
pub(crate) fn plan(size: u64, bit64: bool, sparse_super: bool) -> Result<Geometry, DiskError> {
    if size < MIN_SIZE {
        return Err(DiskError::Invalid(format!(
            "ext4 image size {size} bytes is too small: the minimum is {MIN_SIZE} bytes (2 MiB)"
        )));
    }
    let (block_size, inode_ratio) = usage_type(size);
    let bs = u64::from(block_size);
    let mut blocks = size / bs;
    if blocks > u64::from(u32::MAX) {
        return Err(DiskError::Invalid(format!(
            "ext4 image size {size} bytes is too large: the ext4 writer handles at most {} bytes (2^32 - 1 blocks of 4 KiB, just under 16 TiB)",
            u64::from(u32::MAX) * bs
        )));
    }
    let first_data_block = u64::from(block_size == 1024);
    let per_group = 8 * bs;
    let inodes_per_block = bs / u64::from(INODE_SIZE);
    let desc_size: u64 = if bit64 { 64 } else { 32 };
    loop {
        let groups = (blocks - first_data_block).div_ceil(per_group);
        // A single group must be a whole number of bitmap bytes.
        if groups == 1 {
            blocks -= blocks % 8;
        }
        let inodes_wanted = (blocks * bs / inode_ratio).max(16);
        // Whole inode-table blocks per group, a multiple of 8 inodes.
        let mut ipg = inodes_wanted.div_ceil(groups);
        ipg = ipg.div_ceil(inodes_per_block) * inodes_per_block;
        ipg = ipg.div_ceil(8) * 8;
        ipg = ipg.min(per_group);
        let itable_blocks = (ipg * u64::from(INODE_SIZE)).div_ceil(bs);
        let desc_blocks = (groups * desc_size).div_ceil(bs);
        let rem = (blocks - first_data_block) % per_group;
        let last = u32::try_from(groups - 1).unwrap_or(u32::MAX);
        let mut overhead = 3 + itable_blocks;
        if has_super(last, sparse_super) {
            overhead += 1 + desc_blocks;
        }
        // Like mke2fs: drop a last group too small to be useful. Also a
        // partial last group whose nominal end lies past block 2^32 - 1
        // (just under 16 TiB): group ends are 32-bit block numbers.
        let past_32_bits = first_data_block + groups * per_group > u64::from(u32::MAX);
        if groups > 1 && rem != 0 && (rem < overhead + 50 || past_32_bits) {
            blocks -= rem;
            continue;
        }
        let journal = journal_blocks(blocks).ok_or_else(|| {
            DiskError::Invalid(format!(
                "ext4 image size {size} bytes is too small for a journal"
            ))
        })?;
        let metadata = groups * (2 + itable_blocks) + 1 + desc_blocks;
        if blocks < metadata + u64::from(journal) + 64 {
            return Err(DiskError::Invalid(format!(
                "ext4 image size {size} bytes is too small for the file system's metadata and journal"
            )));
        }
        return Ok(Geometry {
            block_size,
            blocks_count: u32::try_from(blocks).unwrap_or(u32::MAX),
            inodes_count: u32::try_from(ipg * groups).unwrap_or(u32::MAX),
            journal_blocks: journal,
            groups: u32::try_from(groups).unwrap_or(u32::MAX),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn small_images_get_1k_blocks_like_mke2fs() {
        // mke2fs 1.47: 64 MiB -> 65536 blocks of 1 KiB, 16384 inodes, journal 4096.
        let g = plan(64 * MIB, false, true).ok();
        assert_eq!(
            g,
            Some(Geometry {
                block_size: 1024,
                blocks_count: 65536,
                inodes_count: 16384,
                journal_blocks: 4096,
                groups: 8,
            })
        );
        // 10 MiB -> 10240 blocks, 2560 inodes.
        let g = plan(10 * MIB, false, true).ok();
        assert_eq!(
            g.map(|g| (g.block_size, g.blocks_count, g.inodes_count)),
            Some((1024, 10240, 2560))
        );
    }

    #[test]
    fn large_images_get_4k_blocks() {
        let g = plan(8 * GIB, false, true).ok();
        assert_eq!(
            g,
            Some(Geometry {
                block_size: 4096,
                blocks_count: 2 * 1024 * 1024,
                inodes_count: 524288,
                journal_blocks: 16384,
                groups: 64,
            })
        );
    }

    #[test]
    fn sizes_out_of_range() {
        assert!(plan(MIN_SIZE - 1, false, true).is_err());
        assert!(plan(MIN_SIZE, false, true).is_ok());
        assert!(plan(16 << 40, false, true).is_err());
        assert!(plan((16 << 40) - (1 << 30), true, true).is_ok());
    }

    #[test]
    fn tiny_last_group_is_dropped() {
        // 512 MiB + 40 blocks: the 40-block tail cannot hold a group.
        let g = plan(512 * MIB + 40 * 4096, false, true).ok();
        assert_eq!(g.map(|g| (g.blocks_count, g.groups)), Some((131072, 4)));
    }

    #[test]
    fn last_group_ends_within_32_bits() {
        // 2^32 - 256 blocks: the partial last group would end past 2^32 - 1.
        let g = plan((16 << 40) - MIB, false, true).ok();
        assert_eq!(
            g.map(|g| (g.blocks_count, g.groups)),
            Some((u32::MAX - 32767, 131071))
        );
    }

    #[test]
    fn backup_groups() {
        let with: Vec<u32> = (0..50).filter(|&g| has_super(g, true)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49]);
        assert!(has_super(4, false));
    }

    #[test]
    fn journal_sizes() {
        assert_eq!(journal_blocks(2047), None);
        assert_eq!(journal_blocks(10240), Some(1024));
        assert_eq!(journal_blocks(2 << 20), Some(16384));
        assert_eq!(journal_blocks(1 << 32), Some(262144));
    }
}
