//! Image conversion and creation against the standard tools on the same
//! input, in one run, each into a fresh output and over the output of an
//! earlier run (a rebuild):
//! - raw->qcow2, raw->vmdk and qcow2->raw against `qemu-img convert` on a
//!   2 GiB sparse image holding ~500 MiB of scattered data;
//! - an empty ext4 of 8 GiB, 100 GiB and 1 TiB against `mkfs.ext4`;
//! - an ext4 populated from `/usr/share` against `mkfs.ext4 -d`.
//!
//! Prints, for each, the ratio b9/standard of the best and of the median
//! times of alternating runs (target: <= 1.0; populating: <= 0.25).
//!
//! `cargo bench --bench images` runs the full sizes; under `cargo test` (no
//! `--bench` argument) it runs small ones as a smoke test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::{alternate, make_sparse, report, time};

/// Target ratio b9/standard tool.
const TARGET: f64 = 1.0;
/// Target ratio for populating a file system from a directory.
const POPULATE_TARGET: f64 = 0.25;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if let Err(e) = run(full) {
        eprintln!("images bench: {e}");
        std::process::exit(1);
    }
}

/// Sizes of one run of the benchmark.
struct Scale {
    /// Virtual size and data of the conversion input.
    image: (u64, u64),
    /// Empty ext4 sizes (`--size` / `truncate -s` syntax) and runs of each.
    empty: &'static [(&'static str, usize)],
    /// The directory an ext4 is populated from, and the file system's size.
    populate: (PathBuf, &'static str),
    /// Runs of each conversion.
    runs: usize,
    /// Runs of populating (mkfs.ext4 -d takes ~45 s for /usr/share).
    populate_runs: usize,
}

fn run(full: bool) -> Result<(), String> {
    let scale = if full {
        Scale {
            image: (2 << 30, 500 << 20),
            // Tens of milliseconds each: more runs for stable figures.
            empty: &[("8G", 25), ("100G", 15), ("1T", 7)],
            populate: (PathBuf::from("/usr/share"), "2G"),
            runs: 5,
            populate_runs: 3,
        }
    } else {
        Scale {
            image: (64 << 20, 16 << 20),
            empty: &[("256M", 1)],
            populate: (Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), "64M"),
            runs: 1,
            populate_runs: 1,
        }
    };
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bench = Bench::new(tmp.path())?;
    bench.conversions(&scale)?;
    for &(size, runs) in scale.empty {
        bench.ext4(&format!("empty {size} ext4"), size, None, runs, TARGET)?;
    }
    let (from, size) = &scale.populate;
    bench.ext4(
        &format!("ext4 {}", from.display()),
        size,
        Some(from),
        scale.populate_runs,
        POPULATE_TARGET,
    )?;
    Ok(())
}

/// One timed run of a command.
type Timed<'a> = &'a dyn Fn() -> Result<Duration, String>;

/// The working directory and the b9 under test.
struct Bench {
    dir: PathBuf,
    home: PathBuf,
    b9: &'static str,
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Removes `path` if it exists: the next run writes a fresh output.
fn fresh(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

impl Bench {
    fn new(dir: &Path) -> Result<Bench, String> {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        Ok(Bench {
            dir: dir.to_path_buf(),
            home,
            b9: env!("CARGO_BIN_EXE_b9"),
        })
    }

    fn b9(&self, args: &[&str]) -> Result<Duration, String> {
        time(Command::new(self.b9).args(args).env("HOME", &self.home))
    }

    /// Runs `b9` and `other` alternately, first each into a fresh `output`
    /// (`setup_other` prepares the standard tool's fresh output, untimed),
    /// then each over the output of its previous run; reports both.
    fn fresh_and_rebuild(
        &self,
        name: &str,
        output: &Path,
        runs: usize,
        (b9, other): (Timed<'_>, Timed<'_>),
        (tool, setup_other): (&str, &dyn Fn() -> Result<(), String>),
        target: f64,
    ) -> Result<(), String> {
        let rounds = alternate(
            runs,
            || {
                fresh(output)?;
                b9()
            },
            || {
                fresh(output)?;
                setup_other()?;
                other()
            },
        )?;
        report(name, &rounds, tool, target);
        // Alternating runs overwrite each other's output: each tool writes
        // over a complete file system or image of the same size.
        let rounds = alternate(runs, b9, other)?;
        report(&format!("{name} rebuild"), &rounds, tool, target);
        Ok(())
    }

    fn conversions(&self, scale: &Scale) -> Result<(), String> {
        let (size, data) = scale.image;
        let src = self.dir.join("src.raw");
        make_sparse(&src, size, data)?;
        // The qcow2 input for qcow2->raw, made by qemu-img so both read the
        // same file.
        let qcow2 = self.dir.join("in.qcow2");
        time(Command::new("qemu-img").args(["convert", "-O", "qcow2", &s(&src), &s(&qcow2)]))?;
        println!("input: {} MiB virtual, {} MiB data", size >> 20, data >> 20);
        let cases: [(&str, &Path, &str, &[&str]); 3] = [
            (
                "raw->qcow2",
                &src,
                "out.qcow2",
                &["-O", "qcow2", "-o", "compat=1.1,lazy_refcounts=on"],
            ),
            (
                "raw->vmdk",
                &src,
                "out.vmdk",
                &["-O", "vmdk", "-o", "adapter_type=lsilogic"],
            ),
            ("qcow2->raw", &qcow2, "out.raw", &["-O", "raw"]),
        ];
        for (name, input, output, qemu_opts) in cases {
            let (i, o) = (s(input), self.dir.join(output));
            self.fresh_and_rebuild(
                name,
                &o,
                scale.runs,
                (&|| self.b9(&["image", "convert", &i, &s(&o)]), &|| {
                    time(
                        Command::new("qemu-img")
                            .arg("convert")
                            .args(qemu_opts)
                            .args([&i, &s(&o)]),
                    )
                }),
                ("qemu-img convert", &|| Ok(())),
                TARGET,
            )?;
        }
        Ok(())
    }

    /// An ext4 of `size`, empty or populated `from` a directory, against
    /// `mkfs.ext4` (`-d`) on a file of the same size.
    fn ext4(
        &self,
        name: &str,
        size: &str,
        from: Option<&PathBuf>,
        runs: usize,
        target: f64,
    ) -> Result<(), String> {
        let img = self.dir.join("fs.raw");
        let path = s(&img);
        let mut b9_args = vec!["image", "create", "--fs", "ext4", "--size", size];
        let mut mkfs_args = vec!["-q", "-F"];
        let from = from.map(|d| s(d));
        if let Some(d) = &from {
            b9_args.extend(["--from-dir", d]);
            mkfs_args.extend(["-d", d]);
        }
        b9_args.push(&path);
        mkfs_args.push(&path);
        self.fresh_and_rebuild(
            name,
            &img,
            runs,
            (&|| self.b9(&b9_args), &|| {
                time(Command::new("mkfs.ext4").args(&mkfs_args))
            }),
            // mkfs.ext4 needs the file to exist.
            ("mkfs.ext4", &|| {
                time(Command::new("truncate").args(["-s", size, &path])).map(drop)
            }),
            target,
        )?;
        fresh(&img)
    }
}
