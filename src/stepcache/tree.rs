//! Directory trees copied in and out of entries: what a step left in a
//! read-write share. Regular files, directories and symbolic links with
//! their modes; other kinds of file are skipped with a warning.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Copies the tree `from` into the new directory `to`.
pub fn copy(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir(to)?;
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    let mut dirs = Vec::new();
    while let Some((src, dst)) = stack.pop() {
        for entry in std::fs::read_dir(&src)? {
            let entry = entry?;
            let (s, d) = (entry.path(), dst.join(entry.file_name()));
            let meta = std::fs::symlink_metadata(&s)?;
            let ty = meta.file_type();
            if ty.is_dir() {
                std::fs::create_dir(&d)?;
                stack.push((s, d.clone()));
                dirs.push((d, meta.mode()));
                continue;
            } else if ty.is_file() {
                std::fs::copy(&s, &d)?;
            } else if ty.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
                continue;
            } else {
                tracing::warn!(
                    "step cache: {} is not a file, directory or link; not kept",
                    s.display()
                );
                continue;
            }
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    // Directories' modes once their contents are written (a read-only
    // directory could not be filled).
    for (d, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

/// Makes the directory `target` hold exactly the tree `from`: its current
/// contents removed, `from`'s copied in.
pub fn replace_contents(from: &Path, target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    for entry in std::fs::read_dir(target)? {
        crate::stale::remove_entry(&entry?.path())?;
    }
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (s, d) = (entry.path(), target.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&s)?;
        if meta.is_dir() {
            copy(&s, &d)?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
        } else {
            std::fs::copy(&s, &d)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stepcache::index::FileHashes;
    use crate::stepcache::key::tree_hash;

    #[test]
    fn a_tree_comes_back_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/f"), b"data").unwrap();
        std::fs::set_permissions(a.join("sub/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("sub/f", a.join("l")).unwrap();
        copy(&a, &b).unwrap();
        std::fs::create_dir_all(c.join("old")).unwrap();
        std::fs::write(c.join("gone"), b"x").unwrap();
        replace_contents(&b, &c).unwrap();
        let mut h = FileHashes::load(dir.path());
        let want = tree_hash(&mut h, &a, true).unwrap();
        assert_eq!(tree_hash(&mut h, &b, true).unwrap(), want);
        assert_eq!(tree_hash(&mut h, &c, true).unwrap(), want);
    }
}
