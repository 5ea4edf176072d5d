//! A one-command `VmScript` in a real guest against libguestfs on the same
//! busybox root image (raw), under the same accelerator (TCG: b9 with
//! `[vm] accel: tcg`, libguestfs with `LIBGUESTFS_BACKEND=direct` and
//! `LIBGUESTFS_BACKEND_SETTINGS=force_tcg`) and the same guest kernel (the
//! `fixtures/guest-kernel` fixture; supermin is pointed at it with
//! `SUPERMIN_KERNEL` and `SUPERMIN_MODULES`). Measures:
//!
//! - (a) the time from the start of the process to the script's first
//!   command: for b9 (`b9 build`, the `/` image a `SourceImage` with a
//!   `Transient` destination, script `Run "echo" [MARKER]`) the moment the
//!   marker's output line appears on b9's stderr; for
//!   `guestfish -x --rw -a IMG run : mount /dev/sda / : sh "echo MARKER"`
//!   the moment its trace line `libguestfs: trace: sh "echo MARKER"`
//!   appears, that is when the command is sent to the appliance (before it
//!   runs: this favours guestfish slightly). The moment its result comes
//!   back (`trace: sh = ...`) is printed too;
//! - (b) the total wall time of each process.
//!
//! Prints the medians and the ratios b9/libguestfs (target: <= 0.5). Runs
//! alternate b9 / guestfish after one untimed warm-up run of each (which
//! builds b9's appliance and supermin's, each in a private cache under
//! `target/vm-bench/`).
//!
//! `cargo bench --bench vm` runs 5 rounds; under `cargo test` (no `--bench`
//! argument) 1 round as a smoke test. `B9_BENCH_B9=PATH` measures another
//! b9 executable (with its `b9-agent` beside it), such as an older build.
//! `B9_BENCH_VERBOSE=1` prints every run's output.
//!
//! Needs `guestfish` (libguestfs-tools), `depmod` (kmod) and, with
//! supermin 5.2 (Debian 12), a `/lib/modules` directory on the host:
//! `scripts/setup` provides all three. supermin also needs a `modules.dep`,
//! which the fixture does not have: the bench makes a hard-linked copy of the
//! fixture's modules under `target/vm-bench/` and runs `depmod` there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // like the tests: fail loudly

#[allow(dead_code)]
#[path = "../tests/common/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../tests/common/guest.rs"]
mod guest;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the script's command prints.
const MARKER: &str = "b9-first-command-marker";

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if let Err(e) = run(if full { 5 } else { 1 }) {
        eprintln!("vm bench: {e}");
        std::process::exit(1);
    }
}

/// One timed process: when each watched line first appeared, and the end.
struct Timing {
    seen: Vec<Option<Duration>>,
    total: Duration,
}

/// Runs `cmd`, reading its stderr line by line as it streams, and notes
/// when a line containing each of `watch` first appears. Fails when the
/// process fails or a watched line never appeared.
fn timed(cmd: &mut Command, watch: &[&str]) -> Result<Timing, String> {
    let _ = Command::new("sync").status();
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut seen = vec![None; watch.len()];
    let mut log = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let at = start.elapsed();
        for (slot, w) in seen.iter_mut().zip(watch) {
            if slot.is_none() && line.contains(w) {
                *slot = Some(at);
            }
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let total = start.elapsed();
    let stdout = out_thread.join().unwrap_or_default();
    let verbose = std::env::var_os("B9_BENCH_VERBOSE").is_some();
    if verbose {
        eprintln!("{stdout}{log}");
    }
    if !status.success() {
        return Err(format!("{cmd:?} failed ({status}):\n{stdout}{log}"));
    }
    if let Some(i) = seen.iter().position(Option::is_none) {
        return Err(format!(
            "{cmd:?} printed no line with {:?}:\n{stdout}{log}",
            watch[i]
        ));
    }
    Ok(Timing { seen, total })
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn run(rounds: usize) -> Result<(), String> {
    let guest = guest::guest();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let b9 = std::env::var_os("B9_BENCH_B9")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_b9")), PathBuf::from);
    let b9 = b9.as_path();
    let work = repo.join("target/vm-bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let modules = modules_with_dep(&guest.modules, &work.join("kmods"))?;
    if !Path::new("/lib/modules").is_dir() {
        return Err(
            "supermin needs a /lib/modules directory on the host (scripts/setup makes it)".into(),
        );
    }

    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let root = dir.join("root.raw");
    let st = Command::new(repo.join("scripts/busybox-root"))
        .arg(&root)
        .env("B9", b9)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("scripts/busybox-root: {e}"))?;
    if !st.success() {
        return Err(format!("scripts/busybox-root failed ({st})"));
    }
    let project = b9_project(dir, &root, guest)?;
    let gf_image = dir.join("gf.raw");
    let gf_cache = work.join("guestfs-cache");
    std::fs::create_dir_all(&gf_cache).map_err(|e| e.to_string())?;

    let b9_run = || {
        timed(
            Command::new(b9)
                .args(["-c", "b9.conf", "build", "-f", "one.b9"])
                .current_dir(&project)
                .env("HOME", project.join("home"))
                .env("B9_CACHE_DIR", work.join("b9-cache")),
            &[&format!("> {MARKER}")],
        )
    };
    let gf_run = || {
        // A fresh copy of the same image each time (untimed).
        std::fs::copy(&root, &gf_image).map_err(|e| e.to_string())?;
        timed(
            Command::new("guestfish")
                .args(["-x", "--rw", "--format=raw", "-a"])
                .arg(&gf_image)
                .args(["run", ":", "mount", "/dev/sda", "/", ":", "sh"])
                .arg(format!("echo {MARKER}"))
                .env("LIBGUESTFS_BACKEND", "direct")
                .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
                .env("LIBGUESTFS_CACHEDIR", &gf_cache)
                .env("SUPERMIN_KERNEL", &guest.kernel)
                .env("SUPERMIN_MODULES", &modules),
            &[
                &format!("libguestfs: trace: sh \"echo {MARKER}\""),
                "libguestfs: trace: sh = ",
            ],
        )
    };

    println!("b9: {}", b9.display());
    println!("load average before: {}", loadavg());
    // Warm-up (untimed): builds and caches both appliances.
    let warm = Instant::now();
    b9_run()?;
    let b9_warm = warm.elapsed();
    let warm = Instant::now();
    gf_run()?;
    println!(
        "warm-up (appliances built and cached): b9 {:.1} s, guestfish {:.1} s",
        b9_warm.as_secs_f64(),
        warm.elapsed().as_secs_f64()
    );

    let verbose = std::env::var_os("B9_BENCH_VERBOSE").is_some();
    let (mut b9_first, mut b9_total) = (Vec::new(), Vec::new());
    let (mut gf_sent, mut gf_back, mut gf_total) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let b = b9_run()?;
        let g = gf_run()?;
        if verbose || rounds > 1 {
            println!(
                "  round {}: b9 first {:.2} s total {:.2} s / guestfish sent {:.2} s \
                 result {:.2} s total {:.2} s (load {})",
                round + 1,
                b.seen[0].unwrap_or_default().as_secs_f64(),
                b.total.as_secs_f64(),
                g.seen[0].unwrap_or_default().as_secs_f64(),
                g.seen[1].unwrap_or_default().as_secs_f64(),
                g.total.as_secs_f64(),
                loadavg()
            );
        }
        b9_first.push(b.seen[0].unwrap_or_default());
        b9_total.push(b.total);
        gf_sent.push(g.seen[0].unwrap_or_default());
        gf_back.push(g.seen[1].unwrap_or_default());
        gf_total.push(g.total);
    }
    println!(
        "medians of {rounds} round(s), TCG, same kernel and image; load average after: {}",
        loadavg()
    );
    println!(
        "  guestfish's first command: sent at {:.2} s, result back at {:.2} s",
        median(&mut gf_sent).as_secs_f64(),
        median(&mut gf_back).as_secs_f64()
    );
    report(
        "(a) to first command",
        median(&mut b9_first),
        median(&mut gf_sent),
    );
    report("(b) total", median(&mut b9_total), median(&mut gf_total));
    Ok(())
}

fn report(name: &str, b9: Duration, gf: Duration) {
    let ratio = b9.as_secs_f64() / gf.as_secs_f64();
    println!(
        "{name:22} b9 {:7.2} s   guestfish {:7.2} s   b9/libguestfs = {ratio:.2} ({})",
        b9.as_secs_f64(),
        gf.as_secs_f64(),
        if ratio <= 0.5 { "met" } else { "MISSED" }
    );
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A b9 project in `dir` building one artifact: `root` at `/` (a
/// transient copy), one `echo`.
fn b9_project(dir: &Path, root: &Path, guest: &guest::Guest) -> Result<PathBuf, String> {
    let p = dir.join("b9");
    std::fs::create_dir_all(p.join("home")).map_err(|e| e.to_string())?;
    std::fs::copy(root, p.join("root.raw")).map_err(|e| e.to_string())?;
    std::fs::write(
        p.join("b9.conf"),
        format!(
            "{}[vm]\nbackend: qemu\naccel: tcg\nkernel: {}\nmodules_dir: {}\nqemu_binary:\n\n\
             [libvirt]\nconnection: qemu:///system\nnetwork:\n",
            guest::global_section(900),
            guest.kernel.display(),
            guest.modules.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        p.join("one.b9"),
        format!(
            r#"Artifact (IID "one")
  (VmImages
     [ ImageTarget Transient
         (SourceImage (Image "root.raw" Raw Ext4) NoPT KeepSize) (MountPoint "/")
     ]
     (VmScript X86_64 [] (Run "echo" ["{MARKER}"])))
"#
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(p)
}

/// The fixture's modules directory with a `modules.dep` (supermin reads
/// it; the fixture has none): a hard-linked copy (a plain one across file
/// systems) under `base/lib/modules/<release>`, made once, and `depmod`.
fn modules_with_dep(modules: &Path, base: &Path) -> Result<PathBuf, String> {
    let release = modules
        .file_name()
        .ok_or_else(|| format!("{}: no release name", modules.display()))?;
    let parent = base.join("lib/modules");
    let copy = parent.join(release);
    if copy.join("modules.dep").is_file() {
        return Ok(copy);
    }
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&parent).map_err(|e| e.to_string())?;
    let linked = Command::new("cp")
        .arg("-al")
        .arg(modules)
        .arg(&parent)
        .status()
        .is_ok_and(|st| st.success());
    if !linked {
        let _ = std::fs::remove_dir_all(&copy);
        let st = Command::new("cp")
            .arg("-a")
            .arg(modules)
            .arg(&parent)
            .status()
            .map_err(|e| format!("cp: {e}"))?;
        if !st.success() {
            return Err(format!("cannot copy {}", modules.display()));
        }
    }
    let depmod = ["depmod", "/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find(|d| Command::new(d).arg("--version").output().is_ok())
        .ok_or("depmod not found (Debian: apt-get install kmod)")?;
    let st = Command::new(depmod)
        .arg("-b")
        .arg(base)
        .arg(release)
        .status()
        .map_err(|e| format!("{depmod}: {e}"))?;
    if !st.success() {
        return Err(format!("{depmod} -b {} failed ({st})", s(base)));
    }
    Ok(copy)
}
