//! Bad input to the parsers, through the `b9` executable: deep nesting in
//! every input kind, a huge line, invalid UTF-8, NUL in file names, bad
//! instance ids, repeated config sections and keys, `-c DIR`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How deep the hostile inputs nest: far beyond any stack.
const DEEP: usize = 100_000;

/// A project directory with its own `HOME` (b9 writes `~/.b9/b9.conf`).
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let p = Project {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(p.home()).unwrap();
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn home(&self) -> PathBuf {
        self.path("home")
    }

    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn b9(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_b9"))
            .current_dir(self.dir.path())
            .env("HOME", self.home())
            .env_remove("B9_CONFIG")
            .args(args)
            .output()
            .unwrap()
    }

    /// The default configuration, as b9 writes it on first use.
    fn default_config(&self) -> String {
        let out = self.b9(&["list"]);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(self.home().join(".b9/b9.conf")).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 2 (a build-file or usage error), not a signal or a crash,
/// and `needle` in stderr.
fn assert_error(out: &Output, needle: &str) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{:?}\n{}",
        out.status,
        clip(&err)
    );
    assert!(err.contains(needle), "{needle:?} not in:\n{}", clip(&err));
    err
}

fn clip(s: &str) -> &str {
    &s[..s.char_indices().nth(4000).map_or(s.len(), |(i, _)| i)]
}

fn nested(open: &str, inner: &str, close: &str) -> String {
    format!("{}{inner}{}", open.repeat(DEEP), close.repeat(DEEP))
}

const NESTING: &str = "nested too deeply (more than 200 levels)";

#[test]
fn deep_build_files_are_located_errors_in_every_command() {
    let p = Project::new();
    let shapes = [
        (
            "parens.b9",
            format!(
                "Artifact (IID \"x\") (CloudInit [CI_DIR] {})",
                nested("(", "\"o\"", ")")
            ),
        ),
        ("lists.b9", nested("[", "", "]")),
        (
            "lets.b9",
            format!("Let [] {}", nested("[Let [] ", "[]", "]")),
        ),
        ("records.b9", nested("X {f = ", "Y", "}")),
        ("unclosed.b9", "(".repeat(DEEP)),
    ];
    for (name, text) in shapes {
        p.write(name, text);
        for command in ["check", "build", "show", "reformat"] {
            let out = p.b9(&[command, "-f", name]);
            let err = assert_error(&out, NESTING);
            assert!(
                err.contains(&format!("--> {name}:1:")),
                "{command} {name}:\n{}",
                clip(&err)
            );
        }
    }
}

#[test]
fn deep_yaml_and_erlang_are_located_errors() {
    let p = Project::new();
    p.write("deep.yaml", "[".repeat(DEEP));
    p.write("deep.erl", format!("{}.", "[".repeat(DEEP)));
    let ci = "[Artifact (IID \"x\") (CloudInit [CI_DIR] \"out\")]";
    let cases = [
        (
            format!("Sources [FromContent \"u\" (RenderYamlObject (AST (YamlObject \"{}\")))] {ci}", "[".repeat(DEEP)),
            "nested too deeply (more than 128 levels)",
        ),
        (
            format!("Sources [FromContent \"u\" (RenderYamlObject (ASTParse (Source NoConversion \"deep.yaml\")))] {ci}"),
            "nested too deeply (more than 128 levels)",
        ),
        (
            format!("Sources [FromContent \"u\" (RenderErlang (ASTParse (Source NoConversion \"deep.erl\")))] {ci}"),
            "nested too deeply (more than 1000 levels)",
        ),
    ];
    for (text, needle) in cases {
        p.write("x.b9", text);
        for command in ["check", "build"] {
            let err = assert_error(&p.b9(&[command, "-f", "x.b9"]), needle);
            assert!(err.contains("--> x.b9:1:"), "{}", clip(&err));
        }
    }
    assert!(!p.path("out").exists());
}

#[test]
fn deep_config_value_is_a_located_error() {
    let p = Project::new();
    let config = p.default_config();
    let deep = config.replace(
        "build_dir_root: Nothing",
        &format!("build_dir_root: {}", "(".repeat(DEEP)),
    );
    assert_ne!(deep, config);
    p.write("deep.conf", deep);
    p.write("x.b9", "Artifact (IID \"x\") (CloudInit [CI_DIR] \"out\")");
    let err = assert_error(&p.b9(&["-c", "deep.conf", "check", "-f", "x.b9"]), NESTING);
    assert!(err.contains("--> deep.conf:2:"), "{}", clip(&err));
}

#[test]
fn list_skips_deep_and_broken_cache_files_with_warnings() {
    let p = Project::new();
    p.default_config();
    let images = p.home().join(".b9/repo-cache/local-repo/b9_shared_images");
    let good = "SharedImage\n  (SharedImageName \"good\")\n  (SharedImageDate \"2026-01-01-00:00:00\")\n  (SharedImageBuildId \"0123ABCD\")\n  QCow2\n  Ext4";
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("good_0123ABCD.b9si"), good).unwrap();
    std::fs::write(images.join("good_0123ABCD.qcow2"), b"").unwrap();
    std::fs::write(
        images.join("deep_1.b9si"),
        format!("SharedImage {}", "(".repeat(DEEP)),
    )
    .unwrap();
    std::fs::write(images.join("bytes_2.b9si"), b"SharedImage \xff").unwrap();
    let out = p.b9(&["list"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{:?}\n{}", out.status, clip(&err));
    assert!(String::from_utf8_lossy(&out.stdout).contains("good"));
    for (file, cause) in [("deep_1.b9si", NESTING), ("bytes_2.b9si", "UTF-8")] {
        let line = err
            .lines()
            .find(|l| l.starts_with("warning:") && l.contains(file))
            .unwrap_or_else(|| panic!("no warning for {file}:\n{}", clip(&err)));
        assert!(line.contains(cause), "{line}");
    }
}

#[test]
fn diagnostics_show_a_bounded_excerpt_of_a_huge_line() {
    let p = Project::new();
    let huge = "x".repeat(50 << 20);
    // A syntax error after the string, and a type error inside the line.
    p.write(
        "syntax.b9",
        format!("Artifact (IID \"{huge}\") (CloudInit [CI_DIR] \"o\" ]"),
    );
    p.write(
        "type.b9",
        format!("Artifact (IID \"{huge}\") (CloudInit [CI_DIR] 3)"),
    );
    for (file, needle) in [("syntax.b9", "expected"), ("type.b9", "expected `String`")] {
        let out = p.b9(&["check", "-f", file]);
        let err = assert_error(&out, needle);
        assert!(err.len() < 10_000, "{file}: {} bytes of stderr", err.len());
        assert!(err.contains(&format!("--> {file}:1:")), "{}", clip(&err));
        assert!(err.contains('…'), "{err}");
    }
}

#[test]
fn invalid_utf8_is_reported_at_its_line_and_column() {
    let p = Project::new();
    p.write(
        "x.b9",
        b"Artifact\n  (IID \"\xc3\xa9\xff\") EmptyArtifact\n",
    );
    let err = assert_error(
        &p.b9(&["check", "-f", "x.b9"]),
        "build file x.b9 is not valid UTF-8",
    );
    assert!(err.contains("--> x.b9:2:10"), "{err}");
    let config = p.default_config().replace("cpus: 2", "cpus: \u{0}2");
    let mut bytes = config.into_bytes();
    let at = bytes.iter().position(|&b| b == 0).unwrap();
    bytes[at] = 0xfe;
    p.write("bad.conf", &bytes);
    let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    p.write("ok.b9", "EmptyArtifact");
    let err = assert_error(
        &p.b9(&["-c", "bad.conf", "check", "-f", "ok.b9"]),
        "the configuration file bad.conf is not valid UTF-8",
    );
    assert!(err.contains(&format!("--> bad.conf:{line}:7")), "{err}");
}

#[test]
fn nul_in_file_names_is_a_located_check_error() {
    let p = Project::new();
    let ci = |path: &str| format!("Artifact (IID \"x\") (CloudInit [CI_DIR] \"{path}\")");
    let cases = [
        (format!("Sources [FromContent \"a\\NULb\" (FromString \"x\")] [{}]", ci("out")), "output path \"a\\0b\""),
        (format!("Sources [IntoDirectory \"d\\NUL\" [FromContent \"a\" (FromString \"x\")]] [{}]", ci("out")), "output path \"d\\0/a\""),
        (format!("Sources [FromFile \"a\" (Source NoConversion \"s\\NUL\")] [{}]", ci("out")), "source file \"s\\0\""),
        (ci("o\\NULut"), "cloud-init output path \"o\\0ut\""),
        (
            "Artifact (IID \"x\") (VmImages [ImageTarget (LocalFile (Image \"i\\NUL.raw\" Raw Ext4) KeepSize) (EmptyImage \"l\" Ext4 Raw (ImageSize 1 MB)) NotMounted] NoVmScript)".to_string(),
            "output image \"i\\0.raw\"",
        ),
        (
            "Artifact (IID \"x\") (VmImages [ImageTarget Transient (SourceImage (Image \"s\\NUL\" Raw Ext4) NoPT KeepSize) NotMounted] NoVmScript)".to_string(),
            "source image \"s\\0\"",
        ),
    ];
    for (text, needle) in cases {
        p.write("x.b9", &text);
        let err = assert_error(&p.b9(&["check", "-f", "x.b9"]), needle);
        assert!(err.contains("contains a NUL character"), "{err}");
        assert!(err.contains("--> x.b9:1:"), "{err}");
    }
}

#[test]
fn bad_instance_ids_are_rejected_for_their_reason() {
    let p = Project::new();
    for (id, reason) in [
        ("..", "`.` and `..` are not names"),
        (".", "`.` and `..` are not names"),
        ("a\\NULb", "NUL character"),
        ("a/b", "contains `/`"),
    ] {
        p.write(
            "x.b9",
            format!("Artifact (IID \"{id}\") (CloudInit [CI_DIR] \"out\")"),
        );
        let err = assert_error(&p.b9(&["check", "-f", "x.b9"]), reason);
        assert!(err.contains("--> x.b9:1:15"), "{err}");
    }
}

#[test]
fn repeated_config_sections_and_keys_are_warned_with_both_lines() {
    let p = Project::new();
    let config = p.default_config();
    // The later [vm] replaces the earlier whole, as the original reads it:
    // its `cpus: 3` is used, and its missing keys take their defaults.
    let text = format!("{config}\n[vm]\ncpus: 1\ncpus: 3\n");
    let lines = text.lines().count();
    p.write("dup.conf", &text);
    let first_vm = text.lines().position(|l| l == "[vm]").unwrap() + 1;
    p.write("x.b9", "EmptyArtifact");
    let out = p.b9(&["-c", "dup.conf", "check", "-f", "x.b9"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "section [vm] appears twice in dup.conf (lines {first_vm} and {})",
            lines - 2
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "key `cpus` given twice in [vm] of dup.conf (lines {} and {lines})",
            lines - 1
        )),
        "{err}"
    );
}

#[test]
fn config_path_that_is_a_directory_says_so() {
    let p = Project::new();
    std::fs::create_dir(p.path("conf.d")).unwrap();
    p.write("x.b9", "EmptyArtifact");
    let err = assert_error(
        &p.b9(&["-c", "conf.d", "check", "-f", "x.b9"]),
        "conf.d is a directory",
    );
    assert!(!err.contains("tried conf.d: not found"), "{err}");
    assert!(Path::new(&p.path("conf.d")).is_dir());
}
