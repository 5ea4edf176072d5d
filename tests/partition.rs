//! Partition tables made by independent tools: sfdisk (Debian package
//! `fdisk`) for MBR, sgdisk (package `gdisk`) for GPT. Each partition gets
//! a distinct byte pattern written with plain file I/O at the offsets the
//! tools report; `find` + `PartitionReader` must read back exactly that
//! partition's pattern. A missing tool fails the test with the package to
//! install.

// Helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use b9::disk::capability::{Extent, ImageReader};
use b9::disk::partition::{find, read_table, PartitionInfo, PartitionReader, TableKind};
use b9::disk::DiskError;

const MIB: u64 = 1024 * 1024;

/// A minimal raw image reader (the real one lives elsewhere): zeros past
/// the end of the file, one extent covering everything.
struct Raw {
    file: File,
    size: u64,
}

impl Raw {
    fn open(path: &Path) -> Raw {
        let file = File::open(path).unwrap();
        let size = file.metadata().unwrap().len();
        Raw { file, size }
    }
}

impl ImageReader for Raw {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DiskError> {
        let mut done = 0;
        while done < buf.len() {
            let n = self
                .file
                .read_at(&mut buf[done..], offset + done as u64)
                .map_err(|source| DiskError::Io {
                    op: "cannot read",
                    path: "test image".into(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf[done..].fill(0);
        Ok(())
    }

    fn data_extents(&self) -> Result<Vec<Extent>, DiskError> {
        Ok(vec![Extent {
            start: 0,
            len: self.size,
        }])
    }
}

fn run(cmd: &str, package: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{cmd} is needed for this test ({e}): install the Debian package {package} \
                 (apt-get install -y {package})"
            )
        });
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn blank(dir: &Path, name: &str, size: u64) -> std::path::PathBuf {
    let path = dir.join(name);
    File::create(&path).unwrap().set_len(size).unwrap();
    path
}

/// The pattern of partition `n`: different in every partition and along it.
fn pattern(n: u32, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_add((n as u8).wrapping_mul(83)) ^ (n as u8))
        .collect()
}

fn write_pattern(path: &Path, n: u32, start: u64, len: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&pattern(n, len), start).unwrap();
}

/// Reads the whole partition through the view, in odd-sized chunks.
fn read_view(image: &dyn ImageReader, part: &PartitionInfo) -> Vec<u8> {
    let view = PartitionReader::new(image, part);
    assert_eq!(view.size(), part.len);
    assert_eq!(
        view.data_extents().unwrap(),
        vec![Extent {
            start: 0,
            len: part.len
        }]
    );
    let mut all = vec![0xFFu8; part.len as usize];
    for (i, chunk) in all.chunks_mut(65_537).enumerate() {
        view.read_at(chunk, i as u64 * 65_537).unwrap();
    }
    // Past the end: zeros, never the next partition.
    let mut tail = [0xFFu8; 16];
    view.read_at(&mut tail, part.len - 8).unwrap();
    assert_eq!(tail[..8], all[all.len() - 8..]);
    assert_eq!(tail[8..], [0; 8]);
    all
}

fn err_text(r: Result<PartitionInfo, DiskError>) -> String {
    r.unwrap_err().to_string()
}

/// (start, size) in sectors of each partition, from `sfdisk --json`.
fn sfdisk_layout(path: &Path) -> Vec<(u64, u64, String)> {
    let json = run("sfdisk", "fdisk", &["--json", path.to_str().unwrap()], None);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let table = &v["partitiontable"];
    assert_eq!(table["sectorsize"], 512);
    table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn mbr_made_by_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let img = blank(dir.path(), "mbr.img", 16 * MIB);
    run(
        "sfdisk",
        "fdisk",
        &["-q", img.to_str().unwrap()],
        Some(
            "label: dos\n\
             start=2048, size=4096, type=83, bootable\n\
             start=6144, size=2049, type=c\n\
             start=12288, size=8192, type=83\n",
        ),
    );
    let layout = sfdisk_layout(&img);
    assert_eq!(layout.len(), 3);
    for (i, &(start, size, _)) in layout.iter().enumerate() {
        write_pattern(&img, i as u32 + 1, start * 512, size * 512);
    }
    run(
        "sfdisk",
        "fdisk",
        &["--verify", img.to_str().unwrap()],
        None,
    );

    let image = Raw::open(&img);
    let (kind, parts) = read_table(&image, &img).unwrap().unwrap();
    assert_eq!(kind, TableKind::Mbr);
    assert_eq!(parts.len(), 3);
    for (i, (start, size, kind)) in layout.into_iter().enumerate() {
        let n = i as u32 + 1;
        let part = find(&image, &img, n).unwrap();
        assert_eq!(part, parts[i]);
        assert_eq!(part.number, n);
        assert_eq!((part.start, part.len), (start * 512, size * 512));
        assert_eq!(part.type_id, format!("0x{kind:0>2}"));
        assert_eq!(part.name, "");
        assert!(
            read_view(&image, &part) == pattern(n, part.len),
            "partition {n}"
        );
    }

    assert!(err_text(find(&image, &img, 0)).contains("there is no partition 0"));
    let e = err_text(find(&image, &img, 4));
    assert!(
        e.contains("partition 4 is empty in the MBR table (it has partitions 1, 2, 3)"),
        "{e}"
    );
    let e = find(&image, &img, 5).unwrap_err();
    assert!(
        matches!(e, DiskError::Unsupported { format: "MBR", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("logical partitions"), "{e}");

    // Cut the image inside partition 3: still listed, but refused.
    let f = OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(8 * MIB).unwrap();
    let image = Raw::open(&img);
    assert_eq!(read_table(&image, &img).unwrap().unwrap().1.len(), 3);
    find(&image, &img, 2).unwrap();
    let e = find(&image, &img, 3).unwrap_err();
    assert!(
        matches!(&e, DiskError::Corrupt { format: "MBR", field, .. } if field == "partition 3"),
        "{e:?}"
    );
    assert!(e.to_string().contains("past the end of the image"), "{e}");
}

#[test]
fn mbr_extended_and_logical_partitions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = blank(dir.path(), "ext.img", 16 * MIB);
    run(
        "sfdisk",
        "fdisk",
        &["-q", img.to_str().unwrap()],
        Some(
            "label: dos\n\
             start=2048, size=4096, type=83\n\
             start=8192, size=16384, type=5\n\
             start=10240, size=4096, type=83\n",
        ),
    );
    let layout = sfdisk_layout(&img);
    assert_eq!(layout.len(), 3, "{layout:?}"); // 1, 2 (extended), 5 (logical)
    let image = Raw::open(&img);
    let (kind, parts) = read_table(&image, &img).unwrap().unwrap();
    assert_eq!(kind, TableKind::Mbr);
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.number, p.type_id.as_str()))
            .collect::<Vec<_>>(),
        [(1, "0x83"), (2, "0x05")]
    );
    find(&image, &img, 1).unwrap();
    let e = find(&image, &img, 2).unwrap_err();
    assert!(
        matches!(e, DiskError::Unsupported { format: "MBR", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("extended partition"), "{e}");
    let e = find(&image, &img, 5).unwrap_err();
    assert!(
        matches!(e, DiskError::Unsupported { format: "MBR", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("logical partitions"), "{e}");
}

/// First/last sector, type GUID and name of GPT partition `n`, from `sgdisk -i`.
fn sgdisk_info(path: &Path, n: u32) -> (u64, u64, String, String) {
    let out = run(
        "sgdisk",
        "gdisk",
        &["-i", &n.to_string(), path.to_str().unwrap()],
        None,
    );
    let field = |label: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in sgdisk output:\n{out}"))
            .trim()
            .to_string()
    };
    let sector = |label: &str| -> u64 {
        field(label)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let guid = field("Partition GUID code:")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let name = field("Partition name:").trim_matches('\'').to_string();
    (sector("First sector:"), sector("Last sector:"), guid, name)
}

const GPT_NUMBERS: [u32; 5] = [1, 2, 3, 4, 128];

fn sgdisk_image(dir: &Path) -> std::path::PathBuf {
    let img = blank(dir, "gpt.img", 16 * MIB);
    run(
        "sgdisk",
        "gdisk",
        &[
            "-n",
            "1:2048:+1M",
            "-c",
            "1:root",
            "-n",
            "2:0:+2M",
            "-t",
            "2:EF00",
            "-c",
            "2:EFI system",
            "-n",
            "3:0:+1M",
            "-n",
            "4:0:+512K",
            "-t",
            "4:8200",
            "-n",
            "128:0:+1M",
            "-c",
            "128:the last entry",
            img.to_str().unwrap(),
        ],
        None,
    );
    let verify = run("sgdisk", "gdisk", &["-v", img.to_str().unwrap()], None);
    assert!(verify.contains("No problems found"), "{verify}");
    for n in GPT_NUMBERS {
        let (first, last, _, _) = sgdisk_info(&img, n);
        write_pattern(&img, n, first * 512, (last - first + 1) * 512);
    }
    img
}

#[test]
fn gpt_made_by_sgdisk() {
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_image(dir.path());

    let image = Raw::open(&img);
    let (kind, parts) = read_table(&image, &img).unwrap().unwrap();
    assert_eq!(kind, TableKind::Gpt);
    assert_eq!(
        parts.iter().map(|p| p.number).collect::<Vec<_>>(),
        GPT_NUMBERS
    );
    for (i, n) in GPT_NUMBERS.into_iter().enumerate() {
        let (first, last, guid, name) = sgdisk_info(&img, n);
        let part = find(&image, &img, n).unwrap();
        assert_eq!(part, parts[i]);
        assert_eq!(
            (part.start, part.len),
            (first * 512, (last - first + 1) * 512)
        );
        assert_eq!(part.type_id, guid);
        assert_eq!(part.name, name);
        assert!(
            read_view(&image, &part) == pattern(n, part.len),
            "partition {n}"
        );
    }
    assert_eq!(parts[1].type_id, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(parts[1].name, "EFI system");
    assert_eq!(parts[4].name, "the last entry");

    assert!(err_text(find(&image, &img, 0)).contains("there is no partition 0"));
    let e = err_text(find(&image, &img, 5));
    assert!(
        e.contains("partition 5 is empty in the GPT table (it has partitions 1, 2, 3, 4, 128)"),
        "{e}"
    );
    let e = find(&image, &img, 129).unwrap_err();
    assert!(matches!(e, DiskError::Invalid(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("partition 129 does not exist: the GPT has 128 entries (1-128)"),
        "{e}"
    );
}

#[test]
fn gpt_backup_header_rescues_a_damaged_primary() {
    let dir = tempfile::tempdir().unwrap();
    let img = sgdisk_image(dir.path());
    let want = read_table(&Raw::open(&img), &img).unwrap();

    // Damage the primary header's CRC-protected disk GUID.
    let f = OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0x5A], 512 + 60).unwrap();
    let image = Raw::open(&img);
    assert_eq!(read_table(&image, &img).unwrap(), want);
    let part = find(&image, &img, 128).unwrap();
    assert!(read_view(&image, &part) == pattern(128, part.len));

    // Damage the backup header too: the error names the primary's fault.
    f.write_all_at(&[0x5A], 16 * MIB - 512 + 60).unwrap();
    let e = read_table(&Raw::open(&img), &img).unwrap_err();
    match &e {
        DiskError::Corrupt {
            format: "GPT",
            field,
            problem,
            ..
        } => {
            assert_eq!(field, "primary header CRC32");
            assert!(problem.contains("backup header CRC32"), "{problem}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn disk_without_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let img = blank(dir.path(), "plain.img", 4 * MIB);
    write_pattern(&img, 1, 0, MIB);
    let image = Raw::open(&img);
    assert_eq!(read_table(&image, &img).unwrap(), None);
    let e = find(&image, &img, 1).unwrap_err();
    assert!(matches!(e, DiskError::Invalid(_)), "{e:?}");
    assert!(
        e.to_string().contains("the image has no partition table"),
        "{e}"
    );

    // sgdisk --zap-all leaves no table behind either.
    let img = sgdisk_image(dir.path());
    run(
        "sgdisk",
        "gdisk",
        &["--zap-all", img.to_str().unwrap()],
        None,
    );
    assert_eq!(read_table(&Raw::open(&img), &img).unwrap(), None);
}
