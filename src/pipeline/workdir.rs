//! The build directory `BUILD-<id>` of one run: owned through the lock
//! file `.b9-owner` inside it (the owner's PID and whether the directory is
//! kept), so a second b9 with the same directory (`-u`) waits for the
//! first, and a later run removes the directories of killed builds. A kept
//! directory keeps its record: b9 reuses (and empties) only a directory
//! with one. Rules in `docs/OUTPUTS.md`.

use std::path::{Path, PathBuf};

use crate::lock::{LockError, OwnerLock};
use crate::pipeline::error::BuildError;

/// The owner record's name inside a build directory.
const OWNER: &str = ".b9-owner";
/// The owner record's note when the directory is removed at the end.
const REMOVE: &str = "remove";
/// The owner record's note when the directory is kept (`-k`, `-u`).
const KEEP: &str = "keep";
/// The name of the console logs kept after a failed build.
const CONSOLE_LOG: &str = "console.log";

/// A build directory in use by this process.
#[derive(Debug)]
pub struct BuildDir {
    path: PathBuf,
    keep: bool,
    owner: Option<OwnerLock>,
}

impl BuildDir {
    /// Takes the build directory `path` (waiting while another b9 uses
    /// it) and empties what an earlier run left in it.
    pub fn open(path: &Path, keep: bool) -> Result<BuildDir, BuildError> {
        let owner_path = path.join(OWNER);
        if !reusable(path) {
            return Err(BuildError::ForeignBuildDir(path.to_path_buf()));
        }
        let note = if keep { KEEP } else { REMOVE };
        let owner = match OwnerLock::acquire(&owner_path, false, note) {
            Err(LockError::Busy(pid)) => {
                let who = pid.map_or(String::new(), |p| format!(" (pid {p})"));
                tracing::info!(
                    "waiting for another b9{who} using the build directory {}",
                    path.display()
                );
                OwnerLock::acquire(&owner_path, true, note)
            }
            other => other,
        }
        .map_err(|error| BuildError::Lock {
            error,
            lock: owner_path.clone(),
            what: path.to_path_buf(),
        })?;
        let entries =
            std::fs::read_dir(path).map_err(BuildError::io("read the build directory", path))?;
        for e in entries.flatten().filter(|e| e.file_name() != OWNER) {
            let p = e.path();
            crate::stale::remove_entry(&p).map_err(BuildError::io("empty", &p))?;
        }
        Ok(BuildDir {
            path: path.to_path_buf(),
            keep,
            owner: Some(owner),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the run: removes the directory unless kept; after a failed
    /// build, its console logs stay (errors name them).
    pub fn finish(mut self, failed: bool) {
        if self.keep {
            tracing::info!("build directory kept: {}", self.path.display());
            if let Some(owner) = self.owner.take() {
                owner.release_keeping_record();
            }
            return;
        } else if failed && remove_all_but_console_logs(&self.path) {
            tracing::info!(
                "build directory removed but for the console logs of its virtual machines: {}",
                self.path.display()
            );
        } else if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::error!(
                "cannot remove the build directory {}: {e}",
                self.path.display()
            );
        }
        self.owner.take();
    }
}

/// Whether `path` is missing, an empty directory, or a directory with
/// b9's owner record (never a symbolic link).
fn reusable(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(m) if m.is_dir() => {
            path.join(OWNER).is_file()
                || std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
        }
        Ok(_) => false,
    }
}

/// Every path under `dir`, parents before children.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Removes everything under `dir` except files named `console.log` (and
/// the directories holding them) and the owner record; returns whether a
/// console log was kept.
fn remove_all_but_console_logs(dir: &Path) -> bool {
    let mut kept = false;
    for p in walkdir(dir).iter().rev() {
        match p.file_name() {
            Some(n) if n == CONSOLE_LOG => kept = true,
            Some(n) if n == OWNER => {}
            // A directory still holding a console log stays.
            _ if p.is_dir() && !p.is_symlink() => {
                let _ = std::fs::remove_dir(p);
            }
            _ => {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    kept
}

/// Removes the build directories under `root` that killed b9 processes of
/// this user left: those with an owner record that no process holds, whose
/// PID is gone and that were not to be kept. Directories without a record
/// (not b9's) stay.
pub fn sweep(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let ours = e.file_name().to_string_lossy().starts_with("BUILD-")
            && std::fs::symlink_metadata(&dir)
                .is_ok_and(|m| m.is_dir() && crate::stale::is_mine(&m));
        if !ours {
            continue;
        }
        let owner_path = dir.join(OWNER);
        let Ok(Some(owner)) = OwnerLock::take_existing(&owner_path) else {
            continue;
        };
        let Some((pid, note)) = owner.record_of() else {
            continue;
        };
        if note != REMOVE || !i32::try_from(pid).is_ok_and(crate::stale::is_gone) {
            continue;
        }
        tracing::debug!("removing {} (left by b9 process {pid})", dir.display());
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("cannot remove {}: {e}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_b9s_own_directories_are_reused_and_swept() {
        let root = tempfile::tempdir().unwrap();
        let kept = root.path().join("BUILD-KEPT");
        let b = BuildDir::open(&kept, true).unwrap();
        std::fs::write(kept.join("old"), "x").unwrap();
        b.finish(false);
        assert!(kept.join("old").exists() && kept.join(OWNER).exists());
        // Reused: emptied but for the record.
        let b = BuildDir::open(&kept, true).unwrap();
        assert!(!kept.join("old").exists());
        b.finish(false);

        let mine = root.path().join("BUILD-mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("data"), "x").unwrap();
        let e = BuildDir::open(&mine, false).unwrap_err().to_string();
        assert!(e.contains("was not made by b9"), "{e}");
        let link = root.path().join("BUILD-link");
        std::os::unix::fs::symlink(&kept, &link).unwrap();
        assert!(BuildDir::open(&link, true).is_err());

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let dead = root.path().join("BUILD-DEAD");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(OWNER), format!("{gone} {REMOVE}\n")).unwrap();
        std::fs::write(kept.join(OWNER), format!("{gone} {KEEP}\n")).unwrap();
        let live = BuildDir::open(&root.path().join("BUILD-LIVE"), false).unwrap();
        sweep(root.path());
        assert!(!dead.exists());
        assert!(kept.join(OWNER).exists() && mine.join("data").exists());
        assert!(live.path().exists());
        live.finish(false);
        assert!(!root.path().join("BUILD-LIVE").exists());
    }
}
