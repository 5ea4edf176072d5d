//! Parses, expands and checks a generated build file with 10,000 artifacts
//! (`Each` over 10,000 values, with `Sources` reading an expanded template),
//! and prints the time of each stage against the 1 s target.
//!
//! Run with `cargo bench --bench expand`.

use std::fmt::Write as _;
use std::time::Instant;

use b9::eval::check::{check, Dirs};
use b9::eval::expand::{expand, BuildVars};
use b9::lang::{parse, source::Source};

const INSTANCES: usize = 10_000;

fn main() {
    let dir = std::env::temp_dir().join(format!("b9-bench-expand-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(dir.join("ci")) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let template = "instance-id: ${host}\nlocal-hostname: ${host}.${domain}\n";
    let _ = std::fs::write(dir.join("ci/meta-data.in"), template);
    let _ = std::fs::write(dir.join("ci/setup.sh"), "#!/bin/sh\necho ok\n");

    let mut hosts = String::new();
    for i in 0..INSTANCES {
        let _ = write!(hosts, "{}\"host-{i}\"", if i == 0 { "" } else { ", " });
    }
    let text = format!(
        r#"Let [("domain", "example.org")]
  [ Sources
      [ FromContent "meta-data" (FromTextFile (Source ExpandVariables "ci/meta-data.in"))
      , FromContent "user-data"
          (RenderCloudConfig
             (ASTMerge [ AST (MkCloudConfigYaml {{fromCloudConfigYaml = YamlObject "runcmd: [ls]"}})
                       , ASTObj [("hostname", ASTString "${{host}}")] ]))
      , SetPermissions 7 5 5 [ FromFile "setup.sh" (Source NoConversion "ci/setup.sh") ]
      ]
      [ Each [("host", [{hosts}])]
          [ Artifact (IID "${{host}}") (CloudInit [CI_ISO, CI_DIR] "out/${{host}}") ] ]
  ]"#
    );
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
    let _ = std::fs::remove_dir_all(&dir);

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
        if total.as_secs_f64() < 1.0 {
            "met"
        } else {
            "MISSED"
        }
    );
}
