//! The key of a step: a BLAKE3 hash over length-prefixed fields, fed by the
//! pipeline with everything that can change the step's result (file
//! contents through [`FileHashes`], directory trees with names, modes,
//! owners and bytes).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::stepcache::index::FileHashes;

/// Changes whenever what a key covers or how entries are stored changes,
/// so entries of an older b9 are never taken.
pub const FORMAT_VERSION: &str = "b9-step-cache-2";

/// A step's key: 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub(crate) String);

impl Key {
    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key given as text (a directory name), if it is one.
    pub fn parse(text: &str) -> Option<Key> {
        (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Key(text.to_string()))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds a key field by field.
#[derive(Clone)]
pub struct KeyBuilder {
    hasher: blake3::Hasher,
}

impl Default for KeyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyBuilder {
    /// A key that starts with the cache format version.
    pub fn new() -> KeyBuilder {
        let mut k = KeyBuilder {
            hasher: blake3::Hasher::new(),
        };
        k.field(FORMAT_VERSION);
        k
    }

    /// Adds a field (length-prefixed, so fields never run into each other).
    pub fn field(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let bytes = bytes.as_ref();
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
        self
    }

    /// Adds the content of the file `path`.
    pub fn file(&mut self, hashes: &mut FileHashes, path: &Path) -> io::Result<&mut Self> {
        let hash = hashes.hash(path)?;
        Ok(self.field(hash))
    }

    /// Adds a directory tree: names, types, modes, owners, bytes of files
    /// and targets of links, in name order.
    pub fn tree(&mut self, hashes: &mut FileHashes, dir: &Path) -> io::Result<&mut Self> {
        let hash = tree_hash(hashes, dir, true)?;
        Ok(self.field(hash))
    }

    /// The key.
    pub fn finish(&self) -> Key {
        Key(self.hasher.finalize().to_hex().to_string())
    }
}

/// The hash of a directory tree (hex); `owners` adds user and group ids
/// (a stored copy belongs to the caller, so entries are checked without).
pub fn tree_hash(hashes: &mut FileHashes, dir: &Path, owners: bool) -> io::Result<String> {
    let mut k = KeyBuilder::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        // Walked depth first in reverse, so popped in name order.
        let mut subdirs = Vec::new();
        for name in names {
            let full = path.join(&name);
            let rel = format!("{rel}/{}", name.to_string_lossy());
            let meta = std::fs::symlink_metadata(&full)?;
            let ty = meta.file_type();
            k.field(&rel).field(meta.mode().to_le_bytes());
            if owners {
                k.field(meta.uid().to_le_bytes())
                    .field(meta.gid().to_le_bytes());
            }
            if ty.is_file() {
                k.file(hashes, &full)?;
            } else if ty.is_symlink() {
                k.field(std::fs::read_link(&full)?.as_os_str().as_encoded_bytes());
            } else if ty.is_dir() {
                subdirs.push((full, rel));
            } else if ty.is_block_device() || ty.is_char_device() {
                k.field(meta.rdev().to_le_bytes());
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(k.finish().0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn hash(dir: &Path) -> String {
        tree_hash(&mut FileHashes::load(dir), dir, true).unwrap()
    }

    #[test]
    fn fields_are_length_prefixed() {
        let mut a = KeyBuilder::new();
        a.field("ab").field("c");
        let mut b = KeyBuilder::new();
        b.field("a").field("bc");
        assert_ne!(a.finish(), b.finish());
        assert!(Key::parse(a.finish().as_str()).is_some());
    }

    #[test]
    fn a_tree_changes_with_names_bytes_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("share");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), b"1").unwrap();
        let first = hash(&d);
        assert_eq!(first, hash(&d), "stable");
        std::fs::write(d.join("sub/f"), b"2").unwrap();
        let bytes = hash(&d);
        assert_ne!(bytes, first);
        std::fs::set_permissions(d.join("sub/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let mode = hash(&d);
        assert_ne!(mode, bytes);
        std::fs::rename(d.join("sub/f"), d.join("sub/g")).unwrap();
        let name = hash(&d);
        assert_ne!(name, mode);
        std::os::unix::fs::symlink("x", d.join("l")).unwrap();
        let link = hash(&d);
        assert_ne!(link, name);
        std::fs::remove_file(d.join("l")).unwrap();
        std::os::unix::fs::symlink("y", d.join("l")).unwrap();
        assert_ne!(hash(&d), link);
    }
}
