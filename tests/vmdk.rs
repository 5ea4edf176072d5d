//! VMDK against qemu-img: images b9 writes pass `qemu-img check` and
//! `qemu-img compare`; images qemu-img writes read back byte for byte.
//! Needs `qemu-img` (Debian package `qemu-utils`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use b9::disk::capability::ImageReader;
use b9::disk::vmdk::{self, Subformat};
use b9::disk::CreateOptions;

const OPTS: CreateOptions = CreateOptions {
    timestamp: 1_700_000_000,
};

fn qemu_img(args: &[&str]) -> (bool, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run qemu-img ({e}): install the Debian package qemu-utils")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A 40 MiB + 3 sector raw image: scattered data, unaligned pieces, holes,
/// an all-zero-but-written region and data in the last sector.
fn make_raw(path: &Path) -> Vec<u8> {
    let size = (40 << 20) + 3 * 512;
    let mut data = vec![0u8; size];
    let mut seed = 0x1234_5678_u32;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for _ in 0..60 {
        let off = rnd() as usize % (size - 300_000);
        let len = rnd() as usize % 200_000 + 1;
        let fill = rnd() as u8;
        for (i, b) in data[off..off + len].iter_mut().enumerate() {
            *b = if fill & 1 == 0 {
                fill
            } else {
                (rnd() >> 8) as u8 ^ i as u8
            };
        }
    }
    // A long compressible run and a long incompressible one.
    data[8 << 20..12 << 20].fill(0x5a);
    for b in &mut data[20 << 20..23 << 20] {
        *b = (rnd() >> 3) as u8;
    }
    data[size - 5..].copy_from_slice(b"tail!");
    std::fs::write(path, &data).unwrap();
    data
}

/// Converts like the converter: reads the raw file in 1 MB pieces (not
/// grain-aligned) and skips all-zero pieces.
fn convert(raw: &[u8], out: &Path, sub: Subformat) {
    let mut w = vmdk::create(out, raw.len() as u64, sub, &OPTS).unwrap();
    for (i, piece) in raw.chunks(1_000_000).enumerate() {
        if piece.iter().all(|&b| b == 0) {
            continue;
        }
        w.write_at(i as u64 * 1_000_000, piece).unwrap();
    }
    w.finish().unwrap();
}

fn read_all(r: &dyn ImageReader) -> Vec<u8> {
    let mut buf = vec![0u8; r.size() as usize];
    // In uneven pieces, to exercise grain-crossing reads.
    let mut off = 0;
    while off < buf.len() {
        let n = (buf.len() - off).min(777_777);
        r.read_at(&mut buf[off..off + n], off as u64).unwrap();
        off += n;
    }
    buf
}

fn assert_extents_cover(r: &dyn ImageReader, data: &[u8]) {
    let ext = r.data_extents().unwrap();
    let mut covered = vec![false; data.len()];
    let mut prev = 0;
    for e in &ext {
        assert!(e.start >= prev, "extents unsorted or overlapping: {ext:?}");
        prev = e.start + e.len;
        covered[e.start as usize..(e.start + e.len) as usize].fill(true);
    }
    for (i, &b) in data.iter().enumerate() {
        assert!(
            b == 0 || covered[i],
            "non-zero byte {i} outside the data extents"
        );
    }
}

#[test]
fn b9_written_vmdk_passes_qemu_img_check_and_compare() {
    let d = tempfile::tempdir().unwrap();
    let raw_path = d.path().join("src.raw");
    let raw = make_raw(&raw_path);
    for (sub, create_type) in [
        (Subformat::MonolithicSparse, "monolithicSparse"),
        (Subformat::StreamOptimized, "streamOptimized"),
    ] {
        let out = d.path().join(format!("{create_type}.vmdk"));
        convert(&raw, &out, sub);

        let (ok, text) = qemu_img(&["check", "-f", "vmdk", p(&out)]);
        assert!(ok, "qemu-img check {create_type}: {text}");
        assert!(
            text.contains("No errors were found on the image."),
            "{text}"
        );

        let (ok, text) = qemu_img(&["compare", "-f", "raw", "-F", "vmdk", p(&raw_path), p(&out)]);
        assert!(ok, "qemu-img compare {create_type}: {text}");
        assert!(text.contains("Images are identical."), "{text}");

        let (ok, text) = qemu_img(&["info", "-f", "vmdk", p(&out)]);
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("create type: {create_type}")),
            "{text}"
        );
        assert!(text.contains(&format!("({} bytes)", raw.len())), "{text}");

        // And b9 reads its own output back.
        let r = vmdk::open(&out).unwrap();
        assert_eq!(read_all(r.as_ref()), raw);
        assert_extents_cover(r.as_ref(), &raw);
    }
}

#[test]
fn b9_written_vmdk_is_reproducible() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let raw = make_raw(&a.path().join("src.raw"));
    for sub in [Subformat::MonolithicSparse, Subformat::StreamOptimized] {
        convert(&raw, &a.path().join("x.vmdk"), sub);
        convert(&raw, &b.path().join("x.vmdk"), sub);
        let x = std::fs::read(a.path().join("x.vmdk")).unwrap();
        let y = std::fs::read(b.path().join("x.vmdk")).unwrap();
        assert!(x == y, "{sub:?}: two writes differ");
    }
}

#[test]
fn reads_qemu_img_made_vmdk() {
    let d = tempfile::tempdir().unwrap();
    let raw_path = d.path().join("src.raw");
    let raw = make_raw(&raw_path);
    for opts in [
        "adapter_type=lsilogic",
        "subformat=streamOptimized,adapter_type=lsilogic",
        "subformat=monolithicFlat",
        "subformat=twoGbMaxExtentSparse",
        "subformat=twoGbMaxExtentFlat",
    ] {
        let out = d.path().join(format!("q-{}.vmdk", opts.len()));
        let (ok, text) = qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vmdk",
            "-o",
            opts,
            p(&raw_path),
            p(&out),
        ]);
        assert!(ok, "qemu-img convert -o {opts}: {text}");
        let head = std::fs::read(&out).unwrap();
        assert!(vmdk::sniff(&head[..64.min(head.len())]), "{opts}");
        let r = vmdk::open(&out).unwrap_or_else(|e| panic!("{opts}: {e}"));
        assert_eq!(r.size(), raw.len() as u64, "{opts}");
        assert!(read_all(r.as_ref()) == raw, "{opts}: bytes differ");
        assert_extents_cover(r.as_ref(), &raw);
    }
}

#[test]
fn b9_written_empty_vmdk_passes_qemu_img_check() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("zero.raw");
    std::fs::write(&raw, vec![0u8; 3 << 20]).unwrap();
    for sub in [Subformat::MonolithicSparse, Subformat::StreamOptimized] {
        let out = d.path().join(format!("{sub:?}.vmdk"));
        vmdk::create(&out, 3 << 20, sub, &OPTS)
            .unwrap()
            .finish()
            .unwrap();
        let (ok, text) = qemu_img(&["check", "-f", "vmdk", p(&out)]);
        assert!(
            ok && text.contains("No errors were found"),
            "{sub:?}: {text}"
        );
        let (ok, text) = qemu_img(&["compare", "-f", "raw", "-F", "vmdk", p(&raw), p(&out)]);
        assert!(
            ok && text.contains("Images are identical."),
            "{sub:?}: {text}"
        );
        assert!(vmdk::open(&out).unwrap().data_extents().unwrap().is_empty());
    }
}
