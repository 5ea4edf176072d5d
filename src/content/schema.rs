//! cloud-init's own JSON schema for cloud-config, behind a small interface:
//! where it is installed, its top-level keys, and its violations in words a
//! user understands. The only user of the `jsonschema` crate.
//!
//! The schema is never copied into b9: it is read from the cloud-init
//! installed on the host (or the file `[cloud-init] schema` names), so it
//! matches the cloud-init that will read the media.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value as Json;

use crate::content::located::Step;
use crate::diag::did_you_mean;
use crate::text::yaml::Value;

/// Where the schema lies inside a cloud-init installation (a Python package).
pub const SCHEMA_IN_PACKAGE: &str = "cloudinit/config/schemas/schema-cloud-config-v1.json";

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file cannot be read.
    #[error("cannot read cloud-init's schema {}: {source}", path.display())]
    Read {
        /// The schema file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("cloud-init's schema {} is not JSON: {source}", path.display())]
    Json {
        /// The schema file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The JSON is not a schema the validator accepts.
    #[error("cloud-init's schema {} is not a usable JSON schema: {message}", path.display())]
    Compile {
        /// The schema file.
        path: PathBuf,
        /// The validator's message.
        message: String,
    },
}

/// cloud-init's cloud-config schema, compiled.
pub struct CloudSchema {
    /// The schema document, to read the alternatives of a `oneOf`.
    schema: Json,
    validator: Validator,
    keys: Vec<String>,
}

/// One way a cloud-config breaks the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The path of the offending part in the document.
    pub path: Vec<Step>,
    /// What is wrong, in words.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
    /// The path ends at a mapping key that is itself the problem (a key the
    /// mapping does not take), rather than at a wrong value.
    pub on_key: bool,
}

/// The schema of the cloud-init installed on this host: the first
/// [`SCHEMA_IN_PACKAGE`] found in the Python package directories.
pub fn find_installed() -> Option<PathBuf> {
    let mut dirs = Vec::new();
    for lib in [
        "/usr/lib",
        "/usr/local/lib",
        "/usr/lib64",
        "/usr/local/lib64",
    ] {
        let Ok(entries) = std::fs::read_dir(lib) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for python in pythons {
            dirs.push(python.join("dist-packages"));
            dirs.push(python.join("site-packages"));
        }
    }
    dirs.into_iter()
        .map(|d| d.join(SCHEMA_IN_PACKAGE))
        .find(|p| p.is_file())
}

impl CloudSchema {
    /// Reads and compiles the schema at `path` (it is large: do it once a run).
    pub fn load(path: &Path) -> Result<CloudSchema, SchemaError> {
        let text = std::fs::read(path).map_err(|source| SchemaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let schema: Json = serde_json::from_slice(&text).map_err(|source| SchemaError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let validator = jsonschema::validator_for(&schema).map_err(|e| SchemaError::Compile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut keys = Vec::new();
        top_level_keys(&schema, &schema, &mut HashSet::new(), &mut keys);
        keys.sort();
        keys.dedup();
        Ok(CloudSchema {
            schema,
            validator,
            keys,
        })
    }

    /// The top-level keys the schema describes, sorted.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Every violation of the schema by `doc`, in document order.
    pub fn validate(&self, doc: &Value) -> Vec<Violation> {
        let json = to_json(doc);
        let mut out = Vec::new();
        for e in self.validator.iter_errors(&json) {
            self.explain(&e, &mut out);
        }
        out
    }
}

/// The keys of `properties` in `node` and in every schema its `$ref`,
/// `allOf`, `anyOf` and `oneOf` lead to (cloud-init's schema is an `allOf`
/// of `$ref`s to one definition per module).
fn top_level_keys(root: &Json, node: &Json, seen: &mut HashSet<String>, out: &mut Vec<String>) {
    if let Some(target) = node.get("$ref").and_then(Json::as_str) {
        if seen.insert(target.to_string()) {
            let pointer = target.strip_prefix('#').unwrap_or(target);
            if let Some(next) = root.pointer(pointer) {
                top_level_keys(root, next, seen, out);
            }
        }
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for sub in node
            .get(combinator)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            top_level_keys(root, sub, seen, out);
        }
    }
    if let Some(props) = node.get("properties").and_then(Json::as_object) {
        out.extend(props.keys().cloned());
    }
}

/// A YAML value as JSON, as cloud-init sees it after reading the YAML: keys
/// as text, tags dropped, non-finite numbers as `null`.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Mapping(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (crate::content::located::key_text(k), to_json(v)))
                .collect(),
        ),
        Value::Tagged(t) => to_json(&t.value),
    }
}

/// The path of an error's instance.
fn steps(e: &ValidationError<'_>) -> Vec<Step> {
    e.instance_path()
        .iter()
        .map(|s| match s {
            LocationSegment::Property(p) => Step::Key(p.into_owned()),
            LocationSegment::Index(i) => Step::Index(i),
        })
        .collect()
}

/// A path as a user reads it: `users[0].groups`; the document itself is
/// "the cloud-config".
pub fn show_path(path: &[Step]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        "the cloud-config".into()
    } else {
        format!("`{out}`")
    }
}

/// What a JSON value is, for "found ...": "the integer 5", "a list".
fn describe(v: &Json) -> String {
    match v {
        Json::Null => "nothing (null)".into(),
        Json::Bool(b) => format!("the boolean {b}"),
        Json::Number(n) if n.is_f64() => format!("the number {n}"),
        Json::Number(n) => format!("the integer {n}"),
        Json::String(s) if s.chars().count() > 40 => "a string".into(),
        Json::String(s) => format!("the string {s:?}"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a mapping".into(),
    }
}

/// A JSON type in cloud-config words (YAML's: lists and mappings).
fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Array => "a list",
        JsonType::Boolean => "a boolean (true or false)",
        JsonType::Integer => "an integer",
        JsonType::Null => "empty (null)",
        JsonType::Number => "a number",
        JsonType::Object => "a mapping",
        JsonType::String => "a string",
    }
}

fn types(kind: &TypeKind) -> Vec<&'static str> {
    match kind {
        TypeKind::Single(t) => vec![type_name(*t)],
        TypeKind::Multiple(set) => set.iter().map(type_name).collect(),
    }
}

/// "a, b or c".
fn alternatives(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

impl CloudSchema {
    /// A violation (or, for `oneOf`/`anyOf`, the violations of the alternative
    /// that came closest) in words.
    fn explain(&self, e: &ValidationError<'_>, out: &mut Vec<Violation>) {
        let path = steps(e);
        let at = show_path(&path);
        let found = describe(e.instance());
        let violation = |message: String, hint: Option<String>| Violation {
            path: path.clone(),
            message,
            hint,
            on_key: false,
        };
        match e.kind() {
            ValidationErrorKind::Type { kind } => out.push(violation(
                format!("{at} must be {}, found {found}", alternatives(&types(kind))),
                None,
            )),
            ValidationErrorKind::OneOfNotValid { context }
            | ValidationErrorKind::AnyOf { context } => self.alternative(e, context, &path, out),
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_string);
                out.push(violation(format!("{at} needs the key `{name}`"), None))
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                // The keys the mapping takes: `properties` beside `additionalProperties`.
                let parent = e.schema_path().as_str();
                let parent = parent
                    .strip_suffix("/additionalProperties")
                    .unwrap_or(parent);
                let known: Vec<&str> = self
                    .schema
                    .pointer(&format!("{parent}/properties"))
                    .and_then(Json::as_object)
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                for key in unexpected {
                    let mut p = path.clone();
                    p.push(Step::Key(key.clone()));
                    let hint = match did_you_mean(key, known.iter().copied()) {
                        Some(k) => format!("did you mean `{k}`?"),
                        None => {
                            "check the key's spelling in cloud-init's documentation of this module"
                                .into()
                        }
                    };
                    out.push(Violation {
                        message: format!("{at} does not take the key `{key}`"),
                        path: p,
                        hint: Some(hint),
                        on_key: true,
                    });
                }
            }
            ValidationErrorKind::Enum { options } => {
                let shown: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(|o| o.to_string()).collect())
                    .unwrap_or_default();
                let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
                out.push(violation(
                    format!("{at} must be {}, found {found}", alternatives(&shown)),
                    None,
                ))
            }
            ValidationErrorKind::MinItems { limit } => out.push(violation(
                format!("{at} must have at least {limit} item{}", plural(*limit)),
                None,
            )),
            ValidationErrorKind::MaxItems { limit } => out.push(violation(
                format!("{at} must have at most {limit} item{}", plural(*limit)),
                None,
            )),
            ValidationErrorKind::UniqueItems => {
                out.push(violation(format!("{at} must not list an item twice"), None))
            }
            ValidationErrorKind::Pattern { pattern } => out.push(violation(
                format!("{at} must match the pattern {pattern:?}, found {found}"),
                None,
            )),
            ValidationErrorKind::Minimum { limit } => out.push(violation(
                format!("{at} must be at least {limit}, found {found}"),
                None,
            )),
            ValidationErrorKind::Maximum { limit } => out.push(violation(
                format!("{at} must be at most {limit}, found {found}"),
                None,
            )),
            ValidationErrorKind::MinLength { limit } => out.push(violation(
                format!(
                    "{at} must be at least {limit} character{} long",
                    plural(*limit)
                ),
                None,
            )),
            ValidationErrorKind::Format { format } => out.push(violation(
                format!("{at} must be a valid {format}, found {found}"),
                None,
            )),
            _ => out.push(violation(format!("{at}: {e}"), None)),
        }
    }

    /// A value that matches none of the alternatives of a `oneOf`/`anyOf`.
    /// When an alternative has the value's kind but is wrong inside, that is
    /// what the user meant: its violations are reported (the alternative with
    /// the fewest). Else one violation names the kinds the alternatives take
    /// (read from the schema: under draft 4 a `type` beside a `$ref` is not
    /// checked, but it still says what the alternative is).
    fn alternative(
        &self,
        e: &ValidationError<'_>,
        context: &[Vec<ValidationError<'static>>],
        path: &[Step],
        out: &mut Vec<Violation>,
    ) {
        let depth = path.len();
        let closest = context
            .iter()
            .filter(|errors| !errors.is_empty() && errors.iter().all(|x| fits(x, depth)))
            .min_by_key(|errors| errors.len());
        if let Some(errors) = closest {
            for x in errors {
                self.explain(x, out);
            }
            return;
        }
        let mut expected: Vec<&'static str> = Vec::new();
        let mut add = |t: &'static str| {
            if !expected.contains(&t) {
                expected.push(t);
            }
        };
        for (i, errors) in context.iter().enumerate() {
            let branch = format!("{}/{i}/type", e.schema_path().as_str());
            match self.schema.pointer(&branch) {
                Some(Json::String(t)) => json_type(t).into_iter().for_each(&mut add),
                Some(Json::Array(ts)) => ts
                    .iter()
                    .filter_map(Json::as_str)
                    .filter_map(json_type)
                    .for_each(&mut add),
                _ => {
                    for x in errors {
                        if let ValidationErrorKind::Type { kind } = x.kind() {
                            types(kind).into_iter().for_each(&mut add);
                        }
                    }
                }
            }
        }
        let at = show_path(path);
        let found = describe(e.instance());
        let message = if expected.is_empty() {
            format!("{at} does not match any form cloud-init accepts here, found {found}")
        } else {
            format!("{at} must be {}, found {found}", alternatives(&expected))
        };
        out.push(Violation {
            path: path.to_vec(),
            message,
            hint: None,
            on_key: false,
        });
    }
}

/// Whether an alternative's error says the value has the alternative's kind
/// but is wrong inside: it is deeper than the value, or a rule that only
/// applies to a value of the right kind (a missing key of a mapping, ...), or
/// such an alternative of a nested `oneOf`/`anyOf`.
fn fits(e: &ValidationError<'_>, depth: usize) -> bool {
    if e.instance_path().iter().count() > depth {
        return true;
    }
    match e.kind() {
        ValidationErrorKind::Required { .. }
        | ValidationErrorKind::AdditionalProperties { .. }
        | ValidationErrorKind::MinItems { .. }
        | ValidationErrorKind::MaxItems { .. }
        | ValidationErrorKind::UniqueItems
        | ValidationErrorKind::MinLength { .. }
        | ValidationErrorKind::Pattern { .. }
        | ValidationErrorKind::Enum { .. } => true,
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            context
                .iter()
                .any(|errors| errors.iter().all(|x| fits(x, depth)))
        }
        _ => false,
    }
}

/// A JSON schema type name in cloud-config words.
fn json_type(name: &str) -> Option<&'static str> {
    Some(type_name(match name {
        "array" => JsonType::Array,
        "boolean" => JsonType::Boolean,
        "integer" => JsonType::Integer,
        "null" => JsonType::Null,
        "number" => JsonType::Number,
        "object" => JsonType::Object,
        "string" => JsonType::String,
        _ => return None,
    }))
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::yaml;

    /// The installed schema, or `None` (with a note) when cloud-init is not installed.
    fn installed() -> Option<CloudSchema> {
        let Some(path) = find_installed() else {
            eprintln!("note: cloud-init is not installed: schema tests skipped");
            return None;
        };
        Some(CloudSchema::load(&path).unwrap())
    }

    fn violations(s: &CloudSchema, text: &str) -> Vec<(String, String)> {
        s.validate(&yaml::parse(text).unwrap())
            .into_iter()
            .map(|v| (show_path(&v.path), v.message))
            .collect()
    }

    #[test]
    fn top_level_keys_come_through_refs_and_all_of() {
        let Some(s) = installed() else { return };
        for k in ["runcmd", "packages", "users", "write_files", "bootcmd"] {
            assert!(s.keys().iter().any(|x| x == k), "{k} missing");
        }
    }

    #[test]
    fn violations_say_what_is_wrong_where() {
        let Some(s) = installed() else { return };
        assert_eq!(
            violations(&s, "runcmd: 5\n"),
            [(
                "`runcmd`".to_string(),
                "`runcmd` must be a list, found the integer 5".to_string()
            )]
        );
        assert_eq!(
            violations(&s, "users: [5]\n"),
            [(
                "`users[0]`".to_string(),
                "`users[0]` must be a string, a list or a mapping, found the integer 5".to_string()
            )]
        );
        // An alternative of the value's kind, wrong inside: what is wrong inside.
        let user = s.validate(&yaml::parse("users:\n  - nme: bob\n").unwrap());
        assert_eq!(user[0].message, "`users[0]` does not take the key `nme`");
        assert_eq!(user[0].hint.as_deref(), Some("did you mean `name`?"));
        assert_eq!(user[1].message, "`users[0]` needs the key `name`");
        let nested = violations(&s, "write_files:\n  - path: /x\n    permissions: 644\n");
        assert_eq!(
            nested,
            [(
                "`write_files[0].permissions`".to_string(),
                "`write_files[0].permissions` must be a string, found the integer 644".to_string()
            )]
        );
        assert!(violations(&s, "runcmd: [ls]\npackages: [nginx]\n").is_empty());
    }

    #[test]
    fn yaml_values_become_the_json_cloud_init_validates() {
        let v = yaml::parse("a: [1, -2, 1.5, yes, ~, x]\n3: !t q\n").unwrap();
        assert_eq!(
            to_json(&v),
            serde_json::json!({"a": [1, -2, 1.5, true, null, "x"], "3": "q"})
        );
    }
}
