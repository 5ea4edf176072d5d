//! 1,000 cloud-init ISOs from one `Each` (meta-data, merged user-data and a
//! few files each): `b9 build` against 1,000 `genisoimage` calls over the same
//! trees. Prints both times and the ratio (target: b9 at least 5x faster).
//!
//! `cargo bench --bench cloud_init` runs the full size; under `cargo test`
//! (no `--bench` argument) it runs 20 instances as a smoke test.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

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
                   , ASTObj [("fqdn", ASTString "${{host}}.example.org"), ("runcmd", ASTArr [ASTString "touch /ok"])] ]))
  , SetPermissions 7 5 5 [ FromFile "scripts/setup.sh" (Source ExpandVariables "ci/setup.sh") ]
  , IntoDirectory "etc" [ FromFile "motd" (Source NoConversion "ci/motd") ]
  ]
  [ Each [("host", [{hosts}])] [ Artifact (IID "${{host}}") (CloudInit [CI_ISO] "out/${{host}}") ] ]
"#
        ),
    )?;

    let b9 = env!("CARGO_BIN_EXE_b9");
    let start = Instant::now();
    let out = Command::new(b9)
        .args(["-q", "-k", "build", "-f", "bench.b9"])
        .current_dir(dir)
        .env("HOME", dir.join("home"))
        .output()
        .map_err(|e| format!("run b9: {e}"))?;
    let b9_time = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "b9 build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // The same trees, kept in the build directory by -k.
    let trees = instance_trees(dir)?;
    if trees.len() != n {
        return Err(format!(
            "expected {n} instance trees, found {}",
            trees.len()
        ));
    }
    std::fs::create_dir_all(dir.join("geniso")).map_err(|e| e.to_string())?;
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
    let gen_time = start.elapsed();

    let ratio = gen_time.as_secs_f64() / b9_time.as_secs_f64();
    println!("{n} cloud-init ISOs");
    println!(
        "b9 build (sources + ISOs):      {:8.3} s",
        b9_time.as_secs_f64()
    );
    println!(
        "{n} x genisoimage (ISOs only): {:8.3} s",
        gen_time.as_secs_f64()
    );
    println!(
        "b9 is {ratio:.1}x faster (b9/genisoimage = {:.3}; target: at least 5x faster: {})",
        1.0 / ratio,
        if ratio >= 5.0 { "met" } else { "MISSED" }
    );
    Ok(())
}

fn instance_trees(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
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
