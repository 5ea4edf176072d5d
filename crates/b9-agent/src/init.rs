//! PID 1 duties: the initramfs's own mounts, the console, and powering
//! off.

use std::fs::{File, OpenOptions};

use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::Path;

use crate::port::console;
use crate::sys;

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

/// Syncs and powers the machine off; never returns.
pub fn power_off() -> ! {
    sys::sync();
    // SAFETY: reboot with a valid command; we are PID 1.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    // Only reached when not PID 1 (tests, manual runs).
    std::process::exit(1)
}
