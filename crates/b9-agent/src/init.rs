//! PID 1 duties: the initramfs's own mounts, the console, kernel modules,
//! and powering off.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::Path;

use crate::port::{console, log};
use crate::sys;

/// The list of modules to load, in order.
const MODULES_ORDER: &str = "/b9/modules.order";
/// Where the module files are.
const MODULES_DIR: &str = "/b9/modules";

/// Mounts proc, sysfs, devtmpfs (and devpts) and points stdio at the console.
pub fn early() {
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o022) };
    let mounts = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ];
    let mut failed = Vec::new();
    for (src, dir, fstype) in mounts {
        let _ = sys::mkdir_p(Path::new(dir));
        if let Err(e) = sys::mount(src, Path::new(dir), fstype, 0, "") {
            failed.push(e);
        }
    }
    attach_console();
    for e in failed {
        console(&format!("{e}"));
    }
}

/// Makes fds 0 (/dev/null), 1 and 2 (the console).
fn attach_console() {
    let console = ["/dev/console", "/dev/ttyS0"]
        .iter()
        .find_map(|p| OpenOptions::new().read(true).write(true).open(p).ok());
    let null = File::open("/dev/null").ok();
    if let Some(c) = console {
        let fd = c.into_raw_fd();
        // SAFETY: dup2 onto the standard descriptors; `fd` is open.
        unsafe {
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
        }
        if fd > 2 {
            // SAFETY: `fd` is ours and no longer used.
            unsafe { libc::close(fd) };
        }
    }
    if let Some(n) = null {
        // SAFETY: `n` is open for the call.
        unsafe { libc::dup2(n.as_raw_fd(), 0) };
    }
}

/// Loads the modules of `/b9/modules.order`; failures are logged, not fatal
/// (a module may be built into the kernel).
pub fn load_modules() {
    let Ok(order) = std::fs::read_to_string(MODULES_ORDER) else {
        log(format!("no {MODULES_ORDER}: loading no modules"));
        return;
    };
    let mut loaded = 0;
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match load_module(&module_path(name)) {
            Ok(()) => loaded += 1,
            Err(e) => log(format!("module {name}: {e}")),
        }
    }
    log(format!("loaded {loaded} modules"));
}

/// The file of module `name` (`ext4` or `ext4.ko`).
fn module_path(name: &str) -> std::path::PathBuf {
    let file = if name.ends_with(".ko") {
        name.to_string()
    } else {
        format!("{name}.ko")
    };
    Path::new(MODULES_DIR).join(file)
}

/// `finit_module` of one file; already loaded is fine.
fn load_module(path: &Path) -> io::Result<()> {
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

/// Syncs and powers the machine off; never returns.
pub fn power_off() -> ! {
    sys::sync();
    // SAFETY: reboot with a valid command; we are PID 1.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    // Only reached when not PID 1 (tests, manual runs).
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths() {
        assert_eq!(module_path("ext4"), Path::new("/b9/modules/ext4.ko"));
        assert_eq!(module_path("9p.ko"), Path::new("/b9/modules/9p.ko"));
    }
}
