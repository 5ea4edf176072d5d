//! The capabilities every image format offers: random reads with a map of
//! where data is, and sequential writing of a new image.

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

    /// Completes the image (tables, footers) and flushes it to disk.
    fn finish(self: Box<Self>) -> Result<(), DiskError>;
}

/// Settings of a new image that must not depend on the clock when builds
/// are to be reproducible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Time stamp (UNIX seconds) for any time field, and seed for ids.
    pub timestamp: u64,
}
