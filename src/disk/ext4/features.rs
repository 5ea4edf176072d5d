//! The `mkfs.ext4 -O` style feature list of b9.conf's `ext4_attributes`:
//! which names exist, which b9 can honour, and the default set.

use crate::disk::DiskError;

/// The ext4 features b9 decides about. Everything not listed here is either
/// always on (has_journal, extent, filetype, dir_index, extra_isize), never
/// available (resize_inode, meta_bg, bigalloc, ...), or unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Features {
    /// `64bit`: 64-byte group descriptors.
    pub bit64: bool,
    /// `metadata_csum`: CRC32C checksums on all metadata.
    pub metadata_csum: bool,
    /// `metadata_csum_seed`: the checksum seed is stored in the superblock.
    pub metadata_csum_seed: bool,
    /// `flex_bg`: packed group metadata (used only where it is safe, see
    /// [`crate::disk::ext4`]).
    pub flex_bg: bool,
    /// `sparse_super`: superblock backups only in groups 0, 1 and powers of 3, 5, 7.
    pub sparse_super: bool,
    /// `sparse_super2`: superblock backups in exactly two groups.
    pub sparse_super2: bool,
    /// `large_file`: files of 2 GiB and more.
    pub large_file: bool,
    /// `huge_file`: files of 2 TiB and more.
    pub huge_file: bool,
    /// `dir_nlink`: more than 65000 subdirectories.
    pub dir_nlink: bool,
    /// `ext_attr`: extended attributes.
    pub ext_attr: bool,
    /// `inline_data`: tiny files stored in the inode.
    pub inline_data: bool,
}

impl Default for Features {
    /// The default set: `mke2fs -t ext4` of e2fsprogs 1.47 without
    /// `resize_inode` (not writable here) and without `64bit` (only needed
    /// beyond 16 TiB, which this writer cannot reach anyway).
    fn default() -> Features {
        Features {
            bit64: false,
            metadata_csum: true,
            metadata_csum_seed: false,
            flex_bg: true,
            sparse_super: true,
            sparse_super2: false,
            large_file: true,
            huge_file: true,
            dir_nlink: true,
            ext_attr: true,
            inline_data: false,
        }
    }
}

/// What a feature name means to b9.
enum Kind {
    /// Can be switched on and off.
    Toggle(fn(&mut Features) -> &mut bool),
    /// Always on: turning it off is an error.
    Always,
    /// Never available: turning it on is an error, turning it off a no-op.
    Never(&'static str),
}

/// Every feature name e2fsprogs knows (`lib/e2p/feature.c`), with what b9 can do.
fn kind(name: &str) -> Option<Kind> {
    use Kind::*;
    Some(match name {
        "64bit" => Toggle(|f| &mut f.bit64),
        "metadata_csum" => Toggle(|f| &mut f.metadata_csum),
        "metadata_csum_seed" => Toggle(|f| &mut f.metadata_csum_seed),
        "flex_bg" => Toggle(|f| &mut f.flex_bg),
        "sparse_super" => Toggle(|f| &mut f.sparse_super),
        "sparse_super2" => Toggle(|f| &mut f.sparse_super2),
        "large_file" => Toggle(|f| &mut f.large_file),
        "huge_file" => Toggle(|f| &mut f.huge_file),
        "dir_nlink" => Toggle(|f| &mut f.dir_nlink),
        "ext_attr" => Toggle(|f| &mut f.ext_attr),
        "inline_data" => Toggle(|f| &mut f.inline_data),
        "has_journal" | "extent" | "extents" | "filetype" | "dir_index" | "extra_isize" => Always,
        "resize_inode" => Never("the writer reserves no GDT blocks for growth"),
        "uninit_bg" | "gdt_csum" => Never("use metadata_csum"),
        "meta_bg" => Never("the writer keeps the group descriptors contiguous"),
        "bigalloc" | "quota" | "project" | "encrypt" | "casefold" | "fname_encoding" | "mmp"
        | "journal_dev" | "ea_inode" | "large_dir" | "largedir" | "verity" | "stable_inodes"
        | "fast_commit" | "orphan_file" | "orphan_present" | "shared_blocks" | "read-only"
        | "replica" | "compression" | "dirdata" | "lazy_bg" | "snapshot_bitmap"
        | "exclude_bitmap" | "exclude_inode" | "imagic_inodes" | "dir_prealloc"
        | "needs_recovery" | "journal_data" | "sparse_bg" | "snapshot_klist"
        | "snapshot_exclude" | "btree_dir" | "extra_isize_all" | "test_fs" => {
            Never("not implemented by the ext4 writer")
        }
        _ => return None,
    })
}

/// Applies `list` (`name` switches on, `^name` off, in order; later entries
/// win; `none` clears everything that can be cleared) to the default set.
pub(crate) fn parse(list: &[String]) -> Result<Features, DiskError> {
    let mut f = Features::default();
    for raw in list {
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (on, name) = match item.strip_prefix('^').or_else(|| item.strip_prefix('-')) {
                Some(n) => (false, n),
                None => (true, item.strip_prefix('+').unwrap_or(item)),
            };
            let name = name.trim().to_ascii_lowercase();
            if name == "none" && on {
                f = Features {
                    bit64: false,
                    metadata_csum: false,
                    metadata_csum_seed: false,
                    flex_bg: false,
                    sparse_super: false,
                    sparse_super2: false,
                    large_file: false,
                    huge_file: false,
                    dir_nlink: false,
                    ext_attr: false,
                    inline_data: false,
                };
                continue;
            }
            match kind(&name) {
                Some(Kind::Toggle(field)) => *field(&mut f) = on,
                Some(Kind::Always) if on => {}
                Some(Kind::Always) => {
                    return Err(DiskError::Invalid(format!(
                    "ext4 feature `^{name}` is not supported: b9's ext4 writer always uses {name}"
                )))
                }
                Some(Kind::Never(_)) if !on => {}
                Some(Kind::Never(why)) => {
                    return Err(DiskError::Invalid(format!(
                        "ext4 feature `{name}` is not supported: {why}"
                    )))
                }
                None => {
                    return Err(DiskError::Invalid(format!(
                        "unknown ext4 feature `{item}` in ext4_attributes"
                    )))
                }
            }
        }
    }
    if f.metadata_csum_seed && !f.metadata_csum {
        return Err(DiskError::Invalid(
            "ext4 feature `metadata_csum_seed` needs `metadata_csum`".into(),
        ));
    }
    if f.sparse_super2 && f.sparse_super {
        // mke2fs gives sparse_super2 precedence; so does the writer.
        f.sparse_super = false;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[&str]) -> Result<Features, DiskError> {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn empty_list_is_the_default_set() {
        assert_eq!(p(&[]).ok(), Some(Features::default()));
    }

    #[test]
    fn on_and_off() {
        let f = p(&["64bit", "^metadata_csum"]).ok();
        assert_eq!(f.map(|f| (f.bit64, f.metadata_csum)), Some((true, false)));
        let f = p(&["^64bit"]).ok();
        assert_eq!(f.map(|f| f.bit64), Some(false));
        // Later entries win; comma lists like mkfs -O are accepted.
        let f = p(&["64bit,^64bit"]).ok();
        assert_eq!(f.map(|f| f.bit64), Some(false));
    }

    #[test]
    fn always_and_never() {
        assert!(p(&["has_journal", "extent", "^resize_inode"]).is_ok());
        let e = p(&["^has_journal"]).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("^has_journal")));
        let e = p(&["resize_inode"]).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("resize_inode")));
    }

    #[test]
    fn unknown_feature_is_named() {
        let e = p(&["64bit", "frobnicate"]).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("unknown ext4 feature `frobnicate` in ext4_attributes")
        );
    }

    #[test]
    fn csum_seed_needs_csum() {
        assert!(p(&["^metadata_csum", "metadata_csum_seed"]).is_err());
        assert!(p(&["metadata_csum_seed"]).is_ok());
    }
}
