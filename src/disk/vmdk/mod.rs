//! VMDK: monolithicSparse and streamOptimized, written and read in-project
//! (no crate writes VMDK; docs/IMAGES.md#vmdk).
//!
//! * [`create`] writes what `qemu-img convert -O vmdk -o adapter_type=lsilogic`
//!   writes (docs/IMAGES.md#vmdk): monolithicSparse with qemu's layout, header flags and
//!   descriptor, or a VMware-style streamOptimized stream (deflated grains
//!   with markers, grain tables and directory at the end, footer and
//!   end-of-stream marker). Output is reproducible: the CID is a hash of the
//!   size and [`CreateOptions::timestamp`], never the clock. The file name
//!   goes into the descriptor, so create the file under its final name.
//! * [`open`] reads monolithicSparse, streamOptimized (both qemu's layout with
//!   the directory in front and VMware's with a footer), and descriptor files
//!   with FLAT, SPARSE and ZERO extents (monolithicFlat, twoGbMaxExtent*).
//!   Images are hostile input: every field is checked, tables are never
//!   larger than the file, and nothing panics on bad data.

use std::path::Path;

use crate::disk::capability::{CreateOptions, ImageReader, ImageWriter};
use crate::disk::error::DiskError;

mod descriptor;
mod header;
mod reader;
mod writer;

/// Largest virtual size b9 reads or writes, in sectors (64 TiB).
pub(crate) const MAX_CAPACITY_SECTORS: u64 = 1 << 37;

/// The VMDK sub-format written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subformat {
    /// One file: header, descriptor, grain directories and tables, then
    /// uncompressed 64 KiB grains. What qemu writes by default.
    MonolithicSparse,
    /// One file, written strictly front to back: deflated grains with
    /// markers, tables and directory at the end. For OVF/OVA and vSphere.
    StreamOptimized,
}

/// Creates a new VMDK of `size` bytes at `path` (created/truncated), written
/// front to back. `size` is rounded up to whole 512-byte sectors.
pub fn create(
    path: &Path,
    size: u64,
    subformat: Subformat,
    opts: &CreateOptions,
) -> Result<Box<dyn ImageWriter>, DiskError> {
    writer::create(path, size, subformat, opts)
}

/// Opens a VMDK (monolithicSparse or streamOptimized; also a monolithicFlat
/// or twoGbMaxExtent descriptor file with FLAT, SPARSE and ZERO extents) for
/// reading. Delta disks (with a parent) are refused as unsupported; extent
/// files must lie in the descriptor's directory.
pub fn open(path: &Path) -> Result<Box<dyn ImageReader>, DiskError> {
    Ok(Box::new(reader::open(path)?))
}

/// The sub-format of an existing vmdk: streamOptimized when its grains are
/// compressed, else monolithicSparse (also for flat descriptors, which b9
/// rewrites as monolithicSparse).
pub fn subformat_of(path: &Path) -> Result<Subformat, DiskError> {
    let file = crate::disk::gate::open_regular(path)?;
    let mut head = [0u8; 512];
    crate::disk::raw::read_file_at(&file, path, &mut head, 0)?;
    // compressAlgorithm (u16 LE at byte 77): 1 = deflate.
    let compressed = head.starts_with(&header::MAGIC) && crate::bytes::le_u16(&head, 77) == Some(1);
    Ok(if compressed {
        Subformat::StreamOptimized
    } else {
        Subformat::MonolithicSparse
    })
}

/// True if the first bytes are a VMDK sparse-extent header ("KDMV") or a text
/// descriptor ("# Disk DescriptorFile").
pub fn sniff(head: &[u8]) -> bool {
    head.starts_with(&header::MAGIC) || head.starts_with(reader::DESCRIPTOR_SIGNATURE)
}

#[cfg(test)]
mod tests;
