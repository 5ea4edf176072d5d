//! Giving a freshly written, unmounted ext4 the UUID of the file system it
//! replaces (a shrunk image keeps `UUID=` references in fstab and boot
//! loaders working).
//!
//! The new file system is made with `metadata_csum_seed`, so metadata
//! checksums do not depend on the UUID: only the superblock and its backups
//! change, each with its own checksum.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use b9::bytes::{le_u16, le_u32};

/// Offsets in the superblock.
const MAGIC: usize = 0x38;
const UUID: usize = 0x68;
const CHECKSUM: usize = 0x3fc;

/// CRC32C (Castagnoli) without the final inversion, as ext4 stores it.
pub fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82f6_3b78 & mask);
        }
    }
    crc
}

/// The UUID of a superblock.
pub fn uuid_of(sb: &[u8; 1024]) -> [u8; 16] {
    let mut u = [0u8; 16];
    u.copy_from_slice(&sb[UUID..UUID + 16]);
    u
}

/// Byte offsets of the superblock and all its backups.
pub fn superblock_offsets(sb: &[u8; 1024]) -> Vec<u64> {
    let block_size = 1024u64 << le_u32(sb, 0x18).unwrap_or(0).min(6);
    let blocks = u64::from(le_u32(sb, 0x04).unwrap_or(0))
        | if le_u32(sb, 0x60).unwrap_or(0) & 0x80 != 0 {
            u64::from(le_u32(sb, 0x150).unwrap_or(0)) << 32
        } else {
            0
        };
    let first = u64::from(le_u32(sb, 0x14).unwrap_or(0));
    let per_group = u64::from(le_u32(sb, 0x20).unwrap_or(0)).max(1);
    let groups = blocks.saturating_sub(first).div_ceil(per_group);
    let sparse = le_u32(sb, 0x64).unwrap_or(0) & 0x1 != 0;
    let sparse2 = le_u32(sb, 0x5c).unwrap_or(0) & 0x200 != 0;
    let backups2 = [
        le_u32(sb, 0x24c).unwrap_or(0),
        le_u32(sb, 0x250).unwrap_or(0),
    ];
    let mut offsets = vec![1024];
    for g in 1..groups {
        let has = if sparse2 {
            backups2.iter().any(|b| u64::from(*b) == g)
        } else {
            !sparse || has_sparse_backup(g)
        };
        if has {
            offsets.push((g * per_group + first) * block_size);
        }
    }
    offsets
}

/// Groups 1 and powers of 3, 5 and 7 hold backups under `sparse_super`.
fn has_sparse_backup(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            p = p.saturating_mul(base);
        }
        p == g
    })
}

/// Sets `uuid` in superblock `sb` and refreshes its checksum when the file
/// system has metadata checksums.
pub fn patch(sb: &mut [u8; 1024], uuid: &[u8; 16]) {
    sb[UUID..UUID + 16].copy_from_slice(uuid);
    if le_u32(sb, 0x64).unwrap_or(0) & 0x400 != 0 {
        let c = crc32c_raw(!0, &sb[..CHECKSUM]);
        sb[CHECKSUM..].copy_from_slice(&c.to_le_bytes());
    }
}

/// Gives the unmounted ext4 on `dev` the UUID `uuid` (every superblock copy).
pub fn set_uuid(dev: &Path, uuid: &[u8; 16]) -> io::Result<()> {
    let f = File::options().read(true).write(true).open(dev)?;
    let mut primary = [0u8; 1024];
    f.read_exact_at(&mut primary, 1024)?;
    let csum = le_u32(&primary, 0x64).unwrap_or(0) & 0x400 != 0;
    let seed = le_u32(&primary, 0x60).unwrap_or(0) & 0x2000 != 0;
    if csum && !seed {
        // The checksums of all metadata derive from the UUID.
        return Err(io::Error::other(
            "changing the UUID needs metadata_csum_seed",
        ));
    }
    for off in superblock_offsets(&primary) {
        let mut sb = [0u8; 1024];
        f.read_exact_at(&mut sb, off)?;
        if le_u16(&sb, MAGIC) != Some(0xef53) {
            continue;
        }
        patch(&mut sb, uuid);
        f.write_all_at(&sb, off)?;
    }
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value 0xe3069283, before the final inversion.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xe306_9283);
    }

    fn sb(log: u32, blocks: u32, first: u32, per_group: u32) -> [u8; 1024] {
        let mut sb = [0u8; 1024];
        sb[MAGIC..MAGIC + 2].copy_from_slice(&0xef53u16.to_le_bytes());
        sb[0x04..0x08].copy_from_slice(&blocks.to_le_bytes());
        sb[0x14..0x18].copy_from_slice(&first.to_le_bytes());
        sb[0x18..0x1c].copy_from_slice(&log.to_le_bytes());
        sb[0x20..0x24].copy_from_slice(&per_group.to_le_bytes());
        sb[0x64..0x68].copy_from_slice(&0x401u32.to_le_bytes());
        sb
    }

    #[test]
    fn backup_locations() {
        // 64 MiB with 1 KiB blocks: 8 groups of 8192, backups in 1 3 5 7.
        let s = sb(0, 65536, 1, 8192);
        assert_eq!(
            superblock_offsets(&s),
            vec![1024, 8193 * 1024, 24577 * 1024, 40961 * 1024, 57345 * 1024]
        );
        // 4 KiB blocks: group g starts at block g * 32768.
        let s = sb(2, 10 * 32768, 0, 32768);
        assert_eq!(
            superblock_offsets(&s),
            vec![
                1024,
                32768 * 4096,
                3 * 32768 * 4096,
                5 * 32768 * 4096,
                7 * 32768 * 4096,
                9 * 32768 * 4096
            ]
        );
    }

    #[test]
    fn patch_sets_uuid_and_checksum() {
        let mut s = sb(0, 65536, 1, 8192);
        let uuid = [7u8; 16];
        patch(&mut s, &uuid);
        assert_eq!(uuid_of(&s), uuid);
        let c = le_u32(&s, 0x3fc).unwrap();
        assert_eq!(c, crc32c_raw(!0, &s[..0x3fc]));
    }

    #[test]
    fn new_ext4_takes_the_old_uuid_and_stays_clean() -> Result<(), Box<dyn std::error::Error>> {
        let d = tempfile::tempdir()?;
        let img = d.path().join("fs.img");
        let features = ["metadata_csum_seed".to_string()];
        let spec = b9::disk::ext4::Ext4Spec {
            size: 16 << 20,
            label: "root",
            features: &features,
            populate_from: None,
            timestamp: 1_700_000_000,
        };
        b9::disk::ext4::create(&img, &spec)?;
        let uuid = *b"0123456789abcdef";
        set_uuid(&img, &uuid)?;
        let f = File::open(&img)?;
        let mut primary = [0u8; 1024];
        f.read_exact_at(&mut primary, 1024)?;
        for off in superblock_offsets(&primary) {
            let mut sb = [0u8; 1024];
            f.read_exact_at(&mut sb, off)?;
            assert_eq!(uuid_of(&sb), uuid, "superblock at {off}");
        }
        // e2fsck as an independent oracle, where installed.
        match std::process::Command::new("e2fsck")
            .arg("-fn")
            .arg(&img)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            ),
            Err(e) => eprintln!("no e2fsck: {e}"),
        }
        Ok(())
    }
}
