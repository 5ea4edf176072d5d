//! Parses, expands and checks a generated build file with 10,000 artifacts
//! (`Each` over 10,000 values, with `Sources` reading an expanded template),
//! and prints the time of each stage against the 1 s target. Then runs
//! `b9 check` on the same build file with 1,000,000 artifacts and prints its
//! time and peak memory (max RSS) against the 5 s / 500 MB targets.
//!
//! Run with `cargo bench --bench expand`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use b9::diag::source::Source;
use b9::eval::check::{check, Dirs};
use b9::eval::expand::{expand, BuildVars};
use b9::lang::parse;

const INSTANCES: usize = 10_000;

/// The artifacts of the `b9 check` run.
const SCALE: usize = 1_000_000;
const SCALE_SECONDS: f64 = 5.0;
const SCALE_MIB: i64 = 500;

fn main() {
    let dir = std::env::temp_dir().join(format!("b9-bench-expand-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(dir.join("ci")) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let template = "instance-id: ${host}\nlocal-hostname: ${host}.${domain}\n";
    let _ = std::fs::write(dir.join("ci/meta-data.in"), template);
    let _ = std::fs::write(dir.join("ci/setup.sh"), "#!/bin/sh\necho ok\n");

    let text = build_file(INSTANCES);
    println!("build file: {} bytes, {INSTANCES} artifacts", text.len());

    let vars = BuildVars {
        args: Vec::new(),
        project_root: dir.display().to_string(),
        build_dir: dir.join("BUILD-bench").display().to_string(),
        build_date: "2026-11-26-00:00:00".into(),
        build_id: "BENCH".into(),
    };
    let dirs = Dirs {
        cwd: dir.clone(),
        project_root: dir.clone(),
        protected: Vec::new(),
    };

    let start = Instant::now();
    let file = match parse(Source::new("bench.b9", text)) {
        Ok(f) => f,
        Err(d) => {
            eprintln!("parse failed: {d:?}");
            std::process::exit(1);
        }
    };
    let parsed = start.elapsed();
    let (instances, diags) = expand(std::slice::from_ref(&file), &vars);
    let expanded = start.elapsed();
    let problems = check(&instances, &dirs);
    let total = start.elapsed();

    if !diags.is_empty() || problems.iter().any(|d| d.is_error()) || instances.len() != INSTANCES {
        eprintln!(
            "unexpected result: {} instances, {diags:?} {problems:?}",
            instances.len()
        );
        std::process::exit(1);
    }
    println!("parse:  {:8.1} ms", parsed.as_secs_f64() * 1e3);
    println!("expand: {:8.1} ms", (expanded - parsed).as_secs_f64() * 1e3);
    println!("check:  {:8.1} ms", (total - expanded).as_secs_f64() * 1e3);
    println!(
        "total:  {:8.1} ms for {INSTANCES} artifacts (target < 1000 ms: {})",
        total.as_secs_f64() * 1e3,
        verdict(total.as_secs_f64() < 1.0)
    );
    let scaled = check_at_scale(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = scaled {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// The build file: `Each` over `hosts` values, three sources, two outputs each.
fn build_file(hosts: usize) -> String {
    let mut values = String::new();
    for i in 0..hosts {
        let _ = write!(values, "{}\"host-{i}\"", if i == 0 { "" } else { ", " });
    }
    format!(
        r#"Let [("domain", "example.org")]
  [ Sources
      [ FromContent "meta-data" (FromTextFile (Source ExpandVariables "ci/meta-data.in"))
      , FromContent "user-data"
          (RenderCloudConfig
             (ASTMerge [ AST (MkCloudConfigYaml {{fromCloudConfigYaml = YamlObject "runcmd: [ls]"}})
                       , ASTObj [("hostname", ASTString "${{host}}")] ]))
      , SetPermissions 7 5 5 [ FromFile "setup.sh" (Source NoConversion "ci/setup.sh") ]
      ]
      [ Each [("host", [{values}])]
          [ Artifact (IID "${{host}}") (CloudInit [CI_ISO, CI_DIR] "out/${{host}}") ] ]
  ]"#
    )
}

/// `b9 check` of the build file with [`SCALE`] artifacts, as a child process
/// in `dir`, so its peak memory is its own.
fn check_at_scale(dir: &Path) -> Result<(), String> {
    let file = dir.join("scale.b9");
    std::fs::write(&file, build_file(SCALE))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let home = dir.join("home");
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_b9"))
        .current_dir(dir)
        .env("HOME", &home)
        .args(["check", "-f"])
        .arg(&file)
        .output()
        .map_err(|e| format!("cannot run b9: {e}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "b9 check failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mib = children_max_rss_kib() / 1024;
    println!(
        "b9 check, {SCALE} artifacts: {seconds:.2} s (target < {SCALE_SECONDS} s: {}), max RSS {mib} MiB (target < {SCALE_MIB} MiB: {})",
        verdict(seconds < SCALE_SECONDS),
        verdict(mib < SCALE_MIB)
    );
    Ok(())
}

/// The largest peak resident set of the children waited for, in KiB.
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage for the call's duration.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return -1;
    }
    usage.ru_maxrss
}
