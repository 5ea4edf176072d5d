//! The `b9` executable: exit codes, diagnostics on stderr, reformat writing
//! files, show output, configuration files and flags.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    home: tempfile::TempDir,
    dir: PathBuf,
}

impl Run {
    fn new() -> Run {
        let home = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let dir = home.path().join("project");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
        Run { home, dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write: {e}"));
        p
    }

    fn b9(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_b9"))
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", self.home.path())
            .output()
            .unwrap_or_else(|e| panic!("run b9: {e}"))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GOOD: &str = r#"Let [("domain", "${arg_1}.example.org")]
  [ Sources [ FromContent "meta-data" (FromTextFile (Source ExpandVariables "meta-data.in")) ]
      [ Each [("host", ["a", "b"])]
          [ Artifact (IID "${host}") (CloudInit [CI_ISO, CI_DIR] "out/${host}") ] ] ]
"#;

#[test]
fn check_accepts_a_good_file_and_creates_the_default_config() {
    let r = Run::new();
    r.write("good.b9", GOOD);
    r.write(
        "meta-data.in",
        "local-hostname: ${host}.${domain}\ninstance-id: ${instance_id}\n",
    );
    let out = r.b9(&["check", "-f", "good.b9", "--", "prod"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: 2 artifact instances in 1 build file\n"
    );
    assert!(text(&out.stderr).contains("created the default configuration file"));
    assert!(r.home.path().join(".b9/b9.conf").is_file());
    // The second run finds it and says nothing about it.
    let out = r.b9(&["check", "-f", "good.b9", "--", "prod"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn check_reports_every_problem_with_position_and_exit_code_2() {
    let r = Run::new();
    r.write("good.b9", GOOD);
    r.write("meta-data.in", "local-hostname: ${hots}\n");
    // No positional argument: ${arg_1} is undefined too.
    let out = r.b9(&["check", "-f", "good.b9"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("error: undefined variable `arg_1`"), "{err}");
    assert!(err.contains("--> good.b9:1:18"), "{err}");
    assert!(err.contains("error: undefined variable `hots`"), "{err}");
    assert!(err.contains("meta-data.in:1:17"), "{err}");
    assert!(err.contains("did you mean `host`?"), "{err}");
    assert!(err.contains("b9: 2 errors found"), "{err}");
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn syntax_errors_in_several_files_are_all_reported() {
    let r = Run::new();
    r.write("a.b9", "Artifact (IID \"x\")\n  (VmImage [] NoVmScript)\n");
    r.write("b.b9", "Let [(\"a\", \"b\") (\"c\", \"d\")] []\n");
    let out = r.b9(&["check", "-f", "a.b9", "-f", "b.b9"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--> a.b9:2:4"), "{err}");
    assert!(err.contains("did you mean `VmImages`?"), "{err}");
    assert!(err.contains("--> b.b9:1:17"), "{err}");
    assert!(err.contains("expected `,` or `]` in a list"), "{err}");
}

#[test]
fn reformat_rewrites_files_canonically_and_keeps_comments() {
    let r = Run::new();
    let path = r.write(
        "f.b9",
        "-- header\nArtifact   (IID \"x\")   -- the id\n    (CloudInit [ CI_ISO ]\n \"out/x\")\n",
    );
    let out = r.b9(&["reformat", "-f", "f.b9"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = "-- header\nArtifact (IID \"x\") -- the id\n  (CloudInit [CI_ISO] \"out/x\")\n";
    assert_eq!(text(&out.stdout), expected);
    assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), expected);
    // A broken file is reported and left as it was; the good file given
    // with it is still rewritten and printed.
    let bad = r.write("bad.b9", "Artifact (IID \"x\"\n");
    let good = r.write("g.b9", "Artifact   (IID \"g\") (CloudInit [] \"out/g\")\n");
    let out = r.b9(&["reformat", "-f", "bad.b9", "-f", "g.b9"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap_or_default(),
        "Artifact (IID \"x\"\n"
    );
    assert!(
        text(&out.stderr).contains("--> bad.b9:"),
        "{}",
        text(&out.stderr)
    );
    let canonical = "Artifact (IID \"g\") (CloudInit [] \"out/g\")\n";
    assert_eq!(text(&out.stdout), canonical);
    assert_eq!(
        std::fs::read_to_string(&good).unwrap_or_default(),
        canonical
    );
}

#[test]
fn show_prints_the_plan_as_text_and_json() {
    let r = Run::new();
    r.write("good.b9", GOOD);
    r.write("meta-data.in", "x\n");
    let out = r.b9(&["-u", "show", "-f", "good.b9", "--", "prod"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(plan.contains("a (a-"), "{plan}");
    assert!(
        plan.contains("meta-data <- text of meta-data.in (expanded)"),
        "{plan}"
    );
    assert!(plan.contains("out/b.iso"), "{plan}");
    let out = r.b9(&["-u", "show", "--json", "-f", "good.b9", "--", "prod"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let instances = json["instances"].as_array().cloned().unwrap_or_default();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[1]["id"], "b");
    assert_eq!(instances[1]["kind"], "CloudInit");
    assert_eq!(
        instances[1]["outputs"],
        serde_json::json!(["out/b.iso", "out/b/"])
    );
    let id = json["build_id"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty() && !id.contains('-'), "predictable id: {id}");
    // -u gives the same id on every run.
    let again = r.b9(&["-u", "show", "--json", "-f", "good.b9", "--", "prod"]);
    let json2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap_or_default();
    assert_eq!(json2["build_id"], json["build_id"]);
}

#[test]
fn build_root_flag_sets_project_root_only_when_given() {
    let r = Run::new();
    r.write(
        "root.b9",
        "Artifact (IID \"${projectRoot}\") (CloudInit [] \"x\")\n",
    );
    let conf = r.write("my.conf", "[global]\nbuild_dir_root: Just \"/srv/from-config\"\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\nunique_build_dirs: True\nverbosity: Nothing\n");
    let conf = conf.to_string_lossy().into_owned();
    let id = |out: &Output| -> String {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["instances"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let out = r.b9(&["-c", &conf, "show", "--json", "-f", "root.b9"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(id(&out), "/srv/from-config");
    let out = r.b9(&[
        "-c",
        &conf,
        "-b",
        "/srv/from-flag",
        "show",
        "--json",
        "-f",
        "root.b9",
    ]);
    assert_eq!(id(&out), "/srv/from-flag");
}

#[test]
fn malformed_config_names_file_line_and_key() {
    let r = Run::new();
    r.write("good.b9", "EmptyArtifact\n");
    let conf = r.write(
        "bad.conf",
        "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: maybe\n",
    );
    let out = r.b9(&["-c", &conf.to_string_lossy(), "check", "-f", "good.b9"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.conf:3:"), "{err}");
    assert!(err.contains("keep_temp_dirs"), "{err}");
}

#[test]
fn missing_config_given_with_c_is_an_error() {
    let r = Run::new();
    r.write("good.b9", "EmptyArtifact\n");
    let out = r.b9(&["-c", "/nonexistent/b9.conf", "check", "-f", "good.b9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Please provide a valid config file path"));
}

#[test]
fn usage_errors_exit_2_and_version_and_completions_work() {
    let r = Run::new();
    assert_eq!(r.b9(&["check"]).status.code(), Some(2));
    assert_eq!(r.b9(&["frobnicate"]).status.code(), Some(2));
    let v = r.b9(&["version"]);
    assert!(text(&v.stdout).contains("compatible with b9 4.0.0"));
    let c = r.b9(&["completions", "bash"]);
    assert!(text(&c.stdout).contains("reformat"));
}

#[test]
fn b9c_is_the_same_program() {
    let exe = Path::new(env!("CARGO_BIN_EXE_b9c"));
    let out = Command::new(exe)
        .arg("version")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(text(&out.stdout).contains("compatible with b9 4.0.0"));
}

#[test]
fn verbose_logs_to_stderr_and_log_file_gets_everything() {
    let r = Run::new();
    r.write("good.b9", "EmptyArtifact\n");
    let log = r.dir.join("b9.log");
    let log_arg = log.to_string_lossy().into_owned();
    let out = r.b9(&["-v", "-l", &log_arg, "check", "-f", "good.b9"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("[ DEBUG ] ") && l.ends_with(" - parsed build file good.b9")),
        "{err}"
    );
    let quiet = r.b9(&["-q", "-l", &log_arg, "check", "-f", "good.b9"]);
    assert!(!text(&quiet.stderr).contains("DEBUG"));
    // The log file has both runs' messages, quiet or not.
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        logged.matches("parsed build file good.b9").count(),
        2,
        "{logged}"
    );
}

#[test]
fn add_repo_writes_a_repo_section_and_keeps_the_rest() {
    let r = Run::new();
    let key = r.write("id_test", "not really a key\n");
    let conf = r.write(
        "b9.conf",
        "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\nunique_build_dirs: True\nverbosity: Nothing\n\n[libvirt-lxc]\nconnection: lxc:///\n",
    );
    let c = conf.to_string_lossy().into_owned();
    let k = key.to_string_lossy().into_owned();
    let out = r.b9(&[
        "-c",
        &c,
        "add-repo",
        "farm",
        "/srv/b9",
        &k,
        "build.example.org",
        "2222",
        "builder",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&conf).unwrap_or_default();
    assert!(written.contains("[farm-repo]"), "{written}");
    assert!(
        written.contains("ssh_remote_port: 2222") || written.contains("ssh_remote_port = 2222"),
        "{written}"
    );
    assert!(
        written.contains("[libvirt-lxc]"),
        "other sections survive: {written}"
    );
    // The written file loads again.
    r.write("good.b9", "EmptyArtifact\n");
    let out = r.b9(&["-c", &c, "check", "-f", "good.b9"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let missing = r.b9(&[
        "-c",
        &c,
        "add-repo",
        "x",
        "/d",
        "/no/such/key",
        "h",
        "22",
        "u",
    ]);
    assert_eq!(missing.status.code(), Some(2));
}

const UNSUBSTITUTED: &str = r#"Let [("host", "web-1")]
  [ Sources [ FromContent "meta-data" (FromString "instance-id: ${host}\n") ]
      [ Artifact (IID "${host}") (CloudInit [CI_DIR] "out/${host}") ] ]
"#;

#[test]
fn check_and_build_warn_about_a_bound_variable_that_is_not_substituted() {
    let r = Run::new();
    r.write("seed.b9", UNSUBSTITUTED);
    let warning = r#"warning: `${host}` in `FromString` text is not substituted
  --> seed.b9:2:65
  |
2 |   [ Sources [ FromContent "meta-data" (FromString "instance-id: ${host}\n") ]
  |                                                                 ^^^^^^^ written as is, although `host` is bound (to "web-1" in `web-1`)
  = hint: `FromString` text is written as is; put the text in a file and use `FromTextFile (Source ExpandVariables "FILE")`, whose contents are substituted
"#;
    let out = r.b9(&["check", "-f", "seed.b9"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(warning), "{err}");
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert_eq!(
        text(&out.stdout),
        "ok: 1 artifact instance in 1 build file\n"
    );
    // `b9 build` checks first and prints the same warning, then builds.
    let out = r.b9(&["build", "-f", "seed.b9"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(warning), "{}", text(&out.stderr));
    let seed = std::fs::read_to_string(r.dir.join("out/web-1/meta-data")).unwrap();
    assert_eq!(
        seed, "instance-id: ${host}\n",
        "FromString is written as is"
    );
}

#[test]
fn shell_syntax_and_unbound_names_in_unsubstituted_strings_do_not_warn() {
    let r = Run::new();
    r.write(
        "seed.b9",
        &UNSUBSTITUTED.replace(
            "instance-id: ${host}",
            "instance-id: i-1\\nid: $$host $(hostname) ${HOST} $other",
        ),
    );
    let out = r.b9(&["check", "-f", "seed.b9"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn text_after_the_final_dot_of_an_erlang_file_is_ignored_with_a_warning() {
    let r = Run::new();
    r.write(
        "app.b9",
        r#"Sources [FromContent "sys.config" (RenderErlang (ASTParse (Source NoConversion "sys.config")))]
  [Artifact (IID "app") (CloudInit [CI_DIR] "out/app")]
"#,
    );
    r.write("sys.config", "[{kernel, []}].\n% the end\nold stuff\n");
    let warning = format!(
        "warning: text after the final `.` of this Erlang term is ignored
  --> {}:3:1
  |
3 | old stuff
  | ^^^^^^^^^ ignored
  = note: in artifact instance `app`
  = hint: end the file at the `.`, or comment this out with `%`
",
        r.dir.join("sys.config").display()
    );
    let out = r.b9(&["check", "-f", "app.b9"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&warning),
        "{}",
        text(&out.stderr)
    );
    let out = r.b9(&["build", "-f", "app.b9"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(r.dir.join("out/app/sys.config")).unwrap();
    assert_eq!(written, "[{kernel, []}].");
}

#[test]
fn a_config_value_without_just_gets_the_wrapped_value_as_hint() {
    let r = Run::new();
    r.write(
        "good.b9",
        "Artifact (IID \"x\") (CloudInit [CI_DIR] \"out/x\")\n",
    );
    let conf = r.write("b9.conf", "[global]\nrepository_cache: InB9UserDir \"x\"\n");
    let out = r.b9(&["-c", conf.to_str().unwrap(), "check", "-f", "good.b9"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("= hint: did you mean `Just (InB9UserDir \"x\")`?"),
        "{err}"
    );
    assert!(err.contains("b9.conf:2:19"), "{err}");
}
