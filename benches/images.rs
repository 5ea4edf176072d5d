//! Image conversion and creation against the standard tools on the same
//! input, in one run: raw->qcow2, raw->vmdk and qcow2->raw against
//! `qemu-img convert` on a 2 GiB sparse image holding ~500 MiB of scattered
//! data, each into a fresh output and over an existing one (a rebuild), and
//! an empty 8 GiB ext4 against `mkfs.ext4`. Prints each ratio b9/standard
//! (target: <= 1.0).
//!
//! `cargo bench --bench images` runs the full size; under `cargo test` (no
//! `--bench` argument) it runs a 64 MiB image as a smoke test.

use std::path::Path;
use std::process::Command;

mod common;
use common::{best_pair, make_sparse, report, time};

/// Target ratio b9/standard tool.
const TARGET: f64 = 1.0;

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
        let b9_convert = || {
            time(
                Command::new(b9)
                    .args(["image", "convert", &s(&i), &s(&o)])
                    .env("HOME", &home),
            )
        };
        let qemu_convert = || {
            time(
                Command::new("qemu-img")
                    .arg("convert")
                    .args(qemu_opts)
                    .args([&s(&i), &s(&o)]),
            )
        };
        let fresh = |convert: &dyn Fn() -> Result<std::time::Duration, String>| {
            let _ = std::fs::remove_file(&o);
            convert()
        };
        // Each run writes a new file: no tool pays for replacing an old one.
        let (b9_time, qemu_time) = best_pair(runs, || fresh(&b9_convert), || fresh(&qemu_convert))?;
        report(name, b9_time, "qemu-img convert", qemu_time, TARGET);
        // A rebuild: both write over the output of an earlier run.
        let (b9_time, qemu_time) = best_pair(runs, b9_convert, qemu_convert)?;
        report(
            &format!("{name} rebuild"),
            b9_time,
            "qemu-img convert",
            qemu_time,
            TARGET,
        );
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
        TARGET,
    );
    Ok(())
}
