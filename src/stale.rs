//! Leftovers of killed b9 processes. Temporary names carry the PID of the
//! process that made them (`b9.PID.N` run directories, `.NAME.tmp.PID.N`
//! cache files, `.NAME.b9-pull-PID...` downloads, `.NAME.b9-tmp-PID.N`
//! outputs of converts, creates and media); a later b9 removes those
//! whose process is gone. Only the calling user's entries are touched.
//! Build directories record their owner inside (`build::workdir`).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::process::{test_kill_process, Pid};

/// Whether no process `pid` exists (another user's process exists too).
pub fn is_gone(pid: i32) -> bool {
    Pid::from_raw(pid)
        .is_some_and(|pid| matches!(test_kill_process(pid), Err(rustix::io::Errno::SRCH)))
}

/// Removes the entries (files or directories) of `dir` owned by the
/// calling user whose name `pid_of` maps to a process that is gone.
pub fn sweep(dir: &Path, pid_of: impl Fn(&str) -> Option<i32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(&pid_of) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !is_mine(&meta) || !is_gone(pid) {
            continue;
        }
        let path = entry.path();
        tracing::debug!("removing {} (left by b9 process {pid})", path.display());
        let _ = remove_entry(&path);
    }
}

/// Whether this process has not yet swept `dir` for the leftovers `what`
/// names (and notes that it now does). Leftovers of gone processes are
/// removed once per directory and process, not before every output: a
/// build of 1,000 outputs in one directory read it 3,000 times. What a
/// process killed later leaves there, the next b9 removes.
pub fn first_sweep(dir: &Path, what: &'static str) -> bool {
    static SWEPT: OnceLock<Mutex<HashSet<(PathBuf, &'static str)>>> = OnceLock::new();
    let swept = SWEPT.get_or_init(Default::default);
    match swept.lock() {
        Ok(mut set) => set.insert((dir.to_path_buf(), what)),
        Err(_) => true,
    }
}

/// Removes `path`: a directory with everything in it, else the file (a
/// symbolic link itself, never what it points to).
pub fn remove_entry(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Whether the calling user owns the file.
pub fn is_mine(meta: &std::fs::Metadata) -> bool {
    meta.uid() == rustix::process::getuid().as_raw()
}

/// The PID in `name`, which starts with `prefix`: the digits after the
/// first `marker`, up to the next `.` (or the end).
pub fn pid_after(name: &str, prefix: &str, marker: &str) -> Option<i32> {
    if !name.starts_with(prefix) {
        return None;
    }
    let (_, rest) = name.split_once(marker)?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_is_swept_once_per_kind_of_leftover() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        assert!(first_sweep(&a, ".x-"));
        assert!(!first_sweep(&a, ".x-"), "a second output in `a`: no sweep");
        assert!(first_sweep(&a, ".y-"), "another kind of leftover");
        assert!(first_sweep(&b, ".x-"), "another directory");
    }

    #[test]
    fn pids_are_found_after_their_marker() {
        assert_eq!(pid_after("b9.123.0", "b9.", "b9."), Some(123));
        assert_eq!(
            pid_after(".a_1.raw.b9-pull-77.b9-part-x1", ".", ".b9-pull-"),
            Some(77)
        );
        assert_eq!(pid_after(".a_1.raw.b9-pull-77", ".", ".b9-pull-"), Some(77));
        assert_eq!(pid_after("b9.x.0", "b9.", "b9."), None);
        assert_eq!(pid_after("xb9.1.0", "b9.", "b9."), None);
    }

    #[test]
    fn only_entries_of_gone_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        assert!(is_gone(gone as i32));
        assert!(!is_gone(std::process::id() as i32));
        let dead = dir.path().join(format!("b9.{gone}.0"));
        let alive = dir.path().join(format!("b9.{}.0", std::process::id()));
        let file = dir.path().join(format!("b9.{gone}.1"));
        let unrelated = dir.path().join("keep");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("agent.sock"), "").unwrap();
        std::fs::create_dir(&alive).unwrap();
        std::fs::write(&file, "").unwrap();
        std::fs::write(&unrelated, "").unwrap();
        sweep(dir.path(), |n| pid_after(n, "b9.", "b9."));
        assert!(!dead.exists());
        assert!(!file.exists());
        assert!(alive.exists());
        assert!(unrelated.exists());
    }
}
