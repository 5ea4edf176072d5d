//! Reaping children as PID 1: one thread calls `waitpid(-1)` for every
//! child (orphans included) and files the statuses of the children the
//! agent forked through [`fork_watched`]; whoever forked a child collects
//! its status here instead of calling `waitpid` itself. Orphans' statuses
//! are dropped, so a reused pid never picks up a stale status.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

struct Table {
    /// Watched pid -> its status once it has exited.
    exited: Mutex<HashMap<libc::pid_t, Option<libc::c_int>>>,
    changed: Condvar,
}

static TABLE: OnceLock<Table> = OnceLock::new();

fn table() -> &'static Table {
    TABLE.get_or_init(|| Table {
        exited: Mutex::new(HashMap::new()),
        changed: Condvar::new(),
    })
}

/// Starts the reaper thread.
pub fn start() {
    let _ = table();
    let spawned = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(reap_forever);
    if let Err(e) = spawned {
        crate::port::console(&format!("cannot start the reaper: {e}"));
    }
}

fn reap_forever() {
    let t = table();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            if let Ok(mut m) = t.exited.lock() {
                if let Some(slot) = m.get_mut(&pid) {
                    *slot = Some(status);
                }
            }
            t.changed.notify_all();
        } else {
            // No children (ECHILD) or interrupted: look again shortly.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Forks with `fork` (which returns the child's pid in the parent) and
/// watches the child. The table stays locked meanwhile, so the reaper
/// cannot collect the child before it is watched.
pub fn fork_watched(
    fork: impl FnOnce() -> std::io::Result<libc::pid_t>,
) -> std::io::Result<libc::pid_t> {
    let t = table();
    let mut m = t
        .exited
        .lock()
        .map_err(|_| std::io::Error::other("reaper table poisoned"))?;
    let pid = fork()?;
    m.insert(pid, None);
    Ok(pid)
}

/// The wait status of `pid` if it has exited (collected once).
pub fn try_take(pid: libc::pid_t) -> Option<libc::c_int> {
    take(&mut *table().exited.lock().ok()?, pid)
}

/// Removes and returns the status of an exited watched `pid`.
fn take(
    m: &mut HashMap<libc::pid_t, Option<libc::c_int>>,
    pid: libc::pid_t,
) -> Option<libc::c_int> {
    let status = (*m.get(&pid)?)?;
    m.remove(&pid);
    Some(status)
}

/// Blocks until `pid` exits; returns its wait status.
pub fn wait(pid: libc::pid_t) -> libc::c_int {
    let t = table();
    let Ok(mut m) = t.exited.lock() else {
        return -1;
    };
    loop {
        if let Some(s) = take(&mut m, pid) {
            return s;
        }
        if !m.contains_key(&pid) {
            return -1;
        }
        match t.changed.wait_timeout(m, Duration::from_millis(200)) {
            Ok((g, _)) => m = g,
            Err(_) => return -1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exited_watched_pids_are_taken() {
        let mut m = HashMap::new();
        m.insert(7, None);
        m.insert(8, Some(256));
        assert_eq!(take(&mut m, 7), None);
        assert_eq!(take(&mut m, 9), None);
        assert_eq!(take(&mut m, 8), Some(256));
        assert_eq!(take(&mut m, 8), None);
        assert!(m.contains_key(&7));
    }
}
