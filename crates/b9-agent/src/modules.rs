//! Kernel modules: the appliance's `/b9/modules.order` loaded on as many
//! threads as the guest has CPUs (at most four). Each line is
//! `<name>.ko[: <dep>.ko ...]`: a module is loaded once those it names are;
//! the others load side by side (module loading is CPU work, and under TCG
//! it is a third of the boot).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::port::log;

/// The list of modules to load, dependencies first.
const MODULES_ORDER: &str = "/b9/modules.order";
/// Where the module files are.
const MODULES_DIR: &str = "/b9/modules";
/// The most loader threads.
const MAX_THREADS: usize = 4;

/// One module of the list.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// The file name (`ext4.ko`).
    file: String,
    /// The indices of the earlier entries it must be loaded after.
    after: Vec<usize>,
}

/// Parses the list; a name after `:` that is no earlier entry is ignored
/// (built into the kernel, or a cycle the kernel would refuse anyway).
fn parse(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (file, deps) = line.split_once(':').unwrap_or((line, ""));
        let after = deps
            .split_whitespace()
            .filter_map(|d| entries.iter().position(|e| e.file == d))
            .collect();
        entries.push(Entry {
            file: file.trim().to_string(),
            after,
        });
    }
    entries
}

/// What a loader thread does next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Load this entry.
    Load(usize),
    /// Wait for a module being loaded.
    Wait,
    /// Every entry is taken.
    Finished,
}

/// Which entries are taken by a thread and which are loaded (or failed).
struct Progress {
    taken: Vec<bool>,
    done: Vec<bool>,
}

impl Progress {
    /// The first untaken entry whose predecessors are done, in list order.
    fn next(&mut self, entries: &[Entry]) -> Next {
        let ready = (0..entries.len())
            .find(|&i| !self.taken[i] && entries[i].after.iter().all(|&d| self.done[d]));
        match ready {
            Some(i) => {
                self.taken[i] = true;
                Next::Load(i)
            }
            None if self.taken.iter().all(|t| *t) => Next::Finished,
            None => Next::Wait,
        }
    }
}

/// Loads the modules of `/b9/modules.order`; failures are logged, not fatal
/// (a module may be built into the kernel).
pub fn load_all() {
    let Ok(text) = std::fs::read_to_string(MODULES_ORDER) else {
        log(format!("no {MODULES_ORDER}: loading no modules"));
        return;
    };
    let entries = parse(&text);
    let progress = Mutex::new(Progress {
        taken: vec![false; entries.len()],
        done: vec![false; entries.len()],
    });
    let changed = Condvar::new();
    let loaded = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_THREADS);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| worker(&entries, &progress, &changed, &loaded));
        }
    });
    log(format!(
        "loaded {} modules on {threads} thread(s)",
        loaded.load(Ordering::Relaxed)
    ));
}

/// One loader thread: takes ready entries until none is left.
fn worker(entries: &[Entry], progress: &Mutex<Progress>, changed: &Condvar, loaded: &AtomicUsize) {
    let Ok(mut p) = progress.lock() else { return };
    loop {
        match p.next(entries) {
            Next::Finished => return,
            Next::Wait => match changed.wait(p) {
                Ok(guard) => p = guard,
                Err(_) => return,
            },
            Next::Load(i) => {
                drop(p);
                let file = &entries[i].file;
                match load(&module_path(file)) {
                    Ok(()) => {
                        loaded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => log(format!("module {file}: {e}")),
                }
                let Ok(guard) = progress.lock() else { return };
                p = guard;
                p.done[i] = true;
                changed.notify_all();
            }
        }
    }
}

/// The file of module `name` (`ext4` or `ext4.ko`).
fn module_path(name: &str) -> PathBuf {
    let file = if name.ends_with(".ko") {
        name.to_string()
    } else {
        format!("{name}.ko")
    };
    Path::new(MODULES_DIR).join(file)
}

/// `finit_module` of one file; already loaded is fine.
fn load(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    let params = c"";
    // SAFETY: a valid fd and an empty parameter string.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            f.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths() {
        assert_eq!(module_path("ext4"), Path::new("/b9/modules/ext4.ko"));
        assert_eq!(module_path("9p.ko"), Path::new("/b9/modules/9p.ko"));
    }

    #[test]
    fn lines_name_earlier_entries_only() {
        let e = parse("virtio.ko\nvirtio_blk.ko: virtio.ko\n\njbd2.ko\next4.ko: jbd2.ko crc16.ko later.ko\nlater.ko\n");
        assert_eq!(
            e,
            [
                Entry {
                    file: "virtio.ko".into(),
                    after: vec![]
                },
                Entry {
                    file: "virtio_blk.ko".into(),
                    after: vec![0]
                },
                Entry {
                    file: "jbd2.ko".into(),
                    after: vec![]
                },
                Entry {
                    file: "ext4.ko".into(),
                    after: vec![2]
                },
                Entry {
                    file: "later.ko".into(),
                    after: vec![]
                },
            ]
        );
    }

    #[test]
    fn a_module_waits_for_those_it_names_and_others_go_ahead() {
        let entries = parse("a.ko\nb.ko: a.ko\nc.ko\n");
        let mut p = Progress {
            taken: vec![false; 3],
            done: vec![false; 3],
        };
        assert_eq!(p.next(&entries), Next::Load(0));
        // b waits for a; c is independent.
        assert_eq!(p.next(&entries), Next::Load(2));
        assert_eq!(p.next(&entries), Next::Wait);
        p.done[0] = true;
        assert_eq!(p.next(&entries), Next::Load(1));
        assert_eq!(p.next(&entries), Next::Finished);
    }
}
