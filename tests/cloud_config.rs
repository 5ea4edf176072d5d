//! Cloud-configs checked by `b9 check` and `b9 build` against cloud-init's
//! own schema: each problem at the right `file:line:col`, agreement with
//! `cloud-init schema --config-file` on accept/reject, and a build that
//! refuses an invalid cloud-config before writing anything.
//!
//! The schema is the installed cloud-init's (never a copy in the
//! repository): without cloud-init the tests print a note and pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A project directory with its own HOME and b9.conf.
struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(
            dir.join("b9.conf"),
            "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\nunique_build_dirs: True\nverbosity: Just LogInfo\n",
        )
        .unwrap();
        Project { _tmp: tmp, dir }
    }

    fn write(&self, name: &str, text: &str) {
        let p = self.dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn b9(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_b9"))
            .args(["-c", "b9.conf"])
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", self.dir.join("home"))
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether cloud-init (and so its schema) is installed; prints a note when not.
fn cloud_init() -> bool {
    let found = Command::new("cloud-init").arg("--version").output().is_ok();
    if !found {
        eprintln!("note: cloud-init is not installed: cloud-config schema tests skipped");
    }
    found
}

/// A build file of one `CloudInit` artifact with these sources.
fn build_file(sources: &str) -> String {
    format!(
        "Let [(\"host\", \"web-1\")]\n  [ Sources\n      [ FromContent \"meta-data\" (FromString \"instance-id: i-1\\n\")\n{sources}      ]\n      [ Artifact (IID \"${{host}}\") (CloudInit [CI_DIR] \"out/${{host}}\") ]\n  ]\n"
    )
}

/// The `(severity: message, file:line:col)` of each diagnostic on stderr.
fn diagnostics(stderr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = stderr.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("error: ") || l.starts_with("warning: ") {
            let at = lines
                .next()
                .and_then(|a| a.trim().strip_prefix("--> "))
                .unwrap_or("")
                .to_string();
            out.push((l.to_string(), at));
        }
    }
    out
}

#[test]
fn check_locates_each_problem_in_the_b9_file_and_the_yaml_file() {
    if !cloud_init() {
        return;
    }
    let p = Project::new();
    p.write(
        "ci/user-data.yaml",
        "#cloud-config\nfqdn: ${host}.example.org\npacakges: [nginx]\nusers:\n  - name: bob\n    groups: 5\nruncmd: 5\n",
    );
    p.write(
        "t.b9",
        &build_file(
            "      , FromContent \"user-data\"\n          (RenderCloudConfig\n             (ASTMerge\n                [ ASTParse (Source ExpandVariables \"ci/user-data.yaml\")\n                , ASTObj [(\"bootcmd\", ASTInt 3), (\"write_files\", ASTArr [ASTObj [(\"path\", ASTString \"/x\"), (\"permissions\", ASTInt 644)]])]\n                ]))\n",
        ),
    );
    let out = p.b9(&["check", "-f", "t.b9"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let yaml = p.dir.join("ci/user-data.yaml").display().to_string();
    let want = [
        (
            "warning: unknown cloud-config key `pacakges`: cloud-init ignores it".to_string(),
            format!("{yaml}:3:1"),
        ),
        (
            "error: invalid cloud-config: `bootcmd` must be a list, found the integer 3".into(),
            "t.b9:8:46".into(),
        ),
        (
            "error: invalid cloud-config: `runcmd` must be a list, found the integer 5".into(),
            format!("{yaml}:7:9"),
        ),
        (
            "error: invalid cloud-config: `users[0].groups` must be a string, a list or a mapping, found the integer 5".into(),
            format!("{yaml}:6:13"),
        ),
        (
            "error: invalid cloud-config: `write_files[0].permissions` must be a string, found the integer 644".into(),
            "t.b9:8:131".into(),
        ),
    ];
    assert_eq!(diagnostics(&stderr), want, "{stderr}");
    assert!(
        stderr.contains("= hint: did you mean `packages`?"),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn a_cloud_config_file_copied_as_user_data_is_checked_and_meta_data_needs_an_instance_id() {
    if !cloud_init() {
        return;
    }
    let p = Project::new();
    p.write("user-data", "#cloud-config\nruncmd:\n  - ls\nusers: [5]\n");
    p.write("meta-data", "local-hostname: web\n");
    p.write(
        "t.b9",
        "Sources\n  [ FromFile \"meta-data\" (Source NoConversion \"meta-data\")\n  , FromFile \"user-data\" (Source NoConversion \"user-data\")\n  ]\n  [ Artifact (IID \"a\") (CloudInit [CI_DIR] \"out/a\") ]\n",
    );
    let out = p.b9(&["check", "-f", "t.b9"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let file = |n: &str| p.dir.join(n).display().to_string();
    assert_eq!(
        diagnostics(&stderr),
        [
            (
                "error: invalid cloud-config: `users[0]` must be a string, a list or a mapping, found the integer 5".to_string(),
                format!("{}:4:9", file("user-data")),
            ),
            (
                "warning: NoCloud `meta-data` without `instance-id`".into(),
                format!("{}:1:1", file("meta-data")),
            ),
        ],
        "{stderr}"
    );
}

#[test]
fn a_correct_cloud_config_gets_only_ok_and_the_example_too() {
    if !cloud_init() {
        return;
    }
    let p = Project::new();
    p.write(
        "t.b9",
        &build_file(
            "      , FromContent \"user-data\" (RenderCloudConfig (ASTObj [(\"packages\", ASTArr [ASTString \"nginx\"]), (\"runcmd\", ASTArr [ASTString \"ls\"])]))\n",
        ),
    );
    let out = p.b9(&["check", "-f", "t.b9"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(
        text(&out.stdout),
        "ok: 1 artifact instance in 1 build file\n"
    );

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let out = Command::new(env!("CARGO_BIN_EXE_b9"))
        .args(["-c", &p.dir.join("b9.conf").display().to_string()])
        .args(["check", "-f", "cloud-init.b9", "--", "demo"])
        .current_dir(&examples)
        .env("HOME", p.dir.join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("cloud-config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_schema_that_cannot_be_read_is_an_error_and_the_skip_is_noted_once_a_run() {
    let p = Project::new();
    let conf = std::fs::read_to_string(p.dir.join("b9.conf")).unwrap();
    p.write(
        "b9.conf",
        &format!("{conf}[cloud-init]\nschema: missing.json\n"),
    );
    p.write(
        "t.b9",
        "Sources\n  [ FromContent \"user-data\" (RenderCloudConfig (ASTObj [(\"runcmd\", ASTInt 5)])) ]\n  [ Each [(\"host\", [\"a\", \"b\"])] [ Artifact (IID \"${host}\") (CloudInit [CI_DIR] \"out/${host}\") ] ]\n",
    );
    let out = p.b9(&["check", "-f", "t.b9"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr
            .matches("error: cannot read cloud-init's schema missing.json")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("note: cloud-config not validated").count(),
        1,
        "{stderr}"
    );
    assert!(
        !stderr.contains("runcmd"),
        "validated without a schema: {stderr}"
    );
}

#[test]
fn build_refuses_an_invalid_cloud_config_before_writing_anything() {
    if !cloud_init() {
        return;
    }
    let p = Project::new();
    p.write(
        "t.b9",
        &build_file("      , FromContent \"user-data\" (RenderCloudConfig (ASTObj [(\"runcmd\", ASTInt 5)]))\n"),
    );
    let out = p.b9(&["build", "-f", "t.b9"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`runcmd` must be a list, found the integer 5"),
        "{stderr}"
    );
    assert!(!p.dir.join("out").exists(), "an output was written");
    let leftovers: Vec<_> = std::fs::read_dir(&p.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("BUILD-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// b9 and `cloud-init schema --config-file` accept and reject the same
/// cloud-configs. (Unknown keys are accepted by both: b9 only warns.)
#[test]
fn b9_agrees_with_cloud_init_on_accept_and_reject() {
    if !cloud_init() {
        return;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/user-data.yaml");
    let example = std::fs::read_to_string(examples)
        .unwrap()
        .replace("${host}", "web-1")
        .replace("${domain}", "demo.example.org");
    let cases: Vec<(&str, String)> = vec![
        ("the example", example),
        (
            "valid",
            "#cloud-config\npackages: [nginx]\nruncmd:\n  - [ls, -l]\n  - echo hi\nusers:\n  - default\n  - name: bob\n    groups: [adm]\n    sudo: ALL=(ALL) NOPASSWD:ALL\nwrite_files:\n  - path: /etc/x\n    content: hi\n    permissions: '0644'\n".into(),
        ),
        ("runcmd: 5", "#cloud-config\nruncmd: 5\n".into()),
        ("users: [5]", "#cloud-config\nusers: [5]\n".into()),
        (
            "nested",
            "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 644\n".into(),
        ),
        (
            "nested user",
            "#cloud-config\nusers:\n  - name: bob\n    groups: 5\n".into(),
        ),
        ("unknown key", "#cloud-config\npacakges: [nginx]\n".into()),
        (
            "enum",
            "#cloud-config\npower_state:\n  mode: sleep\n".into(),
        ),
    ];
    let p = Project::new();
    for (name, config) in &cases {
        p.write("user-data", config);
        let reference = Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(p.dir.join("user-data"))
            .output()
            .unwrap();
        p.write(
            "t.b9",
            &build_file("      , FromFile \"user-data\" (Source NoConversion \"user-data\")\n"),
        );
        let ours = p.b9(&["check", "-f", "t.b9"]);
        assert_eq!(
            ours.status.success(),
            reference.status.success(),
            "{name}: b9 says\n{}\ncloud-init says\n{}{}",
            text(&ours.stderr),
            text(&reference.stdout),
            text(&reference.stderr)
        );
    }
}

#[test]
fn literal_user_data_and_broken_yaml_are_checked_and_a_seed_needs_meta_data() {
    if !cloud_init() {
        return;
    }
    let p = Project::new();
    p.write(
        "ci/broken.yaml",
        "#cloud-config\nruncmd:\n  - [ls\nfqdn: x\n",
    );
    p.write(
        "t.b9",
        "Sources\n  [ FromContent \"user-data\" (FromString \"#cloud-config\\nruncmd: 5\\n\") ]\n  [ Artifact (IID \"a\") (CloudInit [CI_DIR] \"out/a\")\n  , Artifact (IID \"b\") (CloudInit [CI_DIR] \"out/b\")\n  ]\n",
    );
    let out = p.b9(&["check", "-f", "t.b9"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let found = diagnostics(&stderr);
    let literal = |at: &str| {
        (
            "error: invalid cloud-config: `runcmd` must be a list, found the integer 5".to_string(),
            at.to_string(),
        )
    };
    let no_meta = |at: &str| {
        (
            "warning: NoCloud seed without `meta-data`".to_string(),
            at.to_string(),
        )
    };
    // The same error of both instances is reported once, at the `FromString`.
    assert_eq!(
        found,
        [
            literal("t.b9:2:29"),
            no_meta("t.b9:3:24"),
            no_meta("t.b9:4:24")
        ],
        "{stderr}"
    );

    // A `#cloud-config` file that is not YAML: located where the YAML reader stops.
    p.write(
        "u.b9",
        &build_file("      , FromContent \"user-data\" (FromTextFile (Source NoConversion \"ci/broken.yaml\"))\n"),
    );
    let out = p.b9(&["check", "-f", "u.b9"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let found = diagnostics(&stderr);
    let yaml = p.dir.join("ci/broken.yaml").display().to_string();
    assert!(
        found.iter().any(
            |(m, at)| m.starts_with("error: invalid cloud-config: not YAML")
                && at.starts_with(&format!("{yaml}:"))
        ),
        "{found:?}\n{stderr}"
    );
}
