//! Checkpoints: the job's disk file systems made consistent while the
//! host keeps their state (docs/PROTOCOL.md#checkpoints). Everything is
//! synced; a file system with a journal is then consistent as after a
//! power cut (its journal is replayed when the state is mounted again),
//! one without is frozen (`FIFREEZE`) until the host is done, so nothing
//! writes into it meanwhile. Freezing a journaled one too would flush its
//! journal: a clean file system, at several times the cost under TCG.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use b9_protocol::agent::{ToAgent, ToHost};

use crate::port::{log, Sender};
use crate::sys;

/// `_IOWR('X', 119, int)`: freeze the file system of an open directory.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
/// `_IOWR('X', 120, int)`: thaw it.
const FITHAW: libc::c_ulong = 0xC004_5878;

/// A mounted disk file system of the job.
pub struct Target {
    /// Its mount point.
    pub path: PathBuf,
    /// It has a journal (ext4's usual case).
    pub journaled: bool,
}

impl Target {
    /// The file system of the block device `dev` mounted at `path`; it is
    /// journaled when jbd2 lists the device (`/proc/fs/jbd2/<dev>-8`).
    pub fn new(path: PathBuf, dev: &Path) -> Target {
        let name = dev.file_name().unwrap_or_default().to_string_lossy();
        let journaled = Path::new("/proc/fs/jbd2")
            .join(format!("{name}-8"))
            .exists();
        Target { path, journaled }
    }
}

/// Pauses after command `index`: syncs, freezes the `targets` without a
/// journal, reports [`ToHost::Paused`], waits for [`ToAgent::Continue`] on
/// `host`, thaws.
pub fn checkpoint(
    index: usize,
    targets: &[Target],
    sender: &Sender,
    host: &Receiver<ToAgent>,
) -> Result<(), String> {
    sys::sync();
    let mut frozen = Vec::new();
    let result = targets
        .iter()
        .filter(|t| !t.journaled)
        .map(|t| &t.path)
        .try_for_each(|t| {
            let dir = freeze(t).map_err(|e| format!("cannot freeze {}: {e}", t.display()))?;
            frozen.push((dir, t.clone()));
            Ok(())
        })
        .and_then(|()| {
            sender
                .send(&ToHost::Paused { index })
                .map_err(|e| format!("cannot report the checkpoint: {e}"))
        })
        .and_then(|()| match host.recv() {
            Ok(ToAgent::Continue) => Ok(()),
            Ok(other) => Err(format!("expected continue, got {other:?}")),
            Err(_) => Err("the host went away during a checkpoint".into()),
        });
    for (dir, t) in frozen.iter().rev() {
        // SAFETY: FITHAW takes no argument memory; `dir` is an open directory.
        if let Err(e) = sys::check(unsafe { libc::ioctl(dir.as_raw_fd(), FITHAW, 0) }) {
            log(format!("cannot thaw {}: {e}", t.display()));
        }
    }
    result
}

/// Freezes the file system mounted at `path`; the open directory is
/// returned for the thaw.
fn freeze(path: &Path) -> io::Result<File> {
    let dir = File::open(path)?;
    // SAFETY: FIFREEZE takes no argument memory; `dir` is an open directory.
    sys::check(unsafe { libc::ioctl(dir.as_raw_fd(), FIFREEZE, 0) })?;
    Ok(dir)
}
