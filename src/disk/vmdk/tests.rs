//! Writer → reader round trips, reproducibility and hostile-input tests.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::header::{SparseHeader, SECTOR};
use super::*;
use crate::disk::capability::Extent;

const OPTS: CreateOptions = CreateOptions {
    timestamp: 1_700_000_000,
};
const BOTH: [Subformat; 2] = [Subformat::MonolithicSparse, Subformat::StreamOptimized];

/// Writes `chunks` (offset, bytes) in order and returns the expected image.
fn write_image(path: &Path, size: u64, sub: Subformat, chunks: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut expect = vec![0u8; size.div_ceil(512) as usize * 512];
    let mut w = create(path, size, sub, &OPTS).unwrap();
    for (off, data) in chunks {
        w.write_at(*off, data).unwrap();
        expect[*off as usize..*off as usize + data.len()].copy_from_slice(data);
    }
    w.finish().unwrap();
    expect
}

fn read_all(path: &Path) -> Vec<u8> {
    let r = open(path).unwrap();
    let mut buf = vec![0u8; r.size() as usize];
    r.read_at(&mut buf, 0).unwrap();
    buf
}

fn check_extents(path: &Path, expect: &[u8]) {
    let r = open(path).unwrap();
    let ext = r.data_extents().unwrap();
    let mut prev_end = 0;
    for e in &ext {
        assert!(e.start >= prev_end && e.len > 0, "{ext:?}");
        assert!(e.start + e.len <= r.size());
        prev_end = e.start + e.len;
    }
    // Every non-zero byte is inside an extent.
    let mut i = 0;
    for (pos, &b) in expect.iter().enumerate() {
        if b != 0 {
            while i < ext.len() && ext[i].start + ext[i].len <= pos as u64 {
                i += 1;
            }
            assert!(
                i < ext.len() && ext[i].start <= pos as u64,
                "byte {pos} not in {ext:?}"
            );
        }
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn round_trip_simple_both() {
    let d = tmp();
    for sub in BOTH {
        let p = d.path().join(format!("{sub:?}.vmdk"));
        let size = 10 << 20;
        let chunks = vec![
            (70_000, b"hello".to_vec()),
            (70_100, vec![7u8; 200_000]),
            (3 << 20, vec![0u8; 65536]),
            ((4 << 20) + 1, (0..=255u8).cycle().take(300_000).collect()),
            (size - 3, vec![9, 9, 9]),
        ];
        let expect = write_image(&p, size, sub, &chunks);
        assert_eq!(read_all(&p), expect, "{sub:?}");
        check_extents(&p, &expect);
        // Random-access reads of odd ranges.
        let r = open(&p).unwrap();
        for (off, len) in [
            (69_999u64, 10usize),
            (65_535, 3),
            (size - 10, 10),
            (size - 2, 100),
        ] {
            let mut b = vec![1u8; len];
            r.read_at(&mut b, off).unwrap();
            let end = (off as usize + len).min(expect.len());
            let mut want = expect[off as usize..end].to_vec();
            want.resize(len, 0);
            assert_eq!(b, want, "{sub:?} {off} {len}");
        }
        // All-zero grains were not stored.
        let ext = r.data_extents().unwrap();
        assert!(ext
            .iter()
            .all(|e| e.start + e.len <= (5 << 20) || e.start >= size - 65536));
    }
}

#[test]
fn odd_sizes_and_empty() {
    let d = tmp();
    for sub in BOTH {
        for size in [0u64, 1, 511, 512, 65_535, 65_536, 65_537, 100_000] {
            let p = d.path().join(format!("{sub:?}-{size}.vmdk"));
            let chunks = if size > 0 {
                vec![(size - 1, vec![0xabu8])]
            } else {
                vec![]
            };
            let expect = write_image(&p, size, sub, &chunks);
            let r = open(&p).unwrap();
            assert_eq!(r.size(), size.div_ceil(512) * 512);
            assert_eq!(read_all(&p), expect, "{sub:?} {size}");
        }
    }
}

#[test]
fn rejects_backwards_and_out_of_range_writes() {
    let d = tmp();
    let p = d.path().join("a.vmdk");
    let mut w = create(&p, 1 << 20, Subformat::MonolithicSparse, &OPTS).unwrap();
    w.write_at(1000, &[1; 10]).unwrap();
    assert!(matches!(w.write_at(1005, &[1]), Err(DiskError::Invalid(_))));
    assert!(matches!(
        w.write_at(1 << 20, &[1]),
        Err(DiskError::Invalid(_))
    ));
    assert!(matches!(
        w.write_at(u64::MAX, &[1]),
        Err(DiskError::Invalid(_))
    ));
    assert!(matches!(
        create(&p, u64::MAX, Subformat::MonolithicSparse, &OPTS),
        Err(DiskError::Invalid(_))
    ));
    assert!(matches!(
        create(
            &d.path().join("a\"b.vmdk"),
            1,
            Subformat::MonolithicSparse,
            &OPTS
        ),
        Err(DiskError::Invalid(_))
    ));
}

#[test]
fn reproducible() {
    let (a, b) = (tmp(), tmp());
    for sub in BOTH {
        let chunks: Vec<(u64, Vec<u8>)> = (0..40u64)
            .map(|i| (i * 300_007, (0..5000).map(|j| (i * 31 + j) as u8).collect()))
            .collect();
        let pa = a.path().join("disk.vmdk");
        let pb = b.path().join("disk.vmdk");
        write_image(&pa, 16 << 20, sub, &chunks);
        // Different write splitting, same data.
        let mut w = create(&pb, 16 << 20, sub, &OPTS).unwrap();
        for (off, data) in &chunks {
            let (x, y) = data.split_at(1234);
            w.write_at(*off, x).unwrap();
            w.write_at(*off + 1234, y).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(
            std::fs::read(&pa).unwrap(),
            std::fs::read(&pb).unwrap(),
            "{sub:?}"
        );
    }
}

#[test]
fn sniffs() {
    assert!(sniff(b"KDMV\x01\0\0\0"));
    assert!(sniff(b"# Disk DescriptorFile\nversion=1"));
    assert!(!sniff(b"QFI\xfb"));
    assert!(!sniff(b""));
}

// ---- hostile input -------------------------------------------------------

fn sparse_image(dir: &Path) -> PathBuf {
    let p = dir.join("ok.vmdk");
    write_image(
        &p,
        4 << 20,
        Subformat::MonolithicSparse,
        &[(100_000, vec![5; 1000])],
    );
    p
}

fn patch(path: &Path, at: usize, bytes: &[u8]) -> PathBuf {
    let mut data = std::fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    let out = path.with_extension(format!("p{at}.vmdk"));
    std::fs::write(&out, data).unwrap();
    out
}

fn corrupt_field(r: Result<Box<dyn ImageReader>, DiskError>) -> String {
    match r {
        Err(DiskError::Corrupt { field, format, .. }) => {
            assert_eq!(format, "vmdk");
            field
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("expected Corrupt, got an image"),
    }
}

#[test]
fn truncated_header() {
    let d = tmp();
    let p = sparse_image(d.path());
    let data = std::fs::read(&p).unwrap();
    let t = d.path().join("t.vmdk");
    std::fs::write(&t, &data[..100]).unwrap();
    assert_eq!(corrupt_field(open(&t)), "header");
    // Header intact, body gone.
    std::fs::write(&t, &data[..4096]).unwrap();
    let f = corrupt_field(open(&t));
    assert!(f == "overhead" || f.contains("grain"), "{f}");
}

#[test]
fn bad_magic() {
    let d = tmp();
    let p = patch(&sparse_image(d.path()), 0, b"XXXX");
    assert_eq!(corrupt_field(open(&p)), "magic");
}

#[test]
fn gd_offset_past_eof() {
    let d = tmp();
    let p = patch(&sparse_image(d.path()), 56, &(1u64 << 40).to_le_bytes());
    assert_eq!(corrupt_field(open(&p)), "grain directory offset");
    let p = patch(&sparse_image(d.path()), 56, &(u64::MAX - 1).to_le_bytes());
    assert_eq!(corrupt_field(open(&p)), "grain directory offset");
}

#[test]
fn absurd_capacity() {
    let d = tmp();
    let p = patch(&sparse_image(d.path()), 12, &u64::MAX.to_le_bytes());
    assert_eq!(corrupt_field(open(&p)), "capacity (header)");
    // Plausible capacity, but the directory would not fit in the file.
    let p = patch(&sparse_image(d.path()), 12, &(1u64 << 36).to_le_bytes());
    assert_eq!(corrupt_field(open(&p)), "grain directory offset");
}

#[test]
fn bad_grain_size_and_gtes() {
    let d = tmp();
    let p = patch(&sparse_image(d.path()), 20, &100u64.to_le_bytes());
    assert_eq!(corrupt_field(open(&p)), "grain size (header)");
    let p = patch(&sparse_image(d.path()), 20, &0u64.to_le_bytes());
    assert_eq!(corrupt_field(open(&p)), "grain size (header)");
    let p = patch(&sparse_image(d.path()), 44, &4096u32.to_le_bytes());
    assert!(matches!(open(&p), Err(DiskError::Unsupported { .. })));
    let p = patch(&sparse_image(d.path()), 73, b"\n \n\n");
    assert!(corrupt_field(open(&p)).starts_with("new-line"));
    let p = patch(&sparse_image(d.path()), 4, &9u32.to_le_bytes());
    assert!(matches!(open(&p), Err(DiskError::Unsupported { .. })));
}

#[test]
fn grain_table_entry_past_eof() {
    let d = tmp();
    let p = sparse_image(d.path());
    let h = SparseHeader::decode(&std::fs::read(&p).unwrap()[..512]).unwrap();
    let data = std::fs::read(&p).unwrap();
    let gd = (h.gd_offset * SECTOR) as usize;
    let gt = u32::from_le_bytes(data[gd..gd + 4].try_into().unwrap()) as usize * 512;
    // Grain 1 holds the data at 100_000.
    let q = patch(&p, gt + 4, &0x00ff_ffffu32.to_le_bytes());
    assert_eq!(corrupt_field(open(&q)), "grain table 0 entry 1");
    let q = patch(&p, gd, &0x00ff_ffffu32.to_le_bytes());
    assert_eq!(corrupt_field(open(&q)), "grain directory entry 0");
}

#[test]
fn stream_corruptions() {
    let d = tmp();
    let p = d.path().join("s.vmdk");
    write_image(
        &p,
        4 << 20,
        Subformat::StreamOptimized,
        &[(100_000, vec![5; 1000])],
    );
    let data = std::fs::read(&p).unwrap();
    // Footer gone.
    let t = d.path().join("t.vmdk");
    std::fs::write(&t, &data[..data.len() - 512]).unwrap();
    assert!(corrupt_field(open(&t)).contains("marker"));
    // Compressed size absurd: the first grain marker is at sector 128.
    let q = patch(&p, 128 * 512 + 8, &u32::MAX.to_le_bytes());
    let r = open(&q).unwrap();
    let mut b = vec![0u8; 4096];
    assert!(matches!(
        r.read_at(&mut b, 98_304),
        Err(DiskError::Corrupt { .. })
    ));
    // Garbage deflate data.
    let q = patch(&p, 128 * 512 + 12, &[0xff; 16]);
    let r = open(&q).unwrap();
    assert!(matches!(
        r.read_at(&mut b, 98_304),
        Err(DiskError::Corrupt { .. })
    ));
}

#[test]
fn descriptor_files() {
    let d = tmp();
    let flat = d.path().join("disk-flat.vmdk");
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&flat, &data).unwrap();
    let desc = d.path().join("disk.vmdk");
    std::fs::write(
        &desc,
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\nRW 8 FLAT \"disk-flat.vmdk\" 2\nRW 4 ZERO\nRW 8 FLAT \"disk-flat.vmdk\" 0\n",
    )
    .unwrap();
    let r = open(&desc).unwrap();
    assert_eq!(r.size(), 20 * 512);
    let got = read_all(&desc);
    assert_eq!(&got[..4096], &data[1024..5120]);
    assert!(got[4096..6144].iter().all(|&b| b == 0));
    assert_eq!(&got[6144..], &data[..4096]);
    assert_eq!(
        r.data_extents().unwrap(),
        vec![
            Extent {
                start: 0,
                len: 4096
            },
            Extent {
                start: 6144,
                len: 4096
            }
        ]
    );

    // twoGbMaxExtentSparse from two of our sparse files.
    let s1 = d.path().join("d-s001.vmdk");
    let s2 = d.path().join("d-s002.vmdk");
    let e1 = write_image(
        &s1,
        1 << 20,
        Subformat::MonolithicSparse,
        &[(5, vec![1; 10])],
    );
    let e2 = write_image(
        &s2,
        1 << 20,
        Subformat::MonolithicSparse,
        &[(70_000, vec![2; 10])],
    );
    let two = d.path().join("d.vmdk");
    std::fs::write(
        &two,
        "# Disk DescriptorFile\ncreateType=\"twoGbMaxExtentSparse\"\nRW 2048 SPARSE \"d-s001.vmdk\"\nRW 2048 SPARSE \"d-s002.vmdk\"\n",
    )
    .unwrap();
    assert_eq!(read_all(&two), [e1, e2].concat());

    // Extents outside the descriptor's directory (the rule of `gate::confine`).
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("x"), [0u8; 4096]).unwrap();
    for (name, text) in [
        (
            "sub/up.vmdk",
            "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"../x\"\n",
        ),
        (
            "abs.vmdk",
            "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/passwd\"\n",
        ),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        assert!(matches!(open(&p), Err(DiskError::Escapes { .. })), "{name}");
    }
    for (name, text) in [
        ("parent.vmdk", "# Disk DescriptorFile\nparentCID=1234\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"d-s001.vmdk\"\n"),
        ("se.vmdk", "# Disk DescriptorFile\ncreateType=\"seSparse\"\nRW 8 SESPARSE \"x\"\n"),
        ("type.vmdk", "# Disk DescriptorFile\ncreateType=\"fullDevice\"\nRW 8 FLAT \"disk-flat.vmdk\"\n"),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        assert!(
            matches!(open(&p), Err(DiskError::Unsupported { .. })),
            "{name}"
        );
    }
    for (name, text) in [
        ("none.vmdk", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\n"),
        ("big.vmdk", "# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 18446744073709551615 FLAT \"disk-flat.vmdk\"\n"),
        ("self.vmdk", "# Disk DescriptorFile\ncreateType=\"twoGbMaxExtentSparse\"\nRW 8 SPARSE \"self.vmdk\"\n"),
    ] {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        corrupt_field(open(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sparse data written in random pieces reads back exactly.
    #[test]
    fn prop_round_trip(
        size in 1u64..(3 << 20),
        pieces in proptest::collection::vec((0u64..200_000, 0usize..150_000, any::<u8>(), any::<bool>()), 0..12),
        stream in any::<bool>(),
    ) {
        let d = tmp();
        let p = d.path().join("p.vmdk");
        let sub = if stream { Subformat::StreamOptimized } else { Subformat::MonolithicSparse };
        let mut chunks = Vec::new();
        let mut at = 0u64;
        for (gap, len, byte, noisy) in pieces {
            let off = at + gap;
            if off >= size { break; }
            let len = len.min((size - off) as usize);
            let data: Vec<u8> = (0..len)
                .map(|i| if noisy { byte.wrapping_mul(i as u8 | 1) } else { byte })
                .collect();
            at = off + len as u64;
            chunks.push((off, data));
        }
        let expect = write_image(&p, size, sub, &chunks);
        prop_assert_eq!(read_all(&p), expect.clone());
        check_extents(&p, &expect);
    }

    /// Flipped bytes in an image never panic the reader.
    #[test]
    fn prop_hostile_bytes_never_panic(
        flips in proptest::collection::vec((0usize..200_000, any::<u8>()), 1..8),
        stream in any::<bool>(),
    ) {
        let d = tmp();
        let p = d.path().join("h.vmdk");
        let sub = if stream { Subformat::StreamOptimized } else { Subformat::MonolithicSparse };
        write_image(&p, 2 << 20, sub, &[(1000, vec![3; 70_000]), (1 << 20, (0..=255).collect())]);
        let mut data = std::fs::read(&p).unwrap();
        let n = data.len();
        for (at, b) in flips {
            data[at % n] = b;
        }
        std::fs::write(&p, &data).unwrap();
        if let Ok(r) = open(&p) {
            let _ = r.data_extents();
            let mut buf = vec![0u8; 300_000];
            let _ = r.read_at(&mut buf, 0);
            let _ = r.read_at(&mut buf[..10], r.size().saturating_sub(5));
        }
    }
}
