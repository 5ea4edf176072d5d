//! The blocks and inodes of an empty file system's objects: the root
//! directory, lost+found and the journal, with their metadata_csum
//! checksums (docs/IMAGES.md#ext4).

use fstool::fs::ext::constants::{DENT_DIR, EXT4_EXTENTS_FL, INO_JOURNAL, INO_ROOT_DIR};
use fstool::fs::ext::extent::{self, ExtentRun};
use fstool::fs::ext::inode::{Inode, CHECKSUM_HI_OFF, CHECKSUM_LO_OFF, INODE_BASE_SIZE};
use fstool::fs::ext::{csum, dir};

use super::plan::{lost_found_blocks, Plan, LOST_FOUND_INO};
use crate::disk::ext4::geometry::INODE_SIZE;
use crate::disk::DiskError;

/// `i_extra_isize` of every inode written: 32, as mke2fs.
const EXTRA_ISIZE: u16 = 32;

/// A block to write: its number and its bytes.
pub(super) type Block = (u32, Vec<u8>);

/// The objects of an empty file system, encoded.
pub(super) struct Objects {
    /// Inodes 2, 8 and 11 as full on-disk slots, by inode number.
    pub inodes: Vec<(u32, Vec<u8>)>,
    /// Directory blocks, the journal superblock and journal tree blocks.
    pub blocks: Vec<Block>,
    /// The journal inode's `i_block` words, `i_size_high` and `i_size`:
    /// the superblock's `s_jnl_blocks` backup.
    pub journal_backup: [u32; 17],
}

/// Encodes root, lost+found and the journal of `plan`. `seed` is the
/// metadata_csum seed, `time` every time stamp, `uuid` the file system's.
pub(super) fn build(
    plan: &Plan,
    seed: u32,
    time: u32,
    uuid: &[u8; 16],
) -> Result<Objects, DiskError> {
    let bs = plan.layout.block_size;
    let mut blocks = Vec::new();

    // Root: ".", ".." and lost+found.
    let mut root = Inode::directory(bs, 0o755, 0, 0, time);
    root.links_count = 3;
    set_extents(&mut root, &[run(0, plan.root_block, 1)], 1, bs)?;
    blocks.push((plan.root_block, root_block(bs, seed)));

    // lost+found: 16 KiB, its first block with "." and "..".
    let lf_len = lost_found_blocks(bs);
    let mut lf = Inode::directory(lf_len * bs, 0o700, 0, 0, time);
    set_extents(
        &mut lf,
        &[run(0, plan.lost_found_start, lf_len)],
        lf_len,
        bs,
    )?;
    for i in 0..lf_len {
        let mut b = if i == 0 {
            dir::make_initial_dir_block(LOST_FOUND_INO, INO_ROOT_DIR, bs, true, true)
        } else {
            dir::make_empty_dir_block(bs, true)
        };
        stamp_dir_block(&mut b, seed, LOST_FOUND_INO);
        blocks.push((plan.lost_found_start + i, b));
    }

    // The journal: a clean JBD2 superblock in its first block, the rest
    // zero (a fresh sparse file, or never read: `s_start` is 0).
    let jblocks: u32 = plan.journal.iter().map(|e| u32::from(e.len)).sum();
    let mut journal = Inode::regular(jblocks * bs, 0o600, 0, 0, time);
    let tree = plan.journal_tree.clone();
    let mut next_tree = tree.iter().copied();
    let mut alloc = || {
        next_tree.next().ok_or_else(|| {
            fstool::Error::InvalidArgument("journal extent tree needs more blocks".into())
        })
    };
    let (iblock, tree_blocks) = extent::pack_extent_tree(&plan.journal, bs, true, &mut alloc)
        .map_err(|e| DiskError::Invalid(format!("cannot build the journal's extent tree: {e}")))?;
    journal.flags |= EXT4_EXTENTS_FL;
    journal.block = extent::bytes_to_iblock(&iblock);
    journal.blocks_512 = (jblocks + tree.len() as u32) * (bs / 512);
    for mut t in tree_blocks {
        let n = t.image.len();
        let c = csum::extent_tail(seed, INO_JOURNAL, 0, &t.image[..n - 4]);
        t.image[n - 4..].copy_from_slice(&c.to_le_bytes());
        blocks.push((t.phys, t.image));
    }
    let first = plan.journal.first().map_or(0, |e| e.physical as u32);
    blocks.push((first, journal_superblock(bs, jblocks, uuid)));

    let mut journal_backup = [0u32; 17];
    journal_backup[..15].copy_from_slice(&journal.block);
    journal_backup[16] = journal.size;

    let inodes = [
        (INO_ROOT_DIR, root),
        (INO_JOURNAL, journal),
        (LOST_FOUND_INO, lf),
    ]
    .into_iter()
    .map(|(ino, inode)| (ino, inode_slot(&inode, ino, seed)))
    .collect();
    Ok(Objects {
        inodes,
        blocks,
        journal_backup,
    })
}

fn run(logical: u32, start: u32, len: u32) -> ExtentRun {
    ExtentRun {
        logical,
        len: len as u16,
        physical: u64::from(start),
    }
}

/// Points `inode` at `runs` (at most 4: an in-inode extent tree) holding
/// `blocks` blocks.
fn set_extents(
    inode: &mut Inode,
    runs: &[ExtentRun],
    blocks: u32,
    bs: u32,
) -> Result<(), DiskError> {
    let packed = extent::pack_into_iblock(runs)
        .map_err(|e| DiskError::Invalid(format!("cannot build a directory's extents: {e}")))?;
    inode.flags |= EXT4_EXTENTS_FL;
    inode.block = extent::bytes_to_iblock(&packed);
    inode.blocks_512 = blocks * (bs / 512);
    Ok(())
}

/// The root directory's block: ".", ".." and "lost+found", checksummed.
fn root_block(bs: u32, seed: u32) -> Vec<u8> {
    let usable = dir::usable_dir_len(bs, true);
    let mut b = Vec::with_capacity(bs as usize);
    let dot = dir::min_rec_len(1);
    let dotdot = dir::min_rec_len(2);
    dir::encode_entry(&mut b, INO_ROOT_DIR, b".", dot as u16, DENT_DIR, true);
    dir::encode_entry(&mut b, INO_ROOT_DIR, b"..", dotdot as u16, DENT_DIR, true);
    let rest = (usable - dot - dotdot) as u16;
    dir::encode_entry(&mut b, LOST_FOUND_INO, b"lost+found", rest, DENT_DIR, true);
    b.resize(bs as usize, 0);
    dir::write_dir_csum_tail(&mut b);
    stamp_dir_block(&mut b, seed, INO_ROOT_DIR);
    b
}

/// Stamps the checksum of a directory block owned by `ino` (generation 0).
fn stamp_dir_block(b: &mut [u8], seed: u32, ino: u32) {
    let n = b.len();
    let c = csum::dir_block(seed, ino, 0, &b[..n - dir::CSUM_TAIL_LEN]);
    b[n - 4..].copy_from_slice(&c.to_le_bytes());
}

/// The full on-disk inode: the 128-byte base, `i_extra_isize`, the
/// checksum over the whole slot (as the kernel's `ext4_inode_csum`).
fn inode_slot(inode: &Inode, ino: u32, seed: u32) -> Vec<u8> {
    let mut slot = vec![0u8; INODE_SIZE as usize];
    slot[..INODE_BASE_SIZE].copy_from_slice(&inode.encode());
    slot[INODE_BASE_SIZE..INODE_BASE_SIZE + 2].copy_from_slice(&EXTRA_ISIZE.to_le_bytes());
    let c = csum::inode(seed, ino, inode.generation, &slot);
    slot[CHECKSUM_LO_OFF..CHECKSUM_LO_OFF + 2].copy_from_slice(&(c as u16).to_le_bytes());
    slot[CHECKSUM_HI_OFF..CHECKSUM_HI_OFF + 2].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
    slot
}

/// A clean JBD2 v2 superblock as mke2fs 1.47 writes it: no journal
/// features (the kernel adds checksums on mount), the file system's UUID,
/// one user. JBD2 fields are big-endian.
fn journal_superblock(bs: u32, blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; bs as usize];
    let mut put = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    put(0, 0xC03B_3998); // h_magic
    put(4, 4); // h_blocktype: superblock v2
    put(12, bs); // s_blocksize
    put(16, blocks); // s_maxlen
    put(20, 1); // s_first
    put(24, 1); // s_sequence
    put(64, 1); // s_nr_users
    b[48..64].copy_from_slice(uuid);
    b
}
