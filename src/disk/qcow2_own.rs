//! The guest ranges a qcow2 file holds itself, not through its backing
//! file: its data clusters and its zero clusters (version 3's zero flag),
//! from its own L1 and L2 tables. The step cache's layers use it to apply
//! overlays onto the image below them in place (`qemu-img commit` in
//! effect) instead of converting the whole chain.

use std::path::Path;

use crate::bytes::be_u64;
use crate::disk::capability::Extent;
use crate::disk::raw::read_file_at;
use crate::disk::{qcow2_header, DiskError};

/// The host offset bits of an L1 or L2 entry.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// An L2 entry's compressed-cluster bit.
const COMPRESSED: u64 = 1 << 62;
/// An L2 entry's "reads as zeros" bit (version 3).
const ZERO: u64 = 1;

/// The ranges of the image at `path` that its own clusters define (data
/// or zeros), in order, adjacent ones merged; clipped to the virtual size.
/// The header and the L1 table are checked first (`qcow2_header`).
pub fn own_extents(path: &Path) -> Result<Vec<Extent>, DiskError> {
    let h = qcow2_header::check(path)?;
    let file = crate::disk::gate::open_regular(path)?;
    let cluster = 1u64 << h.cluster_bits;
    let per_l2 = cluster / 8;
    // Bounded: the header check put the table (<= 32 MiB) inside the file.
    let mut l1 = vec![0u8; h.l1_size as usize * 8];
    read_file_at(&file, path, &mut l1, h.l1_table_offset)?;
    let mut l2 = vec![0u8; usize::try_from(cluster).unwrap_or(usize::MAX)];
    let mut out: Vec<Extent> = Vec::new();
    for (i, entry) in l1.chunks_exact(8).enumerate() {
        let table = be_u64(entry, 0).unwrap_or(0) & OFFSET_MASK;
        if table == 0 {
            continue;
        }
        // The L1 check put every L2 table inside the file.
        read_file_at(&file, path, &mut l2, table)?;
        for (j, e) in l2.chunks_exact(8).enumerate() {
            let e = be_u64(e, 0).unwrap_or(0);
            let own = e & OFFSET_MASK != 0 || e & COMPRESSED != 0 || e & ZERO != 0;
            let start = (i as u64 * per_l2 + j as u64) * cluster;
            if !own || start >= h.size {
                continue;
            }
            let len = cluster.min(h.size - start);
            match out.last_mut() {
                Some(last) if last.start + last.len == start => last.len += len,
                _ => out.push(Extent { start, len }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::disk::qcow2::Qcow2Image;
    use std::process::Command;

    fn qemu_io(path: &Path, command: &str) {
        let st = Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", command])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }

    #[test]
    fn an_overlay_holds_what_was_written_into_it_and_its_zeroed_clusters() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        let top = dir.path().join("top.qcow2");
        Qcow2Image::create(&base, 4 << 20, None).unwrap();
        qemu_io(&base, "write -P 1 0 4M");
        Qcow2Image::create(&top, 4 << 20, Some((Path::new("base.qcow2"), "qcow2"))).unwrap();
        assert_eq!(own_extents(&top).unwrap(), []);
        // Written data (a partial cluster allocates the whole cluster),
        // two adjacent clusters merged, and a zeroed cluster.
        qemu_io(&top, "write -P 2 65536 100");
        qemu_io(&top, "write -P 3 131072 64k");
        qemu_io(&top, "write -z 1M 64k");
        assert_eq!(
            own_extents(&top).unwrap(),
            [
                Extent {
                    start: 65536,
                    len: 131072
                },
                Extent {
                    start: 1 << 20,
                    len: 65536
                }
            ]
        );
        // The base holds everything itself.
        assert_eq!(
            own_extents(&base).unwrap(),
            [Extent {
                start: 0,
                len: 4 << 20
            }]
        );
    }
}
