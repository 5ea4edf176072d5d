//! Atomic outputs: every output is written under a temporary name next to
//! its destination and renamed into place only when its artifact succeeded.
//!
//! b9 replaces only what it made (rules in `docs/OUTPUTS.md`): a file
//! output replaces nothing but a regular file; a directory output replaces
//! only a directory b9 wrote there before, as recorded in the marker
//! `.NAME.b9-output` beside it (the directory's device and inode and every
//! entry b9 wrote). While an output is staged, the lock file
//! `.NAME.b9-lock` beside it names the b9 writing it; a second b9 fails at
//! once. Temporaries of killed b9 processes next to an output are removed
//! when it is staged again.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::lock::OwnerLock;
use crate::pipeline::error::BuildError;

/// An output written under a temporary name, waiting for its artifact to succeed.
#[derive(Debug)]
pub struct Staged {
    /// Where it was written.
    pub tmp: PathBuf,
    /// Where it goes.
    pub target: PathBuf,
    /// Whether it is a directory (replaced whole).
    directory: bool,
    /// Held until the output is committed or discarded.
    _lock: OwnerLock,
}

/// What marks an old directory output moved aside while it is replaced.
const OLD_MARK: &str = ".b9-old-";
/// What ends the name of an output's lock file.
const LOCK_SUFFIX: &str = ".b9-lock";
/// The first line of a directory output's marker.
const MARKER_HEADER: &str = "b9 output directory";

/// Stages the file output `target`: see [`stage_dir`].
pub fn stage(target: &Path) -> Result<Staged, BuildError> {
    staged(target, false)
}

/// Stages the directory output `target`: creates its parent, removes
/// temporaries of killed b9 processes there, locks the output (another b9
/// writing it is an error) and checks that whatever is at `target` may be
/// replaced. Returns the temporary path to write.
pub fn stage_dir(target: &Path) -> Result<Staged, BuildError> {
    staged(target, true)
}

fn staged(target: &Path, directory: bool) -> Result<Staged, BuildError> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(BuildError::io("create", parent))?;
    // Checked before the lock is taken too: a refused destination gets no lock file.
    replaceable(target, directory)?;
    // Old copies and locks of killed b9 processes; `staging_path` sweeps
    // their temporaries.
    if crate::stale::first_sweep(parent, OLD_MARK) {
        crate::stale::sweep(parent, |name| crate::stale::pid_after(name, ".", OLD_MARK));
        sweep_locks(parent);
    }
    let lock_path = beside(target, LOCK_SUFFIX);
    let lock =
        OwnerLock::acquire(&lock_path, false, "writing").map_err(|error| BuildError::Lock {
            error,
            lock: lock_path.clone(),
            what: target.to_path_buf(),
        })?;
    replaceable(target, directory)?;
    let tmp = crate::disk::capability::staging_path(target);
    discard_path(&tmp);
    Ok(Staged {
        tmp,
        target: target.to_path_buf(),
        directory,
        _lock: lock,
    })
}

/// Removes the output lock files in `dir` that no process holds (their
/// writer was killed).
fn sweep_locks(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(LOCK_SUFFIX)) {
            continue;
        }
        if !e
            .metadata()
            .is_ok_and(|m| m.is_file() && crate::stale::is_mine(&m))
        {
            continue;
        }
        if let Ok(Some(_free)) = OwnerLock::take_existing(&e.path()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// `.NAME<suffix>` beside `target`.
fn beside(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{suffix}"))
}

/// Whether b9 may replace what is at `target`: nothing, a regular file
/// (file outputs), or b9's own directory output (directory outputs).
fn replaceable(target: &Path, directory: bool) -> Result<(), BuildError> {
    let meta = match fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BuildError::io("inspect", target)(e)),
    };
    let t = meta.file_type();
    let ok = if directory {
        t.is_dir() && made_by_b9(target, &meta)
    } else {
        t.is_file()
    };
    if ok {
        return Ok(());
    }
    let what = if t.is_symlink() {
        " (a symbolic link)"
    } else if t.is_dir() {
        ""
    } else if !t.is_file() {
        " (not a regular file)"
    } else {
        " (a file where b9 writes a directory)"
    };
    Err(BuildError::NotReplaceable {
        path: target.to_path_buf(),
        what,
    })
}

/// Whether the directory `dir` is b9's output: its marker names this
/// directory and every entry in it.
fn made_by_b9(dir: &Path, meta: &fs::Metadata) -> bool {
    let Ok(text) = fs::read_to_string(beside(dir, ".b9-output")) else {
        return false;
    };
    let mut parts = text.split('\0');
    let header = format!("{MARKER_HEADER}\n{} {}\n", meta.dev(), meta.ino());
    if parts.next() != Some(header.as_str()) {
        return false;
    }
    let listed: HashSet<&str> = parts.collect();
    entries(dir).is_some_and(|found| found.iter().all(|e| listed.contains(e.as_str())))
}

/// Every entry under `dir`, as paths relative to it; `None` when unreadable.
fn entries(dir: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in fs::read_dir(dir.join(&rel)).ok()? {
            let e = e.ok()?;
            let path = rel.join(e.file_name());
            if e.file_type().ok()?.is_dir() {
                todo.push(path.clone());
            }
            out.push(path.to_str()?.to_string());
        }
    }
    Some(out)
}

/// Records that the directory `dir` (about to become `target`) is b9's output.
fn mark(dir: &Path, target: &Path) -> Result<(), BuildError> {
    let meta = fs::metadata(dir).map_err(BuildError::io("inspect", dir))?;
    let list = entries(dir).ok_or_else(|| BuildError::Unlisted(dir.to_path_buf()))?;
    let marker = beside(target, ".b9-output");
    let tmp = crate::disk::capability::staging_path(&marker);
    let text = format!(
        "{MARKER_HEADER}\n{} {}\n{}",
        meta.dev(),
        meta.ino(),
        list.iter().map(|e| format!("\0{e}")).collect::<String>()
    );
    fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| fs::rename(&tmp, &marker))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            BuildError::io("write", &marker)(e)
        })
}

/// Moves every staged output into place. A directory replaces the old one
/// whole (the old one is moved aside first, then removed); what is at a
/// destination is checked again first.
pub fn commit(staged: Vec<Staged>) -> Result<(), BuildError> {
    let mut rest = staged.into_iter();
    let result = rest.by_ref().try_for_each(|s| {
        let result = replaceable(&s.target, s.directory).and_then(|()| commit_one(&s));
        if result.is_err() {
            discard_path(&s.tmp);
        }
        result
    });
    discard(rest.collect());
    result
}

fn commit_one(s: &Staged) -> Result<(), BuildError> {
    let into_place = |e| BuildError::IntoPlace {
        path: s.target.clone(),
        source: e,
    };
    if !s.directory {
        return crate::replace::replace_file(&s.tmp, &s.target).map_err(into_place);
    }
    mark(&s.tmp, &s.target)?;
    if fs::symlink_metadata(&s.target).is_err() {
        return fs::rename(&s.tmp, &s.target).map_err(into_place);
    }
    let old = beside(&s.target, &format!("{OLD_MARK}{}", std::process::id()));
    fs::rename(&s.target, &old).map_err(BuildError::io("replace", &s.target))?;
    if let Err(e) = fs::rename(&s.tmp, &s.target) {
        let _ = fs::rename(&old, &s.target);
        return Err(into_place(e));
    }
    discard_path(&old);
    Ok(())
}

/// Removes staged outputs of a failed artifact.
pub fn discard(staged: Vec<Staged>) {
    for s in staged {
        discard_path(&s.tmp);
    }
}

fn discard_path(p: &Path) {
    let _ = crate::stale::remove_entry(p);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_files_and_own_directories_whole() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("out/a.iso");
        let s = stage(&file).unwrap();
        fs::write(&s.tmp, "new").unwrap();
        commit(vec![s]).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");

        let dir = d.path().join("out/a");
        for round in 0..2 {
            let s = stage_dir(&dir).unwrap();
            fs::create_dir_all(s.tmp.join("sub")).unwrap();
            fs::write(s.tmp.join("sub/meta-data"), format!("{round}")).unwrap();
            commit(vec![s]).unwrap();
            assert_eq!(
                fs::read_to_string(dir.join("sub/meta-data")).unwrap(),
                format!("{round}")
            );
        }
        let mut left: Vec<_> = fs::read_dir(d.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".a.b9-output", "a", "a.iso"]);
    }

    #[test]
    fn what_b9_did_not_make_is_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("docs");
        fs::create_dir(&dir).unwrap();
        let e = stage_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("docs exists and was not made by b9"), "{e}");
        assert!(stage(&dir).is_err());
        let link = d.path().join("link.iso");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert!(stage(&link)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));

        // b9's directory with a file someone else added.
        let own = d.path().join("seed");
        let s = stage_dir(&own).unwrap();
        fs::create_dir(&s.tmp).unwrap();
        commit(vec![s]).unwrap();
        stage_dir(&own).unwrap();
        fs::write(own.join("notes"), "mine").unwrap();
        assert!(stage_dir(&own).is_err());
    }

    #[test]
    fn a_second_writer_fails_at_once() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("x.vfat");
        let first = stage(&file).unwrap();
        let e = stage(&file).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "another b9 (pid {}) is writing {}",
                std::process::id(),
                file.display()
            )
        );
        discard(vec![first]);
        discard(vec![stage(&file).unwrap()]);
    }

    #[test]
    fn lock_files_of_killed_writers_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let dead = d.path().join(".old.iso.b9-lock");
        fs::write(&dead, "1 writing\n").unwrap();
        let held = stage(&d.path().join("held.iso")).unwrap();
        discard(vec![stage(&d.path().join("x.iso")).unwrap()]);
        assert!(!dead.exists());
        assert!(d.path().join(".held.iso.b9-lock").exists());
        discard(vec![held]);
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
