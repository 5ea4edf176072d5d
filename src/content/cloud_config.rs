//! The cloud-config checks of `b9 check` (and of `b9 build`, which checks
//! before it writes anything): the `user-data` of every `CloudInit` artifact
//! that is a cloud-config (`RenderCloudConfig`, or a file starting with
//! `#cloud-config`) is rendered as the build would render it (merged,
//! `${var}` expanded; without downloads) and
//!
//! * validated against cloud-init's own JSON schema ([`crate::content::schema`]):
//!   violations are errors, located at the `.b9` node or the line and column
//!   of the YAML file the offending part came from;
//! * searched for top-level keys cloud-init does not know (it ignores them
//!   silently): warnings, with did-you-mean.
//!
//! A NoCloud `meta-data` without `instance-id` is a warning too. Content that
//! cannot be rendered here (a download, a file the other checks report) is
//! not checked.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::content::ast::YamlLiteral;
use crate::content::cloud_keys::{BASE_KEYS, MODULE_KEYS};
use crate::content::located::{merge, Located, Shape};
use crate::content::render::Renderer;
use crate::content::schema::{self, CloudSchema};
use crate::diag::source::{Source, SourceRef, Span};
use crate::diag::{did_you_mean, Diagnostic, Location};
use crate::eval::check::{Dirs, InstanceCheck};
use crate::eval::expand::{Instance, WriterInput};
use crate::lang::syntax::{
    ArtifactAssembly, Ast, CloudConfigYaml, Content, SourceFile, SourceFileConversion,
};
use crate::lang::typed::Node;
use crate::text::template::{self, Piece};
use crate::text::yaml::{self, Value};

/// Where the schema comes from, and whether it has been compiled yet (it is
/// large: compiled once a run, when the first cloud-config is met).
enum SchemaState {
    /// Not compiled yet: the configured path, or `None` to look for the
    /// installed cloud-init's.
    Pending(Option<PathBuf>),
    /// Compiled.
    Ready(Box<CloudSchema>),
    /// None found or usable: cloud-configs are not validated.
    Missing,
}

/// The cloud-config checks of one run (see the module documentation).
pub struct CloudConfigCheck {
    schema: SchemaState,
    /// Host files read, once per path (diagnostics share the text).
    files: HashMap<PathBuf, Option<SourceRef>>,
    /// A cloud-config was met and not validated (no schema).
    skipped: bool,
}

/// A template's expansion with the way back from its offsets to the
/// template's.
struct Expanded {
    /// The template's own text.
    source: SourceRef,
    /// The expanded text.
    text: String,
    /// The template's pieces, when it was expanded.
    pieces: Option<Vec<Piece>>,
    /// The values of the variables in the order they occur.
    values: Vec<usize>,
}

impl Expanded {
    /// The offset in the template of `offset` in the expanded text: inside
    /// a substituted value, the `$` of its variable.
    fn origin(&self, offset: usize) -> usize {
        let Some(pieces) = &self.pieces else {
            return offset;
        };
        let template = self.source.text();
        let (mut o, mut e) = (0usize, 0usize);
        let mut values = self.values.iter();
        for piece in pieces {
            match piece {
                Piece::Text(t) => {
                    let end = e + t.len();
                    while e < end {
                        let step = if template[o..].starts_with("$$") {
                            (2, 1)
                        } else {
                            let c = template[o..].chars().next().map_or(1, char::len_utf8);
                            (c, c)
                        };
                        if offset < e + step.1 {
                            return o + (offset - e).min(step.0 - 1);
                        }
                        o += step.0;
                        e += step.1;
                    }
                }
                Piece::Var { start, end, .. } => {
                    let len = values.next().copied().unwrap_or(0);
                    if offset < e + len {
                        return *start;
                    }
                    o = *end;
                    e += len;
                }
            }
        }
        (o + offset.saturating_sub(e)).min(template.len())
    }
}

impl CloudConfigCheck {
    /// Checks with the schema at `schema` (`[cloud-init] schema`), or the
    /// installed cloud-init's when `None`.
    pub fn new(schema: Option<PathBuf>) -> CloudConfigCheck {
        CloudConfigCheck {
            schema: SchemaState::Pending(schema),
            files: HashMap::new(),
            skipped: false,
        }
    }

    /// The note to print once when cloud-configs were met but not validated.
    pub fn skipped_note(&self) -> Option<String> {
        self.skipped.then(|| {
            format!(
                "note: cloud-config not validated: cloud-init's schema was not found (install cloud-init, or name its {} with `schema:` in b9.conf's [cloud-init] section)",
                schema::SCHEMA_IN_PACKAGE
            )
        })
    }

    /// The schema, compiled on first use; a configured schema that cannot be
    /// used is an error, an installed one a warning.
    fn schema(&mut self, out: &mut Vec<Diagnostic>) -> Option<&CloudSchema> {
        if let SchemaState::Pending(configured) = &self.schema {
            let configured = configured.clone();
            self.schema = match configured.clone().or_else(schema::find_installed) {
                None => SchemaState::Missing,
                Some(path) => match CloudSchema::load(&path) {
                    Ok(s) => SchemaState::Ready(Box::new(s)),
                    Err(e) => {
                        out.push(if configured.is_some() {
                            Diagnostic::error(e.to_string())
                                .with_note("named by `schema` in b9.conf's [cloud-init] section")
                        } else {
                            Diagnostic::warning(e.to_string())
                                .with_note("cloud-configs are not validated")
                        });
                        SchemaState::Missing
                    }
                },
            };
        }
        match &self.schema {
            SchemaState::Ready(s) => Some(s),
            _ => None,
        }
    }

    /// A host file's text, read once per path; `None` when unreadable or not
    /// UTF-8 (the file checks report that).
    fn file(&mut self, path: &Path) -> Option<SourceRef> {
        self.files
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(path).ok()?;
                Some(Source::new(path, text))
            })
            .clone()
    }

    /// A host file as the build writes it: expanded for the instance when asked.
    fn read(&mut self, inst: &Instance, path: &Path, expand: bool) -> Option<Expanded> {
        let source = self.file(path)?;
        if !expand {
            return Some(Expanded {
                text: source.text().to_string(),
                source,
                pieces: None,
                values: Vec::new(),
            });
        }
        let pieces = template::parse(source.text()).ok()?;
        let text = template::render(&pieces, |n| inst.env.get(n)).ok()?;
        let values = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Var { name, .. } => Some(inst.env.get(name).map_or(0, str::len)),
                Piece::Text(_) => None,
            })
            .collect();
        Some(Expanded {
            source,
            text,
            pieces: Some(pieces),
            values,
        })
    }

    /// The file a `SourceFile` names, read as the build reads it.
    fn source_file(&mut self, inst: &Instance, dirs: &Dirs, file: &SourceFile) -> Option<Expanded> {
        let SourceFile::Source(conv, path) = file;
        let path = renderer(inst, dirs)
            .expand(&path.value, "a source file path")
            .ok()?;
        let expand = matches!(conv.value, SourceFileConversion::ExpandVariables);
        self.read(inst, &dirs.cwd.join(path), expand)
    }

    /// A YAML text, each part located in its file.
    fn yaml(text: &Expanded) -> Option<Located> {
        let value = yaml::parse(&text.text).ok()?;
        let place = yaml::locate::locate(&text.text);
        let start = Location {
            source: text.source.clone(),
            span: Span::new(0, 0),
        };
        let origin = |o: usize| text.origin(o);
        Some(Located::from_text(
            value,
            place.as_ref(),
            &text.source,
            &origin,
            &start,
        ))
    }

    /// A cloud-config AST evaluated as the build evaluates it
    /// (`content::render`), each part located.
    fn ast(
        &mut self,
        inst: &Instance,
        dirs: &Dirs,
        ast: &Node<Ast<CloudConfigYaml>>,
    ) -> Option<Located> {
        let at = |span: Span| Location {
            source: inst.source.clone(),
            span,
        };
        let here = at(ast.span);
        Some(match &ast.value {
            Ast::ASTObj(entries) => {
                let mut map: Vec<(Value, Location, Located)> = Vec::with_capacity(entries.len());
                for e in entries.iter() {
                    let key = Value::String(e.0.value.clone());
                    let value = self.ast(inst, dirs, &e.1)?;
                    // A repeated key: the last value, at the first key's place.
                    match map.iter_mut().find(|(k, _, _)| *k == key) {
                        Some(entry) => entry.2 = value,
                        None => map.push((key, at(e.0.span), value)),
                    }
                }
                Located {
                    at: here,
                    shape: Shape::Map(map),
                }
            }
            Ast::ASTArr(items) => {
                let items: Option<Vec<Located>> =
                    items.iter().map(|i| self.ast(inst, dirs, i)).collect();
                Located {
                    at: here,
                    shape: Shape::Seq(items?),
                }
            }
            Ast::ASTMerge(items) => {
                let mut values = items.iter().map(|i| self.ast(inst, dirs, i));
                let first = values.next()??;
                values.try_fold(first, |acc, v| Some(merge(acc, v?)))?
            }
            Ast::ASTEmbed(content) => {
                if !offline(&content.value) {
                    return None;
                }
                let bytes = renderer(inst, dirs).content(&content.value).ok()?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                Located::whole(Value::String(text), &here)
            }
            Ast::ASTString(s) => Located::whole(Value::String(s.value.clone()), &at(s.span)),
            Ast::ASTInt(n) => Located::whole(Value::Number(n.value.into()), &at(n.span)),
            Ast::ASTParse(file) => {
                let text = self.source_file(inst, dirs, &file.value)?;
                CloudConfigCheck::yaml(&text)?
            }
            Ast::AST(literal) => Located::whole(literal.value.read().ok()?, &here),
        })
    }

    /// The cloud-config a `user-data` writer produces, if it is one; a
    /// `#cloud-config` text that is not YAML is reported in `out`.
    fn user_data(
        &mut self,
        inst: &Instance,
        dirs: &Dirs,
        input: &WriterInput,
        out: &mut Vec<Diagnostic>,
    ) -> Option<Located> {
        let text = match input {
            WriterInput::Content(c) => match &c.value {
                Content::RenderCloudConfig(ast) => return self.ast(inst, dirs, ast),
                Content::FromTextFile(file) => self.source_file(inst, dirs, &file.value)?,
                // Literal content (`FromString`, ...): located at its node.
                other if offline(other) => {
                    let bytes = renderer(inst, dirs).content(other).ok()?;
                    let text = String::from_utf8(bytes).ok()?;
                    let at = Location {
                        source: inst.source.clone(),
                        span: c.span,
                    };
                    if !text.starts_with(CLOUD_CONFIG_START) {
                        return None;
                    }
                    return match yaml::parse_cloud_config(&text) {
                        Ok(value) => Some(Located::whole(value, &at)),
                        Err(e) => {
                            out.push(not_yaml(inst, &e).at(&at.source, at.span));
                            None
                        }
                    };
                }
                _ => return None,
            },
            WriterInput::File { path, expand } => {
                self.read(inst, &dirs.cwd.join(&path.value), *expand)?
            }
        };
        if !text.text.starts_with(CLOUD_CONFIG_START) {
            return None;
        }
        if let Err(e) = yaml::parse_cloud_config(&text.text) {
            let offset = e
                .line
                .map_or(0, |l| line_offset(&text.text, l, e.column.unwrap_or(1)));
            let at = text.origin(offset);
            out.push(not_yaml(inst, &e).at(&text.source, Span::new(at, at)));
            return None;
        }
        CloudConfigCheck::yaml(&text)
    }

    /// Validates one cloud-config: unknown top-level keys (warnings), then the schema (errors).
    fn validate(&mut self, inst: &Instance, doc: &Located, out: &mut Vec<Diagnostic>) {
        let note = format!(
            "in the `user-data` of artifact instance `{}`",
            inst.id.value
        );
        let schema = self.schema(out);
        let known: Vec<&str> = match schema {
            Some(s) => s.keys().iter().map(String::as_str).collect(),
            None => MODULE_KEYS.to_vec(),
        };
        for (key, at) in doc.keys() {
            if known.contains(&key.as_str()) || BASE_KEYS.contains(&key.as_str()) {
                continue;
            }
            let mut d = Diagnostic::warning(format!(
                "unknown cloud-config key `{key}`: cloud-init ignores it"
            ))
            .at(&at.source, at.span)
            .with_note(note.clone());
            if let Some(k) = did_you_mean(&key, known.iter().copied()) {
                d = d.with_hint(format!("did you mean `{k}`?"));
            }
            out.push(d);
        }
        let Some(schema) = schema else {
            self.skipped = true;
            return;
        };
        for v in schema.validate(&doc.value()) {
            let (part, key) = doc.find(&v.path);
            let at = match (v.on_key, key) {
                (true, Some(k)) => k,
                _ => &part.at,
            };
            let mut d = Diagnostic::error(format!("invalid cloud-config: {}", v.message))
                .at(&at.source, at.span)
                .with_note(note.clone());
            if let Some(h) = v.hint {
                d = d.with_hint(h);
            }
            out.push(d);
        }
    }

    /// Warns when a `meta-data` writer's YAML has no `instance-id`.
    fn meta_data(
        &mut self,
        inst: &Instance,
        dirs: &Dirs,
        input: &WriterInput,
    ) -> Option<Diagnostic> {
        let (text, at) = match input {
            WriterInput::File { path, expand } => {
                let t = self.read(inst, &dirs.cwd.join(&path.value), *expand)?;
                let at = Location {
                    source: t.source.clone(),
                    span: Span::new(0, 0),
                };
                (t.text, at)
            }
            WriterInput::Content(c) => {
                let at = Location {
                    source: inst.source.clone(),
                    span: c.span,
                };
                match &c.value {
                    Content::FromTextFile(file) => {
                        let t = self.source_file(inst, dirs, &file.value)?;
                        let at = Location {
                            source: t.source.clone(),
                            span: Span::new(0, 0),
                        };
                        (t.text, at)
                    }
                    other if offline(other) => {
                        let bytes = renderer(inst, dirs).content(other).ok()?;
                        (String::from_utf8(bytes).ok()?, at)
                    }
                    _ => return None,
                }
            }
        };
        let has_id = match yaml::parse(&text).ok()? {
            Value::Mapping(m) => m.contains_key("instance-id"),
            _ => false,
        };
        (!has_id).then(|| {
            Diagnostic::warning("NoCloud `meta-data` without `instance-id`")
                .at(&at.source, at.span)
                .with_label("this meta-data")
                .with_note(format!(
                    "in artifact instance `{}`: cloud-init needs an `instance-id` to tell a new instance from a reboot",
                    inst.id.value
                ))
                .with_hint("add `instance-id: ${instance_id}` (or another id unique to the instance)")
        })
    }
}

impl InstanceCheck for CloudConfigCheck {
    fn instance(&mut self, inst: &Instance, dirs: &Dirs, out: &mut Vec<Diagnostic>) {
        if !matches!(inst.assembly.value, ArtifactAssembly::CloudInit(..)) {
            return;
        }
        // Later writers of a file win (docs/COMPATIBILITY.md#generated-files).
        let last = |name: &str| {
            inst.writers
                .iter()
                .rev()
                .find(|w| is_top_level(&w.output.value, name))
        };
        if let Some(w) = last("user-data") {
            if let Some(doc) = self.user_data(inst, dirs, &w.input, out) {
                self.validate(inst, &doc, out);
            }
        }
        match last("meta-data") {
            Some(w) => out.extend(self.meta_data(inst, dirs, &w.input)),
            None => out.push(
                Diagnostic::warning("NoCloud seed without `meta-data`")
                    .at(&inst.source, inst.assembly.span)
                    .with_label("this cloud-init artifact")
                    .with_note(format!(
                        "artifact instance `{}`: cloud-init's NoCloud data source only takes a seed with a `meta-data` file",
                        inst.id.value
                    ))
                    .with_hint("add `FromContent \"meta-data\" (FromTextFile (Source ExpandVariables \"meta-data.in\"))` with `instance-id: ${instance_id}`"),
            ),
        }
    }
}

/// How cloud-init recognises a cloud-config among user-data formats.
const CLOUD_CONFIG_START: &str = "#cloud-config";

/// The error for a `#cloud-config` user-data that cloud-init cannot read.
fn not_yaml(inst: &Instance, e: &yaml::YamlError) -> Diagnostic {
    Diagnostic::error(format!("invalid cloud-config: not YAML: {}", e.message)).with_note(format!(
        "in the `user-data` of artifact instance `{}`",
        inst.id.value
    ))
}

/// The byte offset of 1-based `line` and `column` (in characters) in `text`.
fn line_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start
        + rest
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

/// Whether `output` names `name` at the top of the instance directory.
fn is_top_level(output: &str, name: &str) -> bool {
    let mut parts = Path::new(output)
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    matches!(parts.next(), Some(Component::Normal(n)) if n == name) && parts.next().is_none()
}

/// The renderer of an instance's content, as the build has it (without downloads).
fn renderer<'a>(inst: &'a Instance, dirs: &'a Dirs) -> Renderer<'a> {
    Renderer {
        env: &inst.env,
        cwd: &dirs.cwd,
        url_timeout: None,
    }
}

/// Whether a content renders without a download.
fn offline(c: &Content) -> bool {
    match c {
        Content::FromURL(_) => false,
        Content::RenderErlang(ast) => ast_offline(&ast.value),
        Content::RenderYamlObject(ast) => ast_offline(&ast.value),
        Content::RenderCloudConfig(ast) => ast_offline(&ast.value),
        _ => true,
    }
}

fn ast_offline<A>(ast: &Ast<A>) -> bool {
    match ast {
        Ast::ASTObj(entries) => entries.iter().all(|e| ast_offline(&e.1.value)),
        Ast::ASTArr(items) | Ast::ASTMerge(items) => items.iter().all(|i| ast_offline(&i.value)),
        Ast::ASTEmbed(c) => offline(&c.value),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(template_text: &str, vars: &[(&str, &str)]) -> Expanded {
        let pieces = template::parse(template_text).unwrap();
        let get = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let text = template::render(&pieces, get).unwrap();
        let values = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Var { name, .. } => Some(get(name).map_or(0, str::len)),
                Piece::Text(_) => None,
            })
            .collect();
        Expanded {
            source: Source::new("t", template_text),
            text,
            pieces: Some(pieces),
            values,
        }
    }

    #[test]
    fn expanded_offsets_map_back_to_the_template() {
        let t = "a: ${host}.x\nb: $$5\nc: 7\n";
        let e = expanded(t, &[("host", "web-1")]);
        assert_eq!(e.text, "a: web-1.x\nb: $5\nc: 7\n");
        let find = |s: &str| e.text.find(s).unwrap();
        // Inside a value: the variable's `$`; after it, the same text.
        assert_eq!(e.origin(find("b-1")), t.find("${host}").unwrap());
        assert_eq!(e.origin(find(".x")), t.find(".x").unwrap());
        // `$$` is one `$` in the expansion.
        assert_eq!(e.origin(find("5")), t.find("5").unwrap());
        assert_eq!(e.origin(find("7")), t.find("7").unwrap());
    }

    #[test]
    fn only_top_level_files_are_cloud_init_files() {
        assert!(is_top_level("user-data", "user-data"));
        assert!(is_top_level("./user-data", "user-data"));
        assert!(!is_top_level("sub/user-data", "user-data"));
        assert!(!is_top_level("user-data.bak", "user-data"));
    }
}
