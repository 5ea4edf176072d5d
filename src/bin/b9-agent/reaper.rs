//! Reaping children as PID 1: one thread calls `waitpid(-1)` for every
//! child (orphans included) and files the statuses; whoever forked a child
//! collects its status here instead of calling `waitpid` itself.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

struct Table {
    exited: Mutex<HashMap<libc::pid_t, libc::c_int>>,
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
                m.insert(pid, status);
            }
            t.changed.notify_all();
        } else {
            // No children (ECHILD) or interrupted: look again shortly.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The wait status of `pid` if it has exited (collected once).
pub fn try_take(pid: libc::pid_t) -> Option<libc::c_int> {
    table().exited.lock().ok()?.remove(&pid)
}

/// Blocks until `pid` exits; returns its wait status.
pub fn wait(pid: libc::pid_t) -> libc::c_int {
    let t = table();
    let Ok(mut m) = t.exited.lock() else {
        return -1;
    };
    loop {
        if let Some(s) = m.remove(&pid) {
            return s;
        }
        match t.changed.wait_timeout(m, Duration::from_millis(200)) {
            Ok((g, _)) => m = g,
            Err(_) => return -1,
        }
    }
}
