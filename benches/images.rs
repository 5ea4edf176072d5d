//! Image conversion and creation against the standard tools on the same
//! input, in one run: raw->qcow2, raw->vmdk and qcow2->raw against
//! `qemu-img convert` on a 2 GiB sparse image holding ~500 MiB of scattered
//! data, and an empty 8 GiB ext4 against `mkfs.ext4`. Prints each ratio
//! b9/standard (target: <= 1.0).
//!
//! `cargo bench --bench images` runs the full size; under `cargo test` (no
//! `--bench` argument) it runs a 64 MiB image as a smoke test.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{best_pair, time};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if let Err(e) = run(full) {
        eprintln!("images bench: {e}");
        std::process::exit(1);
    }
}

fn run(full: bool) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let (size, data, ext4_size, runs) = if full {
        (2u64 << 30, 500u64 << 20, "8G", 5)
    } else {
        (64u64 << 20, 16u64 << 20, "256M", 1)
    };
    let src = dir.join("src.raw");
    make_sparse(&src, size, data)?;
    let b9 = env!("CARGO_BIN_EXE_b9");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;

    // The qcow2 input for qcow2->raw, made by qemu-img so both read the same file.
    time(Command::new("qemu-img").args([
        "convert",
        "-O",
        "qcow2",
        &s(&src),
        &s(&dir.join("in.qcow2")),
    ]))?;

    println!("input: {} MiB virtual, {} MiB data", size >> 20, data >> 20);
    let cases: [(&str, &str, &str, &[&str]); 3] = [
        (
            "raw->qcow2",
            "src.raw",
            "out.qcow2",
            &["-O", "qcow2", "-o", "compat=1.1,lazy_refcounts=on"],
        ),
        (
            "raw->vmdk",
            "src.raw",
            "out.vmdk",
            &["-O", "vmdk", "-o", "adapter_type=lsilogic"],
        ),
        ("qcow2->raw", "in.qcow2", "out.raw", &["-O", "raw"]),
    ];
    for (name, input, output, qemu_opts) in cases {
        let (i, o) = (dir.join(input), dir.join(output));
        // Each run writes a new file: no tool pays for replacing an old one.
        let (b9_time, qemu_time) = best_pair(
            runs,
            || {
                let _ = std::fs::remove_file(&o);
                time(
                    Command::new(b9)
                        .args(["image", "convert", &s(&i), &s(&o)])
                        .env("HOME", &home),
                )
            },
            || {
                let _ = std::fs::remove_file(&o);
                time(
                    Command::new("qemu-img")
                        .arg("convert")
                        .args(qemu_opts)
                        .args([&s(&i), &s(&o)]),
                )
            },
        )?;
        report(name, b9_time, "qemu-img convert", qemu_time);
    }

    let img = dir.join("empty.raw");
    let size_arg = ext4_size;
    // A 20 ms command: many more runs for a stable minimum.
    let (b9_time, mkfs_time) = best_pair(
        runs * 5,
        || {
            let _ = std::fs::remove_file(&img);
            time(
                Command::new(b9)
                    .args([
                        "image",
                        "create",
                        "--fs",
                        "ext4",
                        "--size",
                        size_arg,
                        &s(&img),
                    ])
                    .env("HOME", &home),
            )
        },
        || {
            let _ = std::fs::remove_file(&img);
            // mkfs.ext4 needs the file to exist: the truncate is not timed.
            time(Command::new("truncate").args(["-s", size_arg, &s(&img)]))?;
            time(Command::new("mkfs.ext4").args(["-q", "-F", &s(&img)]))
        },
    )?;
    report(
        &format!("empty {ext4_size} ext4"),
        b9_time,
        "mkfs.ext4",
        mkfs_time,
    );
    Ok(())
}

fn report(name: &str, b9: Duration, tool: &str, other: Duration) {
    let ratio = b9.as_secs_f64() / other.as_secs_f64();
    println!(
        "{name:16} b9 {:7.3} s   {tool} {:7.3} s   b9/{tool} = {ratio:.2} ({})",
        b9.as_secs_f64(),
        other.as_secs_f64(),
        if ratio <= 1.0 { "met" } else { "MISSED" }
    );
}

/// A sparse file of `size` bytes with `data` bytes in 1 MiB pieces at
/// pseudo-random places.
fn make_sparse(path: &Path, size: u64, data: u64) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    f.set_len(size).map_err(|e| e.to_string())?;
    let piece = 1u64 << 20;
    let slots = size / piece;
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut buf = vec![0u8; piece as usize];
    let mut used = std::collections::BTreeSet::new();
    while (used.len() as u64) * piece < data {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let slot = seed % slots;
        if !used.insert(slot) {
            continue;
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u64 ^ slot).wrapping_mul(2654435761) as u8 | 1;
        }
        f.write_all_at(&buf, slot * piece)
            .map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())
}
