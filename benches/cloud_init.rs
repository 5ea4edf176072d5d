//! 1,000 cloud-init ISOs from one `Each` (meta-data, merged user-data and a
//! few files each): `b9 build` against 1,000 `genisoimage` calls over the same
//! trees, first into fresh outputs, then again over the ISOs of the first
//! run (a rebuild). Prints the times and ratios (target: b9 at least 5x
//! faster, also when rebuilding).
//!
//! `cargo bench --bench cloud_init` runs the full size; under `cargo test`
//! (no `--bench` argument) it runs 20 instances as a smoke test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 1000 } else { 20 };
    if let Err(e) = run(n) {
        eprintln!("cloud_init bench: {e}");
        std::process::exit(1);
    }
}

fn run(n: usize) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let write = |p: &str, t: &str| std::fs::write(dir.join(p), t).map_err(|e| format!("{p}: {e}"));
    std::fs::create_dir_all(dir.join("ci")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir.join("home")).map_err(|e| e.to_string())?;
    write(
        "ci/meta-data.in",
        "instance-id: ${instance_id}\nlocal-hostname: ${host}.example.org\n",
    )?;
    write(
        "ci/base.yaml",
        "#cloud-config\npackages: [nginx, chrony]\nruncmd:\n  - [systemctl, enable, nginx]\n",
    )?;
    write(
        "ci/setup.sh",
        "#!/bin/sh\nset -e\necho configuring ${host}\n",
    )?;
    write("ci/host.yaml", "fqdn: ${host}.example.org\n")?;
    write("ci/motd", "Welcome.\n")?;
    let mut hosts = String::new();
    for i in 0..n {
        let _ = write!(hosts, "{}\"host-{i:04}\"", if i == 0 { "" } else { ", " });
    }
    write(
        "bench.b9",
        &format!(
            r#"Sources
  [ FromContent "meta-data" (FromTextFile (Source ExpandVariables "ci/meta-data.in"))
  , FromContent "user-data"
      (RenderCloudConfig
         (ASTMerge [ ASTParse (Source NoConversion "ci/base.yaml")
                   , ASTParse (Source ExpandVariables "ci/host.yaml")
                   , ASTObj [("runcmd", ASTArr [ASTString "touch /ok"])] ]))
  , SetPermissions 7 5 5 [ FromFile "scripts/setup.sh" (Source ExpandVariables "ci/setup.sh") ]
  , IntoDirectory "etc" [ FromFile "motd" (Source NoConversion "ci/motd") ]
  ]
  [ Each [("host", [{hosts}])] [ Artifact (IID "${{host}}") (CloudInit [CI_ISO] "out/${{host}}") ] ]
"#
        ),
    )?;

    let b9_time = b9_build(dir, &["-q", "-k", "build", "-f", "bench.b9"])?;
    // The same trees, kept in the build directory by -k.
    let trees = instance_trees(dir)?;
    if trees.len() != n {
        return Err(format!(
            "expected {n} instance trees, found {}",
            trees.len()
        ));
    }
    std::fs::create_dir_all(dir.join("geniso")).map_err(|e| e.to_string())?;
    let gen_time = genisoimage_all(dir, &trees)?;
    println!("{n} cloud-init ISOs");
    report("fresh", b9_time, gen_time, n);
    // Both write over the outputs of their first run.
    let b9_time = b9_build(dir, &["-q", "build", "-f", "bench.b9"])?;
    let gen_time = genisoimage_all(dir, &trees)?;
    report("rebuild", b9_time, gen_time, n);
    Ok(())
}

/// Runs b9 in `dir` and returns its wall time.
fn b9_build(dir: &Path, args: &[&str]) -> Result<Duration, String> {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_b9"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .output()
        .map_err(|e| format!("run b9: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "b9 build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(start.elapsed())
}

/// One `genisoimage` per tree, into `geniso/N.iso`; returns the wall time.
fn genisoimage_all(dir: &Path, trees: &[PathBuf]) -> Result<Duration, String> {
    let start = Instant::now();
    for (i, tree) in trees.iter().enumerate() {
        let iso = dir.join(format!("geniso/{i}.iso"));
        let status = Command::new("genisoimage")
            .args(["-quiet", "-volid", "cidata", "-rock", "-joliet", "-output"])
            .arg(&iso)
            .arg(tree)
            .status()
            .map_err(|e| format!("genisoimage (Debian package genisoimage) is needed: {e}"))?;
        if !status.success() {
            return Err(format!("genisoimage failed on {}", tree.display()));
        }
    }
    Ok(start.elapsed())
}

/// Prints both times and whether b9 is at least 5x faster.
fn report(what: &str, b9: Duration, gen: Duration, n: usize) {
    let ratio = gen.as_secs_f64() / b9.as_secs_f64();
    println!(
        "{what:8} b9 build (sources + ISOs) {:8.3} s   {n} x genisoimage (ISOs only) {:8.3} s",
        b9.as_secs_f64(),
        gen.as_secs_f64()
    );
    println!(
        "{what:8} b9 is {ratio:.1}x faster (b9/genisoimage = {:.3}; target: at least 5x faster: {})",
        1.0 / ratio,
        if ratio >= 5.0 { "met" } else { "MISSED" }
    );
}

fn instance_trees(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let build = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("BUILD-"))
        })
        .ok_or("no build directory kept")?;
    let mut trees: Vec<_> = std::fs::read_dir(build.join("artifact-instances"))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    trees.sort();
    Ok(trees)
}
