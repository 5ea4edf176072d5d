//! Where everything of an empty file system goes, and what each block
//! group holds, computed from the geometry alone (docs/IMAGES.md#ext4).
//!
//! Every group's metadata (its superblock copy and descriptor table, and
//! with `flex_bg` the packed bitmaps and inode tables of its flex unit)
//! sits at the start of the group, `[start_block, data_start)` in fstool's
//! [`Layout`]. The root directory, lost+found and the journal are then
//! allocated one after the other from the first data block on, so what is
//! used in any group is a prefix of it: the groups before the allocation
//! cursor are full, the cursor's group is used up to the cursor, and every
//! later group holds only its metadata. Free counts follow by arithmetic;
//! no bitmap is ever scanned.

use fstool::fs::ext::extent::{ExtentRun, MAX_LEN_PER_EXTENT};
use fstool::fs::ext::layout::{self, Layout, SparseSuperMode};

use crate::disk::ext4::features::Features;
use crate::disk::ext4::geometry::{Geometry, INODE_SIZE};
use crate::disk::DiskError;

/// The first inode for files: inodes 1 to 10 are reserved, 11 is lost+found.
pub(crate) const LOST_FOUND_INO: u32 = 11;

/// Blocks of lost+found: 16 KiB, as the populating writer makes it.
pub(crate) fn lost_found_blocks(block_size: u32) -> u32 {
    16384u32.div_ceil(block_size)
}

/// The plan of an empty file system.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Group placement, from fstool's planner (the populating writer's too).
    pub layout: Layout,
    /// `s_backup_bgs` under `sparse_super2`, else zeros.
    pub backup_bgs: [u32; 2],
    /// The root directory's block.
    pub root_block: u32,
    /// lost+found's first block (its blocks are contiguous).
    pub lost_found_start: u32,
    /// The journal's extents, logical block 0 first.
    pub journal: Vec<ExtentRun>,
    /// Blocks for the journal's extent tree (empty when its extents fit
    /// in the inode), allocated after the journal.
    pub journal_tree: Vec<u32>,
    /// Groups up to here (exclusive) are full; `cursor_group` is used up
    /// to `cursor_block` (exclusive); later groups hold only metadata.
    cursor_group: u32,
    cursor_block: u32,
    /// Groups holding bitmaps or inode tables of other groups (flex_bg).
    hosts_foreign: Vec<bool>,
}

impl Plan {
    /// Plans the empty file system of `g` with features `f`.
    pub(crate) fn new(g: &Geometry, f: &Features) -> Result<Plan, DiskError> {
        let invalid = |e: fstool::Error| {
            DiskError::Invalid(format!("cannot lay out the ext4 file system: {e}"))
        };
        let flex = if f.flex_bg {
            crate::disk::ext4::backend::flex_log(g.groups)
        } else {
            0
        };
        // sparse_super2 keeps backups in group 1 and the last group, as
        // mke2fs does (group 0 alone when there is one group).
        let backup_bgs = match (f.sparse_super2, g.groups) {
            (false, _) => [0, 0],
            (true, 0..=1) => [0, 0],
            (true, n) => [1, n - 1],
        };
        let mode = if f.sparse_super2 {
            SparseSuperMode::Two(backup_bgs)
        } else if f.sparse_super {
            SparseSuperMode::Classic
        } else {
            SparseSuperMode::All
        };
        let layout = layout::plan_layout_sized(
            g.block_size,
            g.blocks_count,
            g.inodes_count,
            mode,
            flex,
            f.bit64,
            INODE_SIZE as u16,
        )
        .map_err(invalid)?;

        let mut alloc = Cursor {
            layout: &layout,
            group: 0,
            next: 0,
        };
        let root_block = alloc.take(1)?[0].0;
        let lost_found = alloc.take(lost_found_blocks(g.block_size))?;
        let lost_found_start = lost_found[0].0;
        // lost+found is far smaller than any group's data area, but its
        // inode holds one extent: keep it contiguous.
        if lost_found.len() != 1 {
            return Err(DiskError::Invalid(
                "ext4 image too small: lost+found does not fit in one piece".into(),
            ));
        }
        let journal = extents(&alloc.take(g.journal_blocks)?);
        let tree_blocks = tree_blocks_needed(journal.len(), g.block_size);
        let journal_tree = alloc
            .take(tree_blocks)?
            .iter()
            .flat_map(|&(start, len)| start..start + len)
            .collect();

        let mut hosts_foreign = vec![false; layout.groups.len()];
        let group_of =
            |block: u32| ((block - layout.first_data_block) / layout.blocks_per_group) as usize;
        for (i, gl) in layout.groups.iter().enumerate() {
            for block in [gl.block_bitmap, gl.inode_bitmap, gl.inode_table] {
                let host = group_of(block);
                if host != i {
                    hosts_foreign[host] = true;
                }
            }
        }
        let (cursor_group, cursor_block) = (alloc.group, alloc.next);
        Ok(Plan {
            layout,
            backup_bgs,
            root_block,
            lost_found_start,
            journal,
            journal_tree,
            cursor_group,
            cursor_block,
            hosts_foreign,
        })
    }

    /// Number of block groups.
    pub(crate) fn groups(&self) -> u32 {
        self.layout.num_groups()
    }

    /// Blocks in group `g` (the last one may be short).
    pub(crate) fn group_blocks(&self, g: u32) -> u32 {
        let gl = &self.layout.groups[g as usize];
        gl.end_block - gl.start_block + 1
    }

    /// Used blocks of group `g`, all at its start (see the module doc).
    pub(crate) fn used_blocks(&self, g: u32) -> u32 {
        let gl = &self.layout.groups[g as usize];
        if g < self.cursor_group {
            self.group_blocks(g)
        } else if g == self.cursor_group {
            self.cursor_block.max(gl.data_start) - gl.start_block
        } else {
            gl.data_start - gl.start_block
        }
    }

    /// Free blocks of group `g`.
    pub(crate) fn free_blocks(&self, g: u32) -> u32 {
        self.group_blocks(g) - self.used_blocks(g)
    }

    /// Whether group `g`'s block bitmap may stay unwritten
    /// (`BLOCK_UNINIT`): the kernel and e2fsck then derive it from the
    /// group's own superblock copy, descriptors, bitmaps and inode table,
    /// which must be all it holds. Never the last group, whose bitmap
    /// needs its padding bits set (as mke2fs does).
    pub(crate) fn block_uninit(&self, g: u32) -> bool {
        g > self.cursor_group && g + 1 < self.groups() && !self.hosts_foreign[g as usize]
    }

    /// Free blocks of the whole file system.
    pub(crate) fn total_free_blocks(&self) -> u64 {
        (0..self.groups())
            .map(|g| u64::from(self.free_blocks(g)))
            .sum()
    }

    /// Free inodes of the whole file system (all but 1 to 11).
    pub(crate) fn total_free_inodes(&self) -> u64 {
        u64::from(self.layout.inodes_count) - u64::from(LOST_FOUND_INO)
    }
}

/// Sequential allocation over the groups' data areas.
struct Cursor<'a> {
    layout: &'a Layout,
    /// Current group.
    group: u32,
    /// Next block to hand out (absolute; raised to the group's data start).
    next: u32,
}

impl Cursor<'_> {
    /// The next `n` data blocks, as runs `(start, len)` of consecutive
    /// blocks (merged across groups where they touch).
    fn take(&mut self, mut n: u32) -> Result<Vec<(u32, u32)>, DiskError> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        while n > 0 {
            let Some(g) = self.layout.groups.get(self.group as usize) else {
                return Err(DiskError::Invalid(
                    "ext4 image too small for its journal and directories".into(),
                ));
            };
            self.next = self.next.max(g.data_start);
            if self.next > g.end_block {
                self.group += 1;
                continue;
            }
            let k = n.min(g.end_block - self.next + 1);
            match runs.last_mut() {
                Some((start, len)) if *start + *len == self.next => *len += k,
                _ => runs.push((self.next, k)),
            }
            self.next += k;
            n -= k;
        }
        Ok(runs)
    }
}

/// Extents for `runs` in order, none longer than an initialised extent may be.
fn extents(runs: &[(u32, u32)]) -> Vec<ExtentRun> {
    let max = u32::from(MAX_LEN_PER_EXTENT);
    let mut out = Vec::new();
    let mut logical = 0;
    for &(start, len) in runs {
        let mut done = 0;
        while done < len {
            let k = (len - done).min(max);
            out.push(ExtentRun {
                logical,
                len: k as u16,
                physical: u64::from(start + done),
            });
            logical += k;
            done += k;
        }
    }
    out
}

/// Tree blocks an extent tree of `extents` needs with checksum tails: none
/// up to 4 (they fit in the inode), else one leaf per block-full and the
/// index levels above them until 4 entries remain (fstool's
/// `pack_extent_tree` builds exactly this shape).
fn tree_blocks_needed(extents: usize, block_size: u32) -> u32 {
    let per = (block_size as usize - 12 - 4) / 12;
    let mut level = extents;
    let mut blocks = 0;
    while level > 4 {
        level = level.div_ceil(per);
        blocks += level;
    }
    blocks as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::ext4::{features, geometry};

    fn plan(size: u64, list: &[&str]) -> Plan {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        let f = features::parse(&list).ok().unwrap_or_default();
        let g = geometry::plan(size, f.bit64, f.sparse_super).ok();
        let p = g.and_then(|g| Plan::new(&g, &f).ok());
        p.unwrap_or_else(|| panic!("no plan for {size}"))
    }

    #[test]
    fn free_blocks_of_64_mib_match_mke2fs() {
        // `mke2fs -t ext4 -O ^resize_inode` on 64 MiB leaves 57304 blocks
        // free with a 12 KiB lost+found; this writer's is 16 KiB.
        let p = plan(64 << 20, &[]);
        assert_eq!(p.total_free_blocks(), 57304 - 4);
        assert_eq!(p.total_free_inodes(), 16384 - 11);
        assert!(p.journal_tree.is_empty());
    }

    #[test]
    fn one_tib_journal_needs_a_tree_and_few_bitmaps() {
        let p = plan(1 << 40, &[]);
        assert_eq!(p.groups(), 8192);
        let blocks: u32 = p.journal.iter().map(|e| u32::from(e.len)).sum();
        assert_eq!(blocks, 262144);
        assert!(p.journal.len() > 4);
        assert_eq!(p.journal_tree.len(), 1);
        // Flex units of 16: one initialised bitmap per unit, plus the
        // groups the journal runs through, plus the last group.
        let init = (0..p.groups()).filter(|&g| !p.block_uninit(g)).count();
        assert!((512..540).contains(&init), "{init}");
    }

    #[test]
    fn journal_extents_split_at_32768_blocks() {
        let e = extents(&[(100, 70000)]);
        let lens: Vec<u16> = e.iter().map(|e| e.len).collect();
        assert_eq!(lens, vec![32768, 32768, 4464]);
        assert_eq!(e[2].logical, 65536);
        assert_eq!(e[2].physical, 100 + 65536);
        assert_eq!(tree_blocks_needed(4, 4096), 0);
        assert_eq!(tree_blocks_needed(5, 4096), 1);
        assert_eq!(tree_blocks_needed(340, 4096), 1);
        assert_eq!(tree_blocks_needed(341, 4096), 2);
    }
}
