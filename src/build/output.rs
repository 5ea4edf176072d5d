//! Atomic outputs: every output is written under a temporary name next to
//! its destination and renamed into place only when its artifact succeeded.

use std::fs;
use std::path::{Path, PathBuf};

/// An output written under a temporary name, waiting for its artifact to succeed.
#[derive(Debug)]
pub struct Staged {
    /// Where it was written.
    pub tmp: PathBuf,
    /// Where it goes.
    pub target: PathBuf,
}

/// Stages `target`: creates its parent, and returns the temporary path to write.
pub fn stage(target: &Path) -> Result<Staged, String> {
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let tmp = crate::disk::image::staging_path(target);
    discard_path(&tmp);
    Ok(Staged {
        tmp,
        target: target.to_path_buf(),
    })
}

/// Moves every staged output into place. A directory replaces the old one
/// whole (the old one is moved aside first, then removed).
pub fn commit(staged: Vec<Staged>) -> Result<(), String> {
    for s in staged {
        if s.target.is_dir() && !s.target.is_symlink() {
            let old = s.target.with_file_name(format!(
                ".{}.b9-old-{}",
                s.target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::process::id()
            ));
            fs::rename(&s.target, &old)
                .map_err(|e| format!("cannot replace {}: {e}", s.target.display()))?;
            fs::rename(&s.tmp, &s.target)
                .map_err(|e| format!("cannot move {} into place: {e}", s.target.display()))?;
            discard_path(&old);
        } else {
            fs::rename(&s.tmp, &s.target)
                .map_err(|e| format!("cannot move {} into place: {e}", s.target.display()))?;
        }
    }
    Ok(())
}

/// Removes staged outputs of a failed artifact.
pub fn discard(staged: Vec<Staged>) {
    for s in staged {
        discard_path(&s.tmp);
    }
}

fn discard_path(p: &Path) {
    if p.is_dir() && !p.is_symlink() {
        let _ = fs::remove_dir_all(p);
    } else {
        let _ = fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_files_and_directories_whole() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("out/a.iso");
        let s = stage(&file).unwrap();
        fs::write(&s.tmp, "new").unwrap();
        commit(vec![s]).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");

        let dir = d.path().join("out/a");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("stale"), "x").unwrap();
        let s = stage(&dir).unwrap();
        fs::create_dir(&s.tmp).unwrap();
        fs::write(s.tmp.join("meta-data"), "m").unwrap();
        commit(vec![s]).unwrap();
        assert!(!dir.join("stale").exists());
        assert_eq!(fs::read_to_string(dir.join("meta-data")).unwrap(), "m");
        let left: Vec<_> = fs::read_dir(d.path().join("out")).unwrap().collect();
        assert_eq!(left.len(), 2, "only a.iso and a/ remain");
    }

    #[test]
    fn discard_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = stage(&d.path().join("x.vfat")).unwrap();
        fs::write(&s.tmp, "half").unwrap();
        discard(vec![s]);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
