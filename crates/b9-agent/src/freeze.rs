//! Checkpoints: the job's disk file systems frozen (`FIFREEZE`) while the
//! host keeps their state, then thawed (docs/PROTOCOL.md#checkpoints). A
//! frozen ext4 has its journal flushed: the disk holds a clean file system.

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

/// Pauses after command `index`: freezes `targets` (mount points), reports
/// [`ToHost::Paused`], waits for [`ToAgent::Continue`] on `host`, thaws.
pub fn checkpoint(
    index: usize,
    targets: &[PathBuf],
    sender: &Sender,
    host: &Receiver<ToAgent>,
) -> Result<(), String> {
    sys::sync();
    let mut frozen = Vec::new();
    let result = targets
        .iter()
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
