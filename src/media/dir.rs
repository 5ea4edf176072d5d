//! `CI_DIR`: a copy of the tree with modes.
//!
//! Regular files are copied with their permission bits, directories are
//! created with theirs, symbolic links are recreated as links (their target
//! unchanged). Files and directories get [`MediaOptions::timestamp`] as their
//! modification and access time; a link keeps the time of its creation (std
//! has no `lutimes`).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{read_tree, Entry, EntryKind, MediaError, MediaOptions};

/// Writes a copy of `tree` to the new directory `out`.
///
/// `out` must not exist yet (its parent must): an existing `out`, even an
/// empty directory, is [`MediaError::OutputExists`], so a copy never merges
/// into stale content. A missing `tree` gives an empty directory. The root
/// gets the tree root's mode (0755 when the tree is missing).
pub fn write_dir(tree: &Path, out: &Path, opts: &MediaOptions) -> Result<(), MediaError> {
    let (entries, root_mode) = read_tree(tree)?;
    if fs::symlink_metadata(out).is_ok() {
        return Err(MediaError::OutputExists {
            path: out.to_path_buf(),
        });
    }
    fs::create_dir(out).map_err(|e| MediaError::io("create directory", out, e))?;
    let time = UNIX_EPOCH + Duration::from_secs(opts.timestamp);
    copy_entries(&entries, out, time)?;
    finish(out, open(out)?, root_mode.unwrap_or(0o755), time)
}

fn copy_entries(entries: &[Entry], dest: &Path, time: SystemTime) -> Result<(), MediaError> {
    for entry in entries {
        let to = dest.join(&entry.name);
        match &entry.kind {
            EntryKind::File { .. } => {
                let mut src = fs::File::open(&entry.path)
                    .map_err(|e| MediaError::io("open", &entry.path, e))?;
                let mut dst =
                    fs::File::create(&to).map_err(|e| MediaError::io("create", &to, e))?;
                std::io::copy(&mut src, &mut dst).map_err(|e| MediaError::io("copy to", &to, e))?;
                finish(&to, dst, entry.mode, time)?;
            }
            EntryKind::Dir(children) => {
                fs::create_dir(&to).map_err(|e| MediaError::io("create directory", &to, e))?;
                copy_entries(children, &to, time)?;
                // Mode and time last: a read-only directory must be filled first,
                // and creating children would move its mtime.
                finish(&to, open(&to)?, entry.mode, time)?;
            }
            EntryKind::Symlink(target) => {
                symlink(target, &to).map_err(|e| MediaError::io("create symbolic link", &to, e))?;
            }
        }
    }
    Ok(())
}

fn open(path: &Path) -> Result<fs::File, MediaError> {
    fs::File::open(path).map_err(|e| MediaError::io("open", path, e))
}

/// Sets the access and modification times, then the mode, of a file or
/// directory through an open handle (so a mode without read access does not
/// get in the way).
fn finish(path: &Path, f: fs::File, mode: u32, time: SystemTime) -> Result<(), MediaError> {
    f.set_times(fs::FileTimes::new().set_accessed(time).set_modified(time))
        .map_err(|e| MediaError::io("set the times of", path, e))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| MediaError::io("set the mode of", path, e))
}
