//! Putting a finished file in place of an older one, atomically and fast.
//!
//! A plain `rename` over an existing file makes ext4 write the new file's
//! data out before the rename completes (its `auto_da_alloc` heuristic for
//! programs that do not `fsync`): a rebuild of an image over the previous
//! build's output took three times as long as writing it fresh. b9 swaps
//! the two names instead (`renameat2(RENAME_EXCHANGE)`: atomic, the final
//! name holds the old file or the new one, never neither and never a part)
//! and then removes the old file, now under the temporary name. Where the
//! file system cannot swap, or nothing is at the target, a plain rename.
//! The durability policy this is part of: docs/OUTPUTS.md#durability.

use std::io;
use std::path::Path;

use rustix::fs::{renameat_with, RenameFlags, CWD};

/// Moves the file `new` to `target`, replacing the regular file there (if
/// any) in one atomic step; the replaced file is removed.
pub fn replace_file(new: &Path, target: &Path) -> io::Result<()> {
    let regular_target = std::fs::symlink_metadata(target).is_ok_and(|m| m.is_file());
    if regular_target {
        match renameat_with(CWD, new, CWD, target, RenameFlags::EXCHANGE) {
            Ok(()) => {
                // `new` names the old file now. Should removing it fail, it
                // is a temporary of this process: the next b9 sweeps it.
                let _ = std::fs::remove_file(new);
                return Ok(());
            }
            // No swap on this file system (or kernel): rename instead.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    std::fs::rename(new, target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_file_replaces_the_old_one_and_nothing_is_left() {
        let d = tempfile::tempdir().unwrap();
        let (new, target) = (d.path().join(".t.tmp"), d.path().join("t"));
        std::fs::write(&target, "old").unwrap();
        std::fs::write(&new, "new").unwrap();
        replace_file(&new, &target).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert!(!new.exists(), "the old file went with the temporary name");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_target_is_a_plain_rename() {
        let d = tempfile::tempdir().unwrap();
        let (new, target) = (d.path().join(".t.tmp"), d.path().join("t"));
        std::fs::write(&new, "new").unwrap();
        replace_file(&new, &target).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert!(!new.exists());
    }

    #[test]
    fn a_directory_at_the_target_is_not_swapped_away() {
        let d = tempfile::tempdir().unwrap();
        let (new, target) = (d.path().join(".t.tmp"), d.path().join("t"));
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), "mine").unwrap();
        std::fs::write(&new, "new").unwrap();
        assert!(replace_file(&new, &target).is_err());
        assert_eq!(
            std::fs::read_to_string(target.join("keep")).unwrap(),
            "mine"
        );
    }
}
