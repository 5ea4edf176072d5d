//! File locks (`flock`) between b9 processes: plain lock files (the
//! shared-image cache) and owner locks, which record the PID of the b9
//! holding them and disappear when released (build directories, outputs).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Opens (creating it) and locks the lock file `path`, shared or
/// exclusive, waiting for other holders; the lock lasts as long as the file.
pub fn lock_file(path: &Path, exclusive: bool) -> std::io::Result<File> {
    let file = open(path)?;
    if exclusive {
        file.lock()?;
    } else {
        file.lock_shared()?;
    }
    Ok(file)
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// An exclusive lock on a file that holds the holder's PID and a note;
/// the file is removed when the lock is released.
#[derive(Debug)]
pub struct OwnerLock {
    file: File,
    path: PathBuf,
    /// Whether releasing removes the file: only a lock taken by
    /// [`Self::acquire`] (one taken to inspect a record keeps it, and a
    /// failed attempt never removes another holder's file).
    remove: bool,
}

/// Why an owner lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it (its PID, when it was recorded yet).
    Busy(Option<u32>),
    /// The lock file could not be opened, locked or written.
    Io(std::io::Error),
}

impl LockError {
    /// The error as b9 reports it: `another b9 (pid N) is writing WHAT`.
    pub fn describe(&self, path: &Path, what: &Path) -> String {
        match self {
            LockError::Busy(Some(pid)) => {
                format!("another b9 (pid {pid}) is writing {}", what.display())
            }
            LockError::Busy(None) => format!("another b9 is writing {}", what.display()),
            LockError::Io(e) => format!("cannot lock {}: {e}", path.display()),
        }
    }
}

impl OwnerLock {
    /// Takes the lock at `path` (creating the file and its directory), waiting
    /// for another holder when `wait`, else failing with [`LockError::Busy`].
    /// Records this process's PID and `note`.
    pub fn acquire(path: &Path, wait: bool, note: &str) -> Result<OwnerLock, LockError> {
        loop {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(LockError::Io)?;
            }
            let file = open(path).map_err(LockError::Io)?;
            let mut lock = OwnerLock {
                file,
                path: path.to_path_buf(),
                remove: false,
            };
            if !lock.lock(wait)? {
                continue;
            }
            lock.remove = true;
            lock.record(note).map_err(LockError::Io)?;
            return Ok(lock);
        }
    }

    /// Takes an existing lock file without waiting; `Ok(None)` when it is
    /// gone or held. The previous holder's record stays (see
    /// [`Self::record_of`]), also when this lock is released.
    pub fn take_existing(path: &Path) -> Result<Option<OwnerLock>, LockError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LockError::Io(e)),
        };
        let lock = OwnerLock {
            file,
            path: path.to_path_buf(),
            remove: false,
        };
        match lock.lock(false) {
            Ok(true) => Ok(Some(lock)),
            Ok(false) | Err(LockError::Busy(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Releases the lock but leaves the file and its record.
    pub fn release_keeping_record(mut self) {
        self.remove = false;
    }

    /// The PID and note the last holder recorded.
    pub fn record_of(&self) -> Option<(u32, String)> {
        let mut text = String::new();
        (&self.file).rewind().ok()?;
        (&self.file).read_to_string(&mut text).ok()?;
        parse_record(&text)
    }

    /// Locks the open file; `Ok(false)` when the path no longer names it
    /// (its holder removed it meanwhile: try again).
    fn lock(&self, wait: bool) -> Result<bool, LockError> {
        if wait {
            self.file.lock().map_err(LockError::Io)?;
        } else {
            match self.file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Busy(holder(&self.file)));
                }
                Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
            }
        }
        Ok(self.names_this_file())
    }

    fn names_this_file(&self) -> bool {
        match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }

    fn record(&self, note: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        (&self.file).rewind()?;
        (&self.file).write_all(format!("{} {note}\n", std::process::id()).as_bytes())
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        if self.remove && self.names_this_file() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `PID NOTE` as written by [`OwnerLock::acquire`].
fn parse_record(text: &str) -> Option<(u32, String)> {
    let line = text.lines().next()?;
    let (pid, note) = line.split_once(' ').unwrap_or((line, ""));
    Some((pid.parse().ok()?, note.to_string()))
}

/// The PID recorded in a held lock file; a holder that has just taken
/// the lock may not have written it yet, so this looks a few times.
fn holder(file: &File) -> Option<u32> {
    for _ in 0..20 {
        let mut text = String::new();
        let mut f = file;
        if f.rewind().is_ok() && f.read_to_string(&mut text).is_ok() {
            if let Some((pid, _)) = parse_record(&text) {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_holder_and_is_removed_on_release() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/.x.b9-lock");
        let lock = OwnerLock::acquire(&path, false, "writing").unwrap();
        match OwnerLock::acquire(&path, false, "other") {
            Err(LockError::Busy(Some(pid))) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        assert!(OwnerLock::take_existing(&path).unwrap().is_none());
        drop(lock);
        assert!(!path.exists());
        assert!(OwnerLock::take_existing(&path).unwrap().is_none());
    }

    #[test]
    fn an_inspected_lock_file_keeps_its_record() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(".owner");
        std::fs::write(&path, "4242 remove\n").unwrap();
        let taken = OwnerLock::take_existing(&path).unwrap().unwrap();
        assert_eq!(taken.record_of(), Some((4242, "remove".to_string())));
        drop(taken);
        assert!(path.exists());
    }
}
