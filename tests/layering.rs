//! Dependencies inside the `b9` library run one way. This test reads the
//! `crate::` paths of every file under `src/` (code and unit tests, not
//! comments) and fails when
//! - two top-level modules reach each other, directly or through others;
//! - a front-end module uses one above it in [`FRONT_END`];
//! - two files of one front-end module reach each other.
//!
//! A new back-edge makes it fail with the path of modules that closes the
//! cycle.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test of the source tree

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The front end, bottom to top: source spans and diagnostics, the text
/// formats (YAML, Erlang terms, templates), the build language, evaluation,
/// content rendering. Each may use only those before it; `diag` and `text`
/// use no other module of the crate.
const FRONT_END: [&str; 5] = ["diag", "text", "lang", "eval", "content"];

/// The module path of every `.rs` file under `src/` (`lang::term` for
/// `src/lang/term.rs`, `diag` for `src/diag/mod.rs`), with its text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            // The crate roots and binaries (the CLI is the binaries'
            // module) are not modules of the library.
            if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main")
                || matches!(parts[0].as_str(), "bin" | "cli")
            {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Some((parts.join("::"), strip_comments(&text)))
        })
        .collect()
}

/// The text without `//` comments (doc comments name modules freely).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path named after `crate::` (not `$crate::`), with `use` groups
/// (`crate::text::{erlang, yaml}`) expanded.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        let before = at.checked_sub(1).map(|j| bytes[j]);
        if before.is_some_and(|b| b == b'$' || b == b'_' || b.is_ascii_alphanumeric()) {
            continue;
        }
        tree(&text[from..], Vec::new(), &mut out);
    }
    out
}

/// Reads one `use` tree at the start of `rest` below `prefix`; returns the
/// bytes read.
fn tree(rest: &str, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut pos = 0;
    loop {
        let tail = &rest[pos..];
        let trimmed = tail.trim_start();
        pos += tail.len() - trimmed.len();
        if let Some(group) = trimmed.strip_prefix('{') {
            pos += 1;
            let mut inner = 0;
            loop {
                let g = &group[inner..];
                let t = g.trim_start();
                inner += g.len() - t.len();
                if t.starts_with('}') || t.is_empty() {
                    return pos + inner + 1;
                }
                inner += tree(&group[inner..], prefix.clone(), out);
                let g = &group[inner..];
                let t = g.trim_start();
                inner += g.len() - t.len();
                if t.starts_with(',') {
                    inner += 1;
                }
            }
        }
        let len = trimmed
            .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
            .unwrap_or(trimmed.len());
        if len > 0 {
            prefix.push(trimmed[..len].to_string());
        }
        pos += len;
        if rest[pos..].starts_with("::") {
            pos += 2;
        } else {
            out.push(prefix);
            return pos;
        }
    }
}

/// The longest known module that `path` starts with.
fn resolve<'m>(path: &[String], known: &'m BTreeMap<String, String>) -> Option<&'m str> {
    (1..=path.len())
        .rev()
        .find_map(|n| known.get_key_value(&path[..n].join("::")))
        .map(|(k, _)| k.as_str())
}

/// Edges `from -> to` between the modules `group` maps each file to.
fn edges(group: impl Fn(&str) -> Option<String>) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &known {
        let Some(from) = group(module) else { continue };
        for path in crate_paths(text) {
            let Some(to) = resolve(&path, &known).and_then(&group) else {
                continue;
            };
            let nested =
                to.starts_with(&format!("{from}::")) || from.starts_with(&format!("{to}::"));
            if to != from && !nested {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// A cycle of `graph` as the list of its modules, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == node) {
            let mut found = stack[i..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, stack) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn top(module: &str) -> String {
    module.split("::").next().unwrap_or(module).to_string()
}

#[test]
fn top_level_modules_have_no_cycle() {
    let graph = edges(|m| Some(top(m)));
    assert!(!graph.is_empty(), "no `crate::` paths found under src/");
    if let Some(c) = cycle(&graph) {
        panic!("modules import each other: {}", c.join(" -> "));
    }
}

#[test]
fn the_front_end_is_layered() {
    let graph = edges(|m| Some(top(m)));
    let rank = |m: &str| FRONT_END.iter().position(|f| *f == m);
    let mut wrong = Vec::new();
    for layer in &FRONT_END {
        let below = &FRONT_END[..rank(layer).unwrap_or(0)];
        for used in graph.get(*layer).into_iter().flatten() {
            let allowed = below.contains(&used.as_str())
                || (rank(layer) > rank("text") && rank(used).is_none());
            if !allowed {
                wrong.push(format!("{layer} -> {used}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "front-end modules use modules at or above their layer ({}): {}",
        FRONT_END.join(" < "),
        wrong.join(", ")
    );
}

#[test]
fn files_of_a_front_end_module_have_no_cycle() {
    for layer in FRONT_END {
        let graph = edges(|m| (top(m) == layer).then(|| m.to_string()));
        if let Some(c) = cycle(&graph) {
            panic!("files of `{layer}` import each other: {}", c.join(" -> "));
        }
    }
}

/// The reader itself: groups, nesting and `$crate` are read as Rust does.
#[test]
fn crate_paths_reads_use_trees() {
    let text = "use crate::text::{erlang, yaml::{self, Value}};\n\
                let x = $crate::lang::typed::con();\n\
                crate::diag::read_source(p);";
    let paths: Vec<String> = crate_paths(text).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "text::erlang",
            "text::yaml::self",
            "text::yaml::Value",
            "diag::read_source"
        ]
    );
}
