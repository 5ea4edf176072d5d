//! The public surface of the `b9` library, pinned: every public item (path,
//! kind, signature; fields, variants, methods and trait impls) rendered from
//! rustdoc's JSON output into `tests/public-api.txt`, one line each, sorted.
//! A change to the API changes that file, so it shows up in review; the
//! test fails until the file is updated with `B9_BLESS=1 cargo test -p b9
//! --test public_api`.
//!
//! Rustdoc's JSON needs a nightly flag; `RUSTC_BOOTSTRAP=1` enables it on
//! the stable toolchain. The library is documented without features, so the
//! `internals` modules are not part of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The committed surface.
const PINNED: &str = "tests/public-api.txt";

/// The rustdoc JSON format the renderer reads (Rust 1.95).
const FORMAT_VERSION: u64 = 57;

#[test]
fn public_api_matches_the_pinned_surface() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = rustdoc_json(root);
    let rendered = Surface::new(&doc).render();
    let pinned_path = root.join(PINNED);
    if std::env::var_os("B9_BLESS").is_some() {
        std::fs::write(&pinned_path, &rendered).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(&pinned_path).unwrap_or_default();
    if pinned != rendered {
        let old: BTreeSet<&str> = pinned.lines().collect();
        let new: BTreeSet<&str> = rendered.lines().collect();
        let removed: Vec<_> = old.difference(&new).map(|l| format!("- {l}")).collect();
        let added: Vec<_> = new.difference(&old).map(|l| format!("+ {l}")).collect();
        panic!(
            "the public API changed; if on purpose, run `B9_BLESS=1 cargo test -p b9 --test public_api` and commit {PINNED}\n{}\n{}",
            removed.join("\n"),
            added.join("\n")
        );
    }
}

/// Rustdoc's JSON of the library (no features), parsed.
fn rustdoc_json(root: &Path) -> Value {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTDOCFLAGS")
        .args(["rustdoc", "-q", "-p", "b9", "--lib", "--target-dir"])
        .arg(&target)
        .args(["--", "-Z", "unstable-options", "--output-format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo rustdoc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(target.join("doc/b9.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc["format_version"], FORMAT_VERSION,
        "rustdoc's JSON format changed with the toolchain: check the renderer below against it"
    );
    doc
}

/// The JSON and the public path of every item reachable from the root.
struct Surface<'a> {
    index: &'a serde_json::Map<String, Value>,
    paths: &'a serde_json::Map<String, Value>,
    /// Item id -> its public path (the first found).
    public: BTreeMap<String, String>,
}

impl<'a> Surface<'a> {
    fn new(doc: &'a Value) -> Surface<'a> {
        let mut s = Surface {
            index: doc["index"].as_object().unwrap(),
            paths: doc["paths"].as_object().unwrap(),
            public: BTreeMap::new(),
        };
        let root = doc["root"].to_string();
        let mut todo = vec![(root, "b9".to_string())];
        while let Some((id, path)) = todo.pop() {
            if s.public.contains_key(&id) {
                continue;
            }
            s.public.insert(id.clone(), path.clone());
            let item = &s.index[&id];
            if let Some(m) = item["inner"].get("module") {
                for child in m["items"].as_array().unwrap() {
                    let child = &s.index[&child.to_string()];
                    if child["visibility"] != "public" {
                        continue;
                    }
                    if let Some(u) = child["inner"].get("use") {
                        if let Some(target) = u["id"].as_u64() {
                            let name = u["name"].as_str().unwrap();
                            todo.push((target.to_string(), format!("{path}::{name}")));
                        }
                    } else if let Some(name) = child["name"].as_str() {
                        todo.push((child["id"].to_string(), format!("{path}::{name}")));
                    }
                }
            }
        }
        s
    }

    /// One sorted line per item, field, variant, method and trait impl.
    fn render(&self) -> String {
        let mut lines = BTreeSet::new();
        for (id, path) in &self.public {
            self.item(&self.index[id], path, &mut lines);
        }
        lines.into_iter().map(|l| l + "\n").collect()
    }

    fn item(&self, item: &Value, path: &str, lines: &mut BTreeSet<String>) {
        let attrs = attrs_of(item);
        let (kind, inner) = kind(item);
        match kind {
            "module" => {
                lines.insert(format!("pub mod {path}"));
            }
            "struct" => {
                let g = self.generics(&inner["generics"]);
                lines.insert(format!("{attrs}pub struct {path}{g}"));
                let k = &inner["kind"];
                let fields = k
                    .get("plain")
                    .map(|p| p["fields"].clone())
                    .or_else(|| k.get("tuple").cloned())
                    .unwrap_or(Value::Array(Vec::new()));
                for (n, f) in fields.as_array().unwrap().iter().enumerate() {
                    let Some(f) = self.index.get(&f.to_string()) else {
                        continue; // a private tuple field
                    };
                    if f["visibility"] != "public" {
                        continue;
                    }
                    let name = f["name"].as_str().map_or(n.to_string(), str::to_string);
                    let ty = self.ty(&f["inner"]["struct_field"]);
                    lines.insert(format!("pub {path}::{name}: {ty}"));
                }
                self.impls(&inner["impls"], path, lines);
            }
            "enum" => {
                let g = self.generics(&inner["generics"]);
                lines.insert(format!("{attrs}pub enum {path}{g}"));
                for v in inner["variants"].as_array().unwrap() {
                    let v = &self.index[&v.to_string()];
                    let name = v["name"].as_str().unwrap();
                    let vk = &v["inner"]["variant"]["kind"];
                    let shape = if let Some(t) = vk.get("tuple") {
                        let tys: Vec<String> = t
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|f| self.ty(&self.index[&f.to_string()]["inner"]["struct_field"]))
                            .collect();
                        format!("({})", tys.join(", "))
                    } else if let Some(s) = vk.get("struct") {
                        let fs: Vec<String> = s["fields"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|f| {
                                let f = &self.index[&f.to_string()];
                                format!(
                                    "{}: {}",
                                    f["name"].as_str().unwrap(),
                                    self.ty(&f["inner"]["struct_field"])
                                )
                            })
                            .collect();
                        format!(" {{ {} }}", fs.join(", "))
                    } else {
                        String::new()
                    };
                    lines.insert(format!("{}{path}::{name}{shape}", attrs_of(v)));
                }
                self.impls(&inner["impls"], path, lines);
            }
            "function" => {
                lines.insert(format!("{attrs}{}", self.function(inner, path)));
            }
            "constant" => {
                lines.insert(format!("pub const {path}: {}", self.ty(&inner["type"])));
            }
            "static" => {
                lines.insert(format!("pub static {path}: {}", self.ty(&inner["type"])));
            }
            "type_alias" => {
                lines.insert(format!("pub type {path} = {}", self.ty(&inner["type"])));
            }
            other => {
                lines.insert(format!("pub {other} {path}"));
            }
        }
    }

    /// Inherent methods and the (not auto, not blanket) trait impls.
    fn impls(&self, impls: &Value, path: &str, lines: &mut BTreeSet<String>) {
        for i in impls.as_array().unwrap() {
            let imp = &self.index[&i.to_string()]["inner"]["impl"];
            if imp["is_synthetic"] == true || !imp["blanket_impl"].is_null() {
                continue;
            }
            if imp["trait"].is_null() {
                for m in imp["items"].as_array().unwrap() {
                    let m = &self.index[&m.to_string()];
                    if m["visibility"] != "public" {
                        continue;
                    }
                    let (kind, inner) = kind(m);
                    let name = m["name"].as_str().unwrap();
                    let line = match kind {
                        "function" => self.function(inner, &format!("{path}::{name}")),
                        "assoc_const" => format!("pub const {path}::{name}"),
                        other => format!("pub {other} {path}::{name}"),
                    };
                    lines.insert(format!("{}{line}", attrs_of(m)));
                }
            } else {
                let g = self.generics(&imp["generics"]);
                lines.insert(format!(
                    "impl{g} {} for {}",
                    self.path_of(&imp["trait"]),
                    self.ty(&imp["for"])
                ));
            }
        }
    }

    fn function(&self, f: &Value, path: &str) -> String {
        let sig = &f["sig"];
        let inputs: Vec<String> = sig["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let name = p[0].as_str().unwrap();
                let ty = self.ty(&p[1]);
                match (name, ty.as_str()) {
                    ("self", "Self") => "self".to_string(),
                    ("self", "&Self") => "&self".to_string(),
                    ("self", "&mut Self") => "&mut self".to_string(),
                    _ => format!("{name}: {ty}"),
                }
            })
            .collect();
        let output = if sig["output"].is_null() {
            String::new()
        } else {
            format!(" -> {}", self.ty(&sig["output"]))
        };
        format!(
            "pub fn {path}{}({}){output}{}",
            self.generics(&f["generics"]),
            inputs.join(", "),
            self.where_clause(&f["generics"])
        )
    }

    /// `<T: Bound, 'a>`, without the synthetic parameters of `impl Trait`
    /// arguments.
    fn generics(&self, g: &Value) -> String {
        let params: Vec<String> = g["params"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                let name = p["name"].as_str().unwrap();
                let k = &p["kind"];
                if let Some(t) = k.get("type") {
                    if t["is_synthetic"] == true {
                        return None;
                    }
                    let bounds = self.bounds(&t["bounds"]);
                    return Some(if bounds.is_empty() {
                        name.to_string()
                    } else {
                        format!("{name}: {bounds}")
                    });
                }
                if let Some(c) = k.get("const") {
                    return Some(format!("const {name}: {}", self.ty(&c["type"])));
                }
                Some(name.to_string())
            })
            .collect();
        if params.is_empty() {
            String::new()
        } else {
            format!("<{}>", params.join(", "))
        }
    }

    fn where_clause(&self, g: &Value) -> String {
        let preds: Vec<String> = g["where_predicates"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                let b = p.get("bound_predicate")?;
                Some(format!(
                    "{}: {}",
                    self.ty(&b["type"]),
                    self.bounds(&b["bounds"])
                ))
            })
            .collect();
        if preds.is_empty() {
            String::new()
        } else {
            format!(" where {}", preds.join(", "))
        }
    }

    fn bounds(&self, bounds: &Value) -> String {
        bounds
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                if let Some(t) = b.get("trait_bound") {
                    let maybe = if t["modifier"] == "maybe" { "?" } else { "" };
                    format!("{maybe}{}", self.path_of(&t["trait"]))
                } else if let Some(l) = b.get("outlives") {
                    l.as_str().unwrap().to_string()
                } else {
                    b.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// A path with its generic arguments; local items by their public path.
    fn path_of(&self, p: &Value) -> String {
        let id = p["id"].to_string();
        let name = match self.public.get(&id) {
            Some(public) => public.clone(),
            None => match self.paths.get(&id) {
                Some(known) if known["crate_id"] != 0 => known["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("::"),
                // A private item of b9 in the API: shown by its path as
                // written, a leak to look at.
                _ => format!("(private) {}", p["path"].as_str().unwrap()),
            },
        };
        format!("{name}{}", self.args(&p["args"]))
    }

    fn args(&self, args: &Value) -> String {
        if let Some(a) = args.get("angle_bracketed") {
            let mut parts: Vec<String> = a["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    if let Some(t) = g.get("type") {
                        self.ty(t)
                    } else if let Some(l) = g.get("lifetime") {
                        l.as_str().unwrap().to_string()
                    } else if let Some(c) = g.get("const") {
                        c["expr"].as_str().unwrap_or("_").to_string()
                    } else {
                        "_".to_string()
                    }
                })
                .collect();
            for c in a["constraints"].as_array().unwrap() {
                let name = c["name"].as_str().unwrap();
                if let Some(t) = c["binding"].get("equality").and_then(|e| e.get("type")) {
                    parts.push(format!("{name} = {}", self.ty(t)));
                } else {
                    parts.push(name.to_string());
                }
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!("<{}>", parts.join(", "))
            }
        } else if let Some(p) = args.get("parenthesized") {
            let inputs: Vec<String> = p["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| self.ty(t))
                .collect();
            let output = if p["output"].is_null() {
                String::new()
            } else {
                format!(" -> {}", self.ty(&p["output"]))
            };
            format!("({}){output}", inputs.join(", "))
        } else {
            String::new()
        }
    }

    fn ty(&self, t: &Value) -> String {
        let (kind, inner) = match t.as_object().and_then(|o| o.iter().next()) {
            Some((k, v)) => (k.as_str(), v),
            None => return t.as_str().unwrap_or("?").to_string(),
        };
        match kind {
            "resolved_path" => self.path_of(inner),
            "generic" | "primitive" => inner.as_str().unwrap().to_string(),
            "borrowed_ref" => {
                let lifetime = inner["lifetime"]
                    .as_str()
                    .map(|l| format!("{l} "))
                    .unwrap_or_default();
                let m = if inner["is_mutable"] == true {
                    "mut "
                } else {
                    ""
                };
                format!("&{lifetime}{m}{}", self.ty(&inner["type"]))
            }
            "raw_pointer" => {
                let m = if inner["is_mutable"] == true {
                    "mut"
                } else {
                    "const"
                };
                format!("*{m} {}", self.ty(&inner["type"]))
            }
            "slice" => format!("[{}]", self.ty(inner)),
            "array" => format!(
                "[{}; {}]",
                self.ty(&inner["type"]),
                inner["len"].as_str().unwrap_or("_")
            ),
            "tuple" => {
                let tys: Vec<String> = inner
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| self.ty(t))
                    .collect();
                format!("({})", tys.join(", "))
            }
            "impl_trait" => format!("impl {}", self.bounds(inner)),
            "dyn_trait" => {
                let traits: Vec<String> = inner["traits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| self.path_of(&t["trait"]))
                    .collect();
                format!("dyn {}", traits.join(" + "))
            }
            "qualified_path" => format!(
                "<{} as {}>::{}",
                self.ty(&inner["self_type"]),
                self.path_of(&inner["trait"]),
                inner["name"].as_str().unwrap()
            ),
            other => format!("<{other}>"),
        }
    }
}

/// The item's kind and the data under it.
fn kind(item: &Value) -> (&str, &Value) {
    let (k, v) = item["inner"].as_object().unwrap().iter().next().unwrap();
    (k.as_str(), v)
}

/// `#[non_exhaustive] ` when the item has it (what users may match on and
/// build is part of the API).
fn attrs_of(item: &Value) -> String {
    let non_exhaustive = item["attrs"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a == "non_exhaustive"));
    if non_exhaustive {
        "#[non_exhaustive] ".to_string()
    } else {
        String::new()
    }
}
