//! The build-file corpus in `fixtures/lang`: every valid file parses, expands
//! and passes the checks; its canonical layout matches the golden file and is
//! stable; every invalid file gets the diagnostics its `-- expect:` lines name.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on broken fixtures

use std::path::{Path, PathBuf};

use b9::diag::source::Source;
use b9::diag::Diagnostic;
use b9::eval::check::{check, dedupe, Dirs};
use b9::eval::expand::{expand, BuildVars};
use b9::lang::{self, print::print_document, term::MAX_DEPTH};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/lang")
}

fn b9_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "b9"));
    files.sort();
    files
}

fn vars() -> BuildVars {
    BuildVars {
        args: vec!["first".into(), "second".into()],
        project_root: corpus().display().to_string(),
        build_dir: corpus().join("BUILD-TEST").display().to_string(),
        build_date: "2026-11-26-10:00:00".into(),
        build_id: "TEST".into(),
    }
}

/// Every problem b9 check finds in a file (parse, expand, checks).
fn diagnostics(path: &Path) -> Vec<Diagnostic> {
    let file = match lang::parse_file_in(Path::new(""), path) {
        Ok(f) => f,
        Err(d) => return d,
    };
    let (instances, mut diags) = expand(std::slice::from_ref(&file), &vars());
    let root = corpus();
    diags.extend(check(
        &instances,
        &Dirs {
            cwd: root.clone(),
            project_root: root,
            protected: Vec::new(),
        },
    ));
    dedupe(diags)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

#[test]
fn valid_files_check_clean_and_match_golden_layout() {
    let golden_dir = corpus().join("golden");
    let update = std::env::var_os("B9_UPDATE_GOLDEN").is_some();
    let files = b9_files(&corpus());
    assert!(files.len() >= 20, "corpus too small: {files:?}");
    for path in files {
        let errors = diagnostics(&path);
        let text: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            text.join("\n")
        );

        let (file, document) =
            lang::parse_file_with_document(&path).unwrap_or_else(|_| panic!("{}", path.display()));
        let printed = print_document(&document);
        let golden = golden_dir.join(path.file_name().unwrap_or_default());
        if update {
            std::fs::create_dir_all(&golden_dir).unwrap_or_default();
            std::fs::write(&golden, &printed).unwrap_or_default();
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (run with B9_UPDATE_GOLDEN=1)", golden.display()));
        assert_eq!(printed, expected, "golden layout of {}", path.display());

        // Idempotent, same meaning, same comments.
        let (again, again_doc) =
            lang::parse_with_document(Source::new("reformatted.b9", printed.clone()))
                .unwrap_or_else(|d| {
                    panic!("{}: reformatted text does not parse: {d:?}", path.display())
                });
        assert_eq!(print_document(&again_doc), printed, "{}", path.display());
        assert_eq!(again.generator, file.generator, "{}", path.display());
        let comments = |t: &str| t.matches("--").count() + t.matches("{-").count();
        let original = file.source.text();
        assert_eq!(
            comments(&printed),
            comments(original),
            "comments of {}",
            path.display()
        );
    }
}

struct Expect {
    positions: Vec<String>,
    words: Vec<String>,
}

fn expectations(text: &str) -> Vec<Expect> {
    let mut out: Vec<Expect> = Vec::new();
    for line in text.lines() {
        let (also, rest) = if let Some(r) = line.strip_prefix("-- expect:") {
            (false, r)
        } else if let Some(r) = line.strip_prefix("-- expect-also:") {
            (true, r)
        } else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let position = parts.next().unwrap_or_default().to_string();
        let words: Vec<String> = parts.map(str::to_string).collect();
        match (also, out.last_mut()) {
            (true, Some(last)) => last.positions.push(position),
            _ => out.push(Expect {
                positions: vec![position],
                words,
            }),
        }
    }
    out
}

#[test]
fn invalid_files_report_the_expected_problems() {
    let files = b9_files(&corpus().join("errors"));
    assert!(files.len() >= 40);
    let mut failures = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let expects = expectations(&text);
        assert!(
            !expects.is_empty(),
            "{} has no -- expect: line",
            path.display()
        );
        let diags = diagnostics(&path);
        if diags.is_empty() {
            failures.push(format!("{}: no error reported", path.display()));
            continue;
        }
        for e in &expects {
            let found = diags.iter().any(|d| {
                let rendered = d.to_string();
                let pos = d.position().unwrap_or_default();
                e.positions
                    .iter()
                    .any(|p| pos.ends_with(&format!("/{p}")) || pos.ends_with(&format!(":{p}")))
                    && e.words.iter().all(|w| rendered.contains(w.as_str()))
            });
            if !found {
                let got: Vec<String> = diags
                    .iter()
                    .map(|d| format!("{} {}", d.position().unwrap_or_default(), d.message))
                    .collect();
                failures.push(format!(
                    "{}: expected {:?} {:?}, got:\n    {}",
                    path.display(),
                    e.positions,
                    e.words,
                    got.join("\n    ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Nesting up to the limit passes every recursive stage (typing,
/// printing, expansion) on a test thread's small stack; one more level
/// is a located error.
#[test]
fn nesting_up_to_the_limit_works_and_deeper_is_an_error() {
    let lets = |n: usize| {
        format!(
            "Let [] {}[EmptyArtifact]{}",
            "[Let [] ".repeat(n - 1),
            "]".repeat(n - 1)
        )
    };
    let asts = |n: usize| {
        format!(
            "Sources [FromContent \"u\" (RenderYamlObject {}ASTString \"a\"{})] [Artifact (IID \"x\") (CloudInit [CI_DIR] \"o\")]",
            "(ASTArr [".repeat(n / 2 - 1),
            "])".repeat(n / 2 - 1)
        )
    };
    for shape in [lets, asts] {
        let (file, document) = lang::parse_with_document(Source::new("ok.b9", shape(MAX_DEPTH)))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!print_document(&document).is_empty());
        let vars = BuildVars {
            args: Vec::new(),
            project_root: ".".into(),
            build_dir: ".".into(),
            build_date: "d".into(),
            build_id: "i".into(),
        };
        let (_, diagnostics) = expand(std::slice::from_ref(&file), &vars);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let errs = lang::parse(Source::new("deep.b9", shape(MAX_DEPTH + 2))).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0]
            .message
            .contains("nested too deeply (more than 200 levels)"));
    }
}
