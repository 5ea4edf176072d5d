//! The capabilities every image format offers: random reads with a map of
//! where data is, and sequential writing of a new image.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::disk::error::DiskError;

/// A disk image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Plain bytes.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// VMware virtual disk (monolithicSparse or streamOptimized).
    Vmdk,
}

impl Format {
    /// The file extension and name of the format (`raw`, `qcow2`, `vmdk`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
        }
    }
}

/// A range of the virtual disk: `start..start + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Read access to an image of any format.
pub trait ImageReader: Send + Sync {
    /// The virtual size in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the virtual disk's bytes at `offset`; past the end
    /// and in unallocated areas it reads zeros.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError>;

    /// The extents that may hold non-zero data, sorted and disjoint; every
    /// byte outside them reads as zero. A format that cannot tell returns
    /// one extent covering the whole disk.
    fn data_extents(&self) -> Result<Vec<Extent>, DiskError>;
}

/// Writes a new image front to back: `write_at` offsets never go backwards
/// and never overlap; bytes never written read as zeros.
pub trait ImageWriter: Send {
    /// Writes `data` at virtual offset `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError>;

    /// Completes the image (tables, footers, headers). Like `qemu-img
    /// convert`, it leaves the data to the kernel's write-back rather than
    /// forcing it to stable storage.
    fn finish(self: Box<Self>) -> Result<(), DiskError>;
}

/// Settings of a new image that must not depend on the clock when builds
/// are to be reproducible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Time stamp (UNIX seconds) for any time field, and seed for ids.
    pub timestamp: u64,
}

/// What marks the temporary name of an output being written.
pub const STAGING_MARK: &str = ".b9-tmp-";

/// A fresh temporary name for `target`, beside it (same file system):
/// `.<name>.b9-tmp-<pid>.<n>`, unique per process and per call, so two
/// writers of one output (in one process or two) never share a file; the
/// last rename wins. Leftovers in that directory of b9 processes that are
/// gone (killed while writing) are removed first (once per directory and
/// process: [`crate::stale::first_sweep`]).
pub fn staging_path(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if crate::stale::first_sweep(dir, STAGING_MARK) {
        crate::stale::sweep(dir, |n| crate::stale::pid_after(n, ".", STAGING_MARK));
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}{STAGING_MARK}{}.{n}", std::process::id()))
}

/// The name a file will have once published: for a staging path the
/// target's name, else the file's own name. Formats that record their own
/// file name (vmdk descriptors) use it.
pub fn published_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    match name
        .strip_prefix('.')
        .and_then(|n| n.rsplit_once(STAGING_MARK))
    {
        Some((target, id)) if id.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            Some(target.to_string())
        }
        _ => Some(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_publish_as_the_target() {
        let t = Path::new("/out/disk.vmdk");
        let s = staging_path(t);
        assert_eq!(s.parent(), t.parent());
        assert_eq!(published_name(&s).as_deref(), Some("disk.vmdk"));
        assert_ne!(staging_path(t), s, "a fresh name per call");
        assert_eq!(published_name(t).as_deref(), Some("disk.vmdk"));
        assert_eq!(
            published_name(Path::new("/x/.hidden.vmdk")).as_deref(),
            Some(".hidden.vmdk")
        );
    }
}
