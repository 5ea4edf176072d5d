//! Disks by serial, the new root's mounts, and unmounting them again.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use b9_protocol::agent::{DiskMount, ShareMount};

use crate::port::log;
use crate::sys;

/// Where the job's root file system is mounted.
pub const SYSROOT: &str = "/sysroot";

/// How long to wait for all disks to appear.
const DISK_WAIT: Duration = Duration::from_secs(10);

/// The mounts made so far, unmounted in reverse order.
#[derive(Default)]
pub struct Mounts {
    stack: Vec<PathBuf>,
}

impl Mounts {
    /// Records a mount made at `target`.
    pub fn push(&mut self, target: PathBuf) {
        self.stack.push(target);
    }

    /// Unmounts everything in reverse order; a busy file system is detached
    /// lazily as a last resort. Errors name every mount that failed.
    pub fn unmount_all(&mut self) -> Result<(), String> {
        sys::sync();
        let mut failed = Vec::new();
        while let Some(t) = self.stack.pop() {
            if let Err(e) = unmount_one(&t) {
                failed.push(format!("{}: {e}", t.display()));
            }
        }
        sys::sync();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("cannot unmount {}", failed.join(", ")))
        }
    }
}

/// Unmounts `target`, retrying briefly, then lazily (logged).
fn unmount_one(target: &Path) -> io::Result<()> {
    for _ in 0..10 {
        match sys::umount(target, 0) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
    log(format!("{} is busy: detaching it lazily", target.display()));
    sys::umount(target, libc::MNT_DETACH)
}

/// Maps each serial to its `/dev/vdX`, waiting until all are present.
pub fn find_disks(serials: &[&str]) -> Result<HashMap<String, PathBuf>, String> {
    let start = Instant::now();
    loop {
        let found = scan_serials(Path::new("/sys/block"));
        let missing: Vec<&str> = serials
            .iter()
            .copied()
            .filter(|s| !found.contains_key(*s))
            .collect();
        if missing.is_empty() {
            return Ok(found);
        }
        if start.elapsed() > DISK_WAIT {
            return Err(format!(
                "no disk with serial {} (found: {})",
                missing.join(", "),
                describe(&found)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn describe(found: &HashMap<String, PathBuf>) -> String {
    let mut v: Vec<String> = found
        .iter()
        .map(|(s, d)| format!("{s}={}", d.display()))
        .collect();
    v.sort();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

/// Serial -> `/dev/<name>` for every `vd*` disk under `sys_block`.
pub fn scan_serials(sys_block: &Path) -> HashMap<String, PathBuf> {
    let Ok(dir) = std::fs::read_dir(sys_block) else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("vd") {
                return None;
            }
            let serial = std::fs::read_to_string(e.path().join("serial")).ok()?;
            let serial = serial.trim().to_string();
            (!serial.is_empty()).then(|| (serial, Path::new("/dev").join(name)))
        })
        .collect()
}

/// The host path of `mount_point` inside the new root, symbolic links
/// followed as the image sees them (never out of the root).
pub fn in_root(mount_point: &str) -> Result<PathBuf, String> {
    crate::users::resolve_partial(Path::new(SYSROOT), mount_point)
        .ok_or_else(|| format!("mount point {mount_point}: too many symbolic links"))
}

/// Mounts the job's disks in order (the first at `/`); returns where each
/// serial is mounted.
pub fn mount_disks(
    disks: &[DiskMount],
    devices: &HashMap<String, PathBuf>,
    mounts: &mut Mounts,
) -> Result<HashMap<String, PathBuf>, String> {
    match disks.first() {
        Some(d) if d.mount_point == "/" => {}
        _ => return Err("the first disk of the job must be mounted at /".into()),
    }
    let mut targets = HashMap::new();
    for d in disks {
        let dev = devices
            .get(&d.serial)
            .ok_or_else(|| format!("no disk with serial {}", d.serial))?;
        let target = in_root(&d.mount_point)?;
        sys::mkdir_p(&target).map_err(|e| e.to_string())?;
        let fstype = mount_fs(dev, &target, 0).map_err(|e| {
            format!(
                "cannot mount disk {} ({}) at {}: {e}",
                d.serial,
                dev.display(),
                d.mount_point
            )
        })?;
        mounts.push(target.clone());
        targets.insert(d.serial.clone(), target);
        log(format!(
            "mounted {} ({}, {fstype}) at {}",
            d.serial,
            dev.display(),
            d.mount_point
        ));
    }
    Ok(targets)
}

/// Mounts the disk `serial` (block device `dev`), which the job does not
/// mount, for a file-system resize: under `/run/b9-resize`, outside the new
/// root, so no command ever sees it.
pub fn mount_private(serial: &str, dev: &Path, mounts: &mut Mounts) -> Result<PathBuf, String> {
    let target = Path::new("/run/b9-resize").join(serial);
    sys::mkdir_p(&target).map_err(|e| format!("{}: {e}", target.display()))?;
    let fstype = mount_fs(dev, &target, 0).map_err(|e| {
        format!(
            "cannot mount disk {serial} ({}) for its resize: {e}",
            dev.display()
        )
    })?;
    mounts.push(target.clone());
    log(format!(
        "mounted {serial} ({}, {fstype}) for its resize",
        dev.display()
    ));
    Ok(target)
}

/// Mounts block device `dev` at `target`: ext4 first, then every block
/// file system the kernel knows. Returns the type that worked.
pub fn mount_fs(dev: &Path, target: &Path, flags: libc::c_ulong) -> io::Result<String> {
    let source = dev.to_string_lossy();
    let mut last = io::Error::other("no file system type to try");
    for fstype in fs_types() {
        match sys::mount(&source, target, &fstype, flags, "") {
            Ok(()) => return Ok(fstype),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// ext4, then the block file systems of `/proc/filesystems`.
fn fs_types() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    block_fs_types(&text)
}

/// Parses `/proc/filesystems`: ext4 first, no `nodev` types.
fn block_fs_types(text: &str) -> Vec<String> {
    let mut types = vec!["ext4".to_string()];
    for line in text.lines() {
        if line.starts_with("nodev") {
            continue;
        }
        let t = line.trim();
        if !t.is_empty() && !types.iter().any(|x| x == t) {
            types.push(t.to_string());
        }
    }
    types
}

/// Mounts the 9p shares.
pub fn mount_shares(shares: &[ShareMount], mounts: &mut Mounts) -> Result<(), String> {
    for s in shares {
        let target = in_root(&s.mount_point)?;
        sys::mkdir_p(&target).map_err(|e| e.to_string())?;
        let flags = if s.read_only { libc::MS_RDONLY } else { 0 };
        sys::mount(
            &s.tag,
            &target,
            "9p",
            flags,
            "trans=virtio,version=9p2000.L,msize=262144",
        )
        .map_err(|e| format!("cannot mount share {} at {}: {e}", s.tag, s.mount_point))?;
        mounts.push(target);
        log(format!(
            "mounted share {} at {}{}",
            s.tag,
            s.mount_point,
            if s.read_only { " (read-only)" } else { "" }
        ));
    }
    Ok(())
}

/// Mounts proc, sys, dev, dev/pts, run and tmp inside the new root.
pub fn mount_api(mounts: &mut Mounts) -> Result<(), String> {
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let table: [(&str, &str, &str, libc::c_ulong, &str); 6] = [
        ("/proc", "proc", "proc", nosuid, ""),
        ("/sys", "sysfs", "sysfs", nosuid, ""),
        ("/dev", "devtmpfs", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "gid=5,mode=620,ptmxmode=666",
        ),
        (
            "run",
            "tmpfs",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=0755",
        ),
        (
            "tmp",
            "tmpfs",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
    ];
    for (dir, src, fstype, flags, data) in table {
        let target = in_root(dir)?;
        sys::mkdir_p(&target).map_err(|e| e.to_string())?;
        sys::mount(src, &target, fstype, flags, data).map_err(|e| e.to_string())?;
        mounts.push(target);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_under_sysroot() {
        assert_eq!(in_root("/"), Ok(PathBuf::from("/sysroot")));
        assert_eq!(in_root("/b9-x/lib"), Ok(PathBuf::from("/sysroot/b9-x/lib")));
    }

    #[test]
    fn fs_types_skip_nodev_and_start_with_ext4() {
        let text = "nodev\tsysfs\nnodev\ttmpfs\n\text3\n\text2\n\text4\n\tvfat\nnodev\t9p\n";
        assert_eq!(block_fs_types(text), ["ext4", "ext3", "ext2", "vfat"]);
    }

    #[test]
    fn serials_of_vd_disks() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        for (dev, serial) in [
            ("vda", "b9d0\n"),
            ("vdb", "scratch"),
            ("sda", "x"),
            ("vdc", ""),
        ] {
            std::fs::create_dir(d.path().join(dev))?;
            std::fs::write(d.path().join(dev).join("serial"), serial)?;
        }
        let m = scan_serials(d.path());
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("b9d0"), Some(&PathBuf::from("/dev/vda")));
        assert_eq!(m.get("scratch"), Some(&PathBuf::from("/dev/vdb")));
        Ok(())
    }
}
