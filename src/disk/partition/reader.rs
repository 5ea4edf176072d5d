//! One partition of an image presented as a whole disk.

use std::fmt;

use super::PartitionInfo;
use crate::disk::capability::{Extent, ImageReader};
use crate::disk::error::DiskError;

/// A reader presenting one partition of an image as a whole disk (offset
/// view): size = partition length, reads shifted, data extents clipped and
/// shifted. This is how `Partition n` is extracted without copying the rest
/// of the image.
///
/// It borrows the image (`&dyn ImageReader`); a caller holding an
/// `Arc<dyn ImageReader>` or `Box<dyn ImageReader>` passes `&*image`.
/// Reads past the partition's end read zeros, like past the end of any
/// image; reads never reach outside the partition.
pub struct PartitionReader<'a> {
    inner: &'a dyn ImageReader,
    start: u64,
    len: u64,
}

impl<'a> PartitionReader<'a> {
    /// The view of `part` (normally from [`find`]) in `image`. A
    /// hand-made `part` whose end would overflow is cut at `u64::MAX`.
    pub fn new(image: &'a dyn ImageReader, part: &PartitionInfo) -> Self {
        PartitionReader {
            inner: image,
            start: part.start,
            len: part.len.min(u64::MAX - part.start),
        }
    }
}

impl fmt::Debug for PartitionReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionReader")
            .field("start", &self.start)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl ImageReader for PartitionReader<'_> {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let avail = self.len.saturating_sub(offset);
        let inside = usize::try_from(avail).map_or(buf.len(), |a| a.min(buf.len()));
        let (head, tail) = buf.split_at_mut(inside);
        if !head.is_empty() {
            // offset < len and start + len <= u64::MAX, so this cannot overflow.
            self.inner
                .read_at(head, self.start.saturating_add(offset))?;
        }
        tail.fill(0);
        Ok(())
    }

    fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
        let lo = self.start;
        let hi = self.start.saturating_add(self.len);
        Ok(self
            .inner
            .data_extents()?
            .into_iter()
            .filter_map(|e| {
                let s = e.start.max(lo);
                let t = e.start.saturating_add(e.len).min(hi);
                (s < t).then(|| Extent {
                    start: s - lo,
                    len: t - s,
                })
            })
            .collect())
    }
}
