//! Tests of MBR and GPT reading and the partition view.

use super::gpt::GPT_SIGNATURE;
use super::*;
use crate::bytes;
use crate::disk::capability::Extent;
use std::path::PathBuf;

/// An image in memory.
struct Mem(Vec<u8>);

impl ImageReader for Mem {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        buf.fill(0);
        let len = self.0.len() as u64;
        if offset < len {
            let from = offset as usize;
            let n = buf.len().min(self.0.len() - from);
            buf[..n].copy_from_slice(&self.0[from..from + n]);
        }
        Ok(())
    }
    fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
        Ok(vec![Extent {
            start: 0,
            len: self.size(),
        }])
    }
}

fn path() -> PathBuf {
    PathBuf::from("disk.img")
}

/// (status, type, first LBA, sector count)
type MbrEntry = (u8, u8, u32, u32);

fn mbr(size: usize, entries: &[MbrEntry]) -> Vec<u8> {
    let mut d = vec![0u8; size];
    for (i, &(status, kind, first, count)) in entries.iter().enumerate() {
        let at = 446 + 16 * i;
        d[at] = status;
        d[at + 4] = kind;
        d[at + 8..at + 12].copy_from_slice(&first.to_le_bytes());
        d[at + 12..at + 16].copy_from_slice(&count.to_le_bytes());
    }
    d[510] = 0x55;
    d[511] = 0xAA;
    d
}

const LINUX: [u8; 16] = [
    0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
];

/// (entry index 0-based, first LBA, last LBA, name)
type GptEntry<'a> = (usize, u64, u64, &'a str);

/// A complete GPT disk: protective MBR, primary header and 128-entry
/// array, backup array and header.
fn gpt(sector: usize, sectors: usize, entries: &[GptEntry]) -> Vec<u8> {
    let mut d = mbr(sector * sectors, &[(0, 0xEE, 1, (sectors - 1) as u32)]);
    let count = 128usize;
    let esize = 128usize;
    let array_sectors = (count * esize).div_ceil(sector);
    let mut array = vec![0u8; count * esize];
    for &(i, first, last, name) in entries {
        let e = &mut array[i * esize..(i + 1) * esize];
        e[0..16].copy_from_slice(&LINUX);
        e[16] = i as u8 + 1;
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        for (k, u) in name.encode_utf16().enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
        }
    }
    let last_lba = sectors as u64 - 1;
    let first_usable = 2 + array_sectors as u64;
    let last_usable = last_lba - 1 - array_sectors as u64;
    let backup_array = last_lba - array_sectors as u64;
    let put = |d: &mut Vec<u8>, my: u64, alt: u64, arr: u64| {
        let h = my as usize * sector;
        d[h..h + 8].copy_from_slice(GPT_SIGNATURE);
        d[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        d[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        d[h + 24..h + 32].copy_from_slice(&my.to_le_bytes());
        d[h + 32..h + 40].copy_from_slice(&alt.to_le_bytes());
        d[h + 40..h + 48].copy_from_slice(&first_usable.to_le_bytes());
        d[h + 48..h + 56].copy_from_slice(&last_usable.to_le_bytes());
        d[h + 56] = 0x42;
        d[h + 72..h + 80].copy_from_slice(&arr.to_le_bytes());
        d[h + 80..h + 84].copy_from_slice(&(count as u32).to_le_bytes());
        d[h + 84..h + 88].copy_from_slice(&(esize as u32).to_le_bytes());
        d[h + 88..h + 92].copy_from_slice(&crc32fast::hash(&array).to_le_bytes());
        let a = arr as usize * sector;
        d[a..a + array.len()].copy_from_slice(&array);
        fix_header_crc(d, h);
    };
    put(&mut d, 1, last_lba, 2);
    put(&mut d, last_lba, 1, backup_array);
    d
}

fn fix_header_crc(d: &mut [u8], h: usize) {
    let hs = bytes::le_u32(d, h + 12).unwrap() as usize;
    let hs = hs.clamp(20, 4096).min(d.len() - h);
    d[h + 16..h + 20].fill(0);
    let crc = crc32fast::hash(&d[h..h + hs]);
    d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
}

/// Recomputes the entries CRC and the header CRC of the header at `h`,
/// as far as the (possibly mutated) fields allow.
fn fix_crcs(d: &mut [u8], h: usize, sector: usize) {
    if h + 92 > d.len() {
        return;
    }
    let lba = bytes::le_u64(d, h + 72).unwrap();
    let count = bytes::le_u32(d, h + 80).unwrap() as u64;
    let esize = bytes::le_u32(d, h + 84).unwrap() as u64;
    let at = lba.saturating_mul(sector as u64);
    let len = count.saturating_mul(esize);
    if let (Ok(at), Ok(len)) = (usize::try_from(at), usize::try_from(len)) {
        if at.checked_add(len).is_some_and(|e| e <= d.len()) {
            let crc = crc32fast::hash(&d[at..at + len]);
            d[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
        }
    }
    fix_header_crc(d, h);
}

fn corrupt_field(r: Result<impl fmt::Debug, DiskError>) -> (String, String, String) {
    match r {
        Err(DiskError::Corrupt {
            format,
            field,
            problem,
            ..
        }) => (format.to_string(), field, problem),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn no_signature_is_no_table() {
    let img = Mem(vec![0u8; 4096]);
    assert_eq!(read_table(&img, &path()).unwrap(), None);
    let img = Mem(Vec::new());
    assert_eq!(read_table(&img, &path()).unwrap(), None);
    let e = find(&img, &path(), 1).unwrap_err().to_string();
    assert!(e.contains("no partition table"), "{e}");
}

#[test]
fn mbr_primaries() {
    let img = Mem(mbr(
        64 * 512,
        &[
            (0x80, 0x83, 2, 10),
            (0, 0, 0, 0),
            (0, 0x0c, 20, 30),
            (0, 0x83, 0, 0),
        ],
    ));
    let (kind, parts) = read_table(&img, &path()).unwrap().unwrap();
    assert_eq!(kind, TableKind::Mbr);
    assert_eq!(
        parts,
        vec![
            PartitionInfo {
                number: 1,
                start: 1024,
                len: 5120,
                type_id: "0x83".into(),
                name: String::new()
            },
            PartitionInfo {
                number: 3,
                start: 20 * 512,
                len: 30 * 512,
                type_id: "0x0c".into(),
                name: String::new()
            },
        ]
    );
    assert_eq!(find(&img, &path(), 3).unwrap(), parts[1]);
    let e = find(&img, &path(), 2).unwrap_err().to_string();
    assert!(
        e.contains("partition 2 is empty in the MBR table (it has partitions 1, 3)"),
        "{e}"
    );
    let e = find(&img, &path(), 4).unwrap_err().to_string();
    assert!(e.contains("partition 4 is empty"), "{e}");
    assert!(matches!(
        find(&img, &path(), 5),
        Err(DiskError::Unsupported { format: "MBR", .. })
    ));
    let e = find(&img, &path(), 0).unwrap_err().to_string();
    assert!(e.contains("no partition 0"), "{e}");

    let img = Mem(mbr(64 * 512, &[(0, 0x83, 2, 10), (0, 0x0f, 20, 30)]));
    let e = find(&img, &path(), 2).unwrap_err();
    assert!(
        matches!(e, DiskError::Unsupported { format: "MBR", .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("extended partition (type 0x0f)"),
        "{e}"
    );
    assert_eq!(read_table(&img, &path()).unwrap().unwrap().1.len(), 2);
}

#[test]
fn mbr_corrupt() {
    let img = Mem(mbr(64 * 512, &[(0x12, 0x83, 2, 10)]));
    let (f, field, problem) = corrupt_field(read_table(&img, &path()));
    assert_eq!(
        (f.as_str(), field.as_str()),
        ("MBR", "partition entry 1 status")
    );
    assert!(problem.contains("0x12"), "{problem}");

    let img = Mem(mbr(64 * 512, &[(0, 0x83, 0, 10)]));
    let (_, field, _) = corrupt_field(read_table(&img, &path()));
    assert_eq!(field, "partition entry 1 start LBA");

    // Past the end: listed by read_table, refused by find.
    let img = Mem(mbr(
        64 * 512,
        &[(0, 0x83, 60, 10), (0, 0x83, u32::MAX, u32::MAX)],
    ));
    assert_eq!(read_table(&img, &path()).unwrap().unwrap().1.len(), 2);
    let (_, field, problem) = corrupt_field(find(&img, &path(), 1));
    assert_eq!(field, "partition 1");
    assert!(
        problem.contains("past the end of the image (32768 bytes)"),
        "{problem}"
    );
    let (_, field, _) = corrupt_field(find(&img, &path(), 2));
    assert_eq!(field, "partition 2");
}

#[test]
fn gpt_512_and_4096() {
    for sector in [512usize, 4096] {
        let sectors = 200;
        let img = Mem(gpt(
            sector,
            sectors,
            &[(0, 40, 49, "root"), (3, 50, 50, "é"), (127, 60, 79, "")],
        ));
        let (kind, parts) = read_table(&img, &path()).unwrap().unwrap();
        assert_eq!(kind, TableKind::Gpt);
        let s = sector as u64;
        assert_eq!(
            parts,
            vec![
                PartitionInfo {
                    number: 1,
                    start: 40 * s,
                    len: 10 * s,
                    type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                    name: "root".into()
                },
                PartitionInfo {
                    number: 4,
                    start: 50 * s,
                    len: s,
                    type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                    name: "é".into()
                },
                PartitionInfo {
                    number: 128,
                    start: 60 * s,
                    len: 20 * s,
                    type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
                    name: String::new()
                },
            ]
        );
        assert_eq!(find(&img, &path(), 128).unwrap(), parts[2]);
        let e = find(&img, &path(), 2).unwrap_err().to_string();
        assert!(
            e.contains("partition 2 is empty in the GPT table (it has partitions 1, 4, 128)"),
            "{e}"
        );
        let e = find(&img, &path(), 129).unwrap_err().to_string();
        assert!(e.contains("the GPT has 128 entries (1-128)"), "{e}");
        let e = find(&img, &path(), 5).unwrap_err().to_string();
        assert!(e.contains("partition 5 is empty"), "{e}");
    }
}

#[test]
fn gpt_backup_used_when_primary_is_corrupt() {
    let good = gpt(512, 200, &[(0, 40, 49, "a")]);
    let want = read_table(&Mem(good.clone()), &path()).unwrap();

    // Bad header CRC.
    let mut d = good.clone();
    d[512 + 56] ^= 1;
    assert_eq!(read_table(&Mem(d.clone()), &path()).unwrap(), want);
    // And a corrupt backup too: the primary's fault is reported, with the backup's.
    d[199 * 512 + 56] ^= 1;
    let (f, field, problem) = corrupt_field(read_table(&Mem(d), &path()));
    assert_eq!(
        (f.as_str(), field.as_str()),
        ("GPT", "primary header CRC32")
    );
    assert!(problem.contains("backup header CRC32"), "{problem}");

    // Bad entries CRC in the primary array only.
    let mut d = good.clone();
    d[2 * 512 + 100] ^= 1;
    assert_eq!(read_table(&Mem(d), &path()).unwrap(), want);

    // Missing primary (wiped LBA 1).
    let mut d = good.clone();
    d[512..1024].fill(0);
    assert_eq!(read_table(&Mem(d.clone()), &path()).unwrap(), want);
    // Missing both.
    d[199 * 512..].fill(0);
    let (_, field, problem) = corrupt_field(read_table(&Mem(d), &path()));
    assert_eq!(field, "primary header");
    assert!(problem.contains("no backup header"), "{problem}");
}

/// Mutates one field of the primary header, fixes the CRCs, and returns
/// the error (the backup is wiped so that the primary's error shows).
fn primary_with(f: impl Fn(&mut [u8])) -> (String, String) {
    let mut d = gpt(512, 200, &[(0, 40, 49, "a")]);
    d[199 * 512..].fill(0);
    f(&mut d);
    fix_crcs(&mut d, 512, 512);
    let (_, field, problem) = corrupt_field(read_table(&Mem(d), &path()));
    (field, problem)
}

fn put64(d: &mut [u8], at: usize, v: u64) {
    d[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

type Mutation<'a> = Box<dyn Fn(&mut [u8]) + 'a>;

#[test]
fn gpt_header_checks() {
    let h = 512;
    let e = 1024; // first entry
    let cases: Vec<(&str, Mutation<'_>)> = vec![
        ("primary header size", Box::new(|d| put32(d, h + 12, 91))),
        ("primary header size", Box::new(|d| put32(d, h + 12, 513))),
        ("primary header my LBA", Box::new(|d| put64(d, h + 24, 7))),
        (
            "primary header usable LBAs",
            Box::new(|d| put64(d, h + 40, 1000)),
        ),
        (
            "primary header entry size",
            Box::new(|d| put32(d, h + 84, 100)),
        ),
        (
            "primary header entry size",
            Box::new(|d| put32(d, h + 84, 192)),
        ),
        (
            "primary header entries LBA",
            Box::new(|d| put64(d, h + 72, 0)),
        ),
        (
            "primary header entries LBA",
            Box::new(|d| put64(d, h + 72, 1)),
        ),
        (
            "primary header entries LBA",
            Box::new(|d| put64(d, h + 72, 199)),
        ),
        (
            "primary header entries LBA",
            Box::new(|d| put64(d, h + 72, u64::MAX / 2)),
        ),
        (
            "primary table entry 1",
            Box::new(|d| {
                put64(d, e + 32, 50);
                put64(d, e + 40, 49);
                fix_crcs(d, h, 512);
            }),
        ),
        (
            "primary table entry 1",
            Box::new(|d| {
                put64(d, e + 40, 10_000);
                fix_crcs(d, h, 512);
            }),
        ),
    ];
    for (want, f) in cases {
        let (field, problem) = primary_with(f);
        assert_eq!(field, want, "{problem}");
    }
    // A changed entry without the CRC fixed.
    let mut d = gpt(512, 200, &[(0, 40, 49, "a")]);
    d[199 * 512..].fill(0);
    d[e + 40] ^= 1;
    let (_, field, _) = corrupt_field(read_table(&Mem(d), &path()));
    assert_eq!(field, "primary header entries CRC32");
}

#[test]
fn gpt_entry_overflow() {
    // Usable range up to u64::MAX lets the LBA × sector product overflow.
    let (field, problem) = primary_with(|d| {
        put64(d, 512 + 48, u64::MAX);
        put64(d, 1024 + 32, u64::MAX / 2);
        put64(d, 1024 + 40, u64::MAX);
        fix_crcs(d, 512, 512);
    });
    assert_eq!(field, "primary table entry 1");
    assert!(problem.contains("overflow"), "{problem}");
}

#[test]
fn gpt_huge_array_is_refused_before_allocating() {
    let mut d = gpt(512, 200, &[(0, 40, 49, "a")]);
    put32(&mut d, 512 + 80, u32::MAX);
    put32(&mut d, 512 + 84, 1 << 31);
    fix_header_crc(&mut d, 512);
    assert!(matches!(
        read_table(&Mem(d), &path()),
        Err(DiskError::Unsupported { format: "GPT", .. })
    ));
}

#[test]
fn partition_reader_view() {
    let mut data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    data[510] = 0x55;
    data[511] = 0xAA;
    struct Sparse(Mem);
    impl ImageReader for Sparse {
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
            self.0.read_at(buf, offset)
        }
        fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
            Ok(vec![
                Extent {
                    start: 0,
                    len: 1000,
                },
                Extent {
                    start: 2000,
                    len: 100,
                },
                Extent {
                    start: 3000,
                    len: 5000,
                },
            ])
        }
    }
    let img = Sparse(Mem(data.clone()));
    let part = PartitionInfo {
        number: 1,
        start: 1024,
        len: 2048,
        type_id: String::new(),
        name: String::new(),
    };
    let r = PartitionReader::new(&img, &part);
    assert_eq!(r.size(), 2048);
    let mut buf = vec![0xFFu8; 100];
    r.read_at(&mut buf, 10).unwrap();
    assert_eq!(buf, data[1034..1134]);
    // Straddling the end: the tail reads zeros.
    let mut buf = vec![0xFFu8; 100];
    r.read_at(&mut buf, 2000).unwrap();
    assert_eq!(buf[..48], data[3024..3072]);
    assert!(buf[48..].iter().all(|&b| b == 0));
    let mut buf = vec![0xFFu8; 10];
    r.read_at(&mut buf, u64::MAX - 3).unwrap();
    assert_eq!(buf, [0; 10]);
    assert_eq!(
        r.data_extents().unwrap(),
        vec![
            Extent {
                start: 976,
                len: 100
            },
            Extent {
                start: 1976,
                len: 72
            },
        ]
    );
    // An overflowing hand-made entry is clipped, not a panic.
    let wild = PartitionInfo {
        start: u64::MAX - 5,
        len: u64::MAX,
        ..part
    };
    let r = PartitionReader::new(&img, &wild);
    assert_eq!(r.size(), 5);
    assert_eq!(r.data_extents().unwrap(), vec![]);
    let mut buf = [1u8; 8];
    r.read_at(&mut buf, 0).unwrap();
    assert_eq!(buf, [0; 8]);
}

/// splitmix64: a small deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 10,000 random and mutated 64 KiB images: `read_table`, `find` and
/// the partition view must return, never panic.
#[test]
fn random_and_mutated_images_never_panic() {
    const SIZE: usize = 64 * 1024;
    let bases = [
        mbr(
            SIZE,
            &[
                (0x80, 0x83, 1, 40),
                (0, 0x05, 41, 20),
                (0, 0x0c, 70, 1000),
                (0, 0x83, 100, 3),
            ],
        ),
        gpt(
            512,
            SIZE / 512,
            &[(0, 40, 49, "a"), (1, 50, 60, "b"), (127, 61, 90, "c")],
        ),
        gpt(4096, SIZE / 4096, &[(0, 6, 7, "x"), (2, 8, 10, "y")]),
    ];
    let mut rng = Rng(0x0b9_5eed);
    // [MBR accepted, GPT accepted, no table, error]
    let mut outcomes = [0usize; 4];
    for round in 0..10_000 {
        let mut d = match round % 4 {
            3 => {
                let mut d: Vec<u8> = (0..SIZE).map(|_| rng.next() as u8).collect();
                d[510] = 0x55;
                d[511] = 0xAA;
                if rng.below(2) == 0 {
                    d[446 + 16 * rng.below(4) as usize + 4] = 0xEE;
                }
                d
            }
            i => bases[i].clone(),
        };
        let sector = if round % 4 == 2 { 4096 } else { 512 };
        let mutations = 1 + rng.below(8);
        for _ in 0..mutations {
            // Mostly the metadata: LBA 0, the headers, the first entries.
            let region = match rng.below(5) {
                0 => 0..512,
                1 => sector..sector + 92,
                2 => 2 * sector..2 * sector + 512,
                3 => SIZE - sector..SIZE - sector + 92,
                _ => 0..SIZE,
            };
            let at = region.start + rng.below((region.end - region.start) as u64) as usize;
            match rng.below(4) {
                0 => d[at] ^= 1 << rng.below(8),
                1 => d[at] = rng.next() as u8,
                2 if at + 8 <= SIZE => {
                    let v =
                        [0, 1, u64::MAX, u64::MAX / 2, rng.next(), 1 << 32][rng.below(6) as usize];
                    d[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
                _ if at + 4 <= SIZE => {
                    let v =
                        [0, 1, u32::MAX, 128, 92, 4096, rng.next() as u32][rng.below(7) as usize];
                    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => {}
            }
        }
        if rng.below(2) == 0 {
            fix_crcs(&mut d, sector, sector);
            fix_crcs(&mut d, SIZE - sector, sector);
        }
        if rng.below(8) == 0 {
            d.truncate(rng.below(SIZE as u64) as usize);
        }
        let img = Mem(d);
        match read_table(&img, &path()) {
            Ok(Some((TableKind::Mbr, _))) => outcomes[0] += 1,
            Ok(Some((TableKind::Gpt, _))) => outcomes[1] += 1,
            Ok(None) => outcomes[2] += 1,
            Err(_) => outcomes[3] += 1,
        }
        let n = [0, 1, 2, 3, 4, 5, 128, 129, u32::MAX][rng.below(9) as usize];
        if let Ok(p) = find(&img, &path(), n) {
            let r = PartitionReader::new(&img, &p);
            let mut buf = [0u8; 64];
            r.read_at(&mut buf, rng.below(r.size().saturating_add(64)))
                .unwrap();
            r.data_extents().unwrap();
        }
    }
    // The mutations must reach both the accepting and the rejecting paths.
    let [mbr, gpt, _, err] = outcomes;
    assert!(mbr > 100 && gpt > 100 && err > 100, "{outcomes:?}");
}
