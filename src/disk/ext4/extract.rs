//! Reading an ext4 image back into a host directory: regular files,
//! directories and symbolic links, with their permission bits. The remote
//! libvirt path writes a read-write share's image back this way
//! (docs/PROTOCOL.md#helper-remote).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fstool::block::{BlockDevice, FileBackend};
use fstool::fs::ext::Ext;
use fstool::fs::EntryKind;

use super::backend::ROOT;
use crate::disk::DiskError;

/// Deepest directory nesting followed (a forged image cannot recurse forever).
const MAX_DEPTH: usize = 256;

/// Writes the tree of the ext4 file system in `image` into `dir` (files
/// there with the same names are replaced; others are left alone).
pub fn extract(image: &Path, dir: &Path) -> Result<(), DiskError> {
    let fail = |e: String| DiskError::Corrupt {
        path: image.to_path_buf(),
        format: "ext4",
        field: "file tree".to_string(),
        problem: e,
    };
    let mut dev = FileBackend::open(image).map_err(|e| fail(e.to_string()))?;
    let fs = Ext::open(&mut dev).map_err(|e| fail(e.to_string()))?;
    copy_dir(&fs, &mut dev, ROOT.0, dir, 0).map_err(fail)
}

fn copy_dir(
    fs: &Ext,
    dev: &mut dyn BlockDevice,
    ino: u32,
    to: &Path,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("directories nested too deeply".to_string());
    }
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in fs.list_inode(dev, ino).map_err(|e| e.to_string())? {
        if entry.name == "." || entry.name == ".." || entry.name == "lost+found" && depth == 0 {
            continue;
        }
        if entry.name.contains('/') {
            return Err(format!("bad file name {:?}", entry.name));
        }
        let path = to.join(&entry.name);
        let mode = fs
            .read_inode(dev, entry.inode)
            .map_err(|e| e.to_string())?
            .mode
            & 0o7777;
        match entry.kind {
            EntryKind::Dir => {
                copy_dir(fs, dev, entry.inode, &path, depth + 1)?;
                set_mode(&path, mode)?;
            }
            EntryKind::Regular => {
                let mut bytes = Vec::new();
                fs.open_file_reader(dev, entry.inode)
                    .map_err(|e| e.to_string())?
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let _ = std::fs::remove_file(&path);
                std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                set_mode(&path, mode)?;
            }
            EntryKind::Symlink => {
                let target = fs
                    .read_symlink_target(dev, entry.inode)
                    .map_err(|e| e.to_string())?;
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(target, &path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            _ => tracing::warn!("not written back (a special file): {}", path.display()),
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u16) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(u32::from(mode)))
        .map_err(|e| format!("{}: {e}", path.display()))
}
