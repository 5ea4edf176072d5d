//! Thin, checked wrappers around the system calls the agent uses.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path (or any string) as a C string; interior NULs are an error.
pub fn cstr(s: impl AsRef<std::ffi::OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in a path"))
}

/// Turns a `-1` return value into the current `errno`.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `mount(2)`; `source` and `fstype` may be empty for remounts and binds.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let source = cstr(source)?;
    let target_c = cstr(target)?;
    let fstype = cstr(fstype)?;
    let data = cstr(data)?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    check(ret)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("mount {}: {e}", target.display())))
}

/// `umount2(2)` with `flags` (0 or `MNT_DETACH`).
pub fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: `t` is a valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

/// Flushes every file system.
pub fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::from("unknown");
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Creates `path` and its missing parents with mode 0755.
pub fn mkdir_p(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", path.display())))
}

/// A wait status as an exit code: the code, or 128 + the signal number.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137);
    }

    #[test]
    fn nul_is_an_error() {
        assert!(cstr("a\0b").is_err());
        assert!(cstr("/sysroot").is_ok());
    }
}
