//! The expanded build plan that `b9 show` prints: per instance its id, kind of
//! assembly, the files it generates, what it reads and what it writes.

use serde::Serialize;

use crate::eval::expand::{Instance, WriterInput};
use crate::eval::subst::Interpolator;
use crate::lang::syntax::*;
use crate::lang::typed::Node;

/// One instance of the plan.
#[non_exhaustive]
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlanEntry {
    /// The instance id (`IID`).
    pub id: String,
    /// `<id>-<build id>`: the name of its working directory.
    pub unique_id: String,
    /// What it assembles.
    pub kind: ArtifactKind,
    /// Files generated into the instance directory.
    pub files: Vec<PlannedFile>,
    /// What the instance reads: host files, images, shared images, directories, URLs.
    pub inputs: Vec<String>,
    /// What it writes: files, directories, shared images.
    pub outputs: Vec<String>,
}

/// What an artifact assembles: its constructor in the build file.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum ArtifactKind {
    /// `CloudInit`: cloud-init media.
    CloudInit,
    /// `VmImages`: disk images, maybe changed by a script in a guest.
    VmImages,
    /// `VmImagesWithFixup`: as `VmImages`, then a script on the host.
    VmImagesWithFixup,
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A generated file.
#[non_exhaustive]
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlannedFile {
    /// Path inside the instance directory.
    pub path: String,
    /// How it is made, e.g. `copy of hosts.in (expanded)`.
    pub from: String,
    /// `0755`-style mode, when set.
    pub mode: Option<String>,
}

/// The plan of the instances, for a build with id `build_id`.
pub fn plan(instances: &[Instance], build_id: &str) -> Vec<PlanEntry> {
    instances.iter().map(|i| entry(i, build_id)).collect()
}

/// The plan entry of one instance.
pub(crate) fn entry(inst: &Instance, build_id: &str) -> PlanEntry {
    let mut e = PlanEntry {
        id: inst.id.value.clone(),
        unique_id: format!("{}-{build_id}", inst.id.value),
        kind: match &inst.assembly.value {
            ArtifactAssembly::CloudInit(..) => ArtifactKind::CloudInit,
            ArtifactAssembly::VmImages(..) => ArtifactKind::VmImages,
            ArtifactAssembly::VmImagesWithFixup(..) => ArtifactKind::VmImagesWithFixup,
        },
        files: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    for w in &inst.writers {
        let from = match &w.input {
            WriterInput::File { path, expand } => {
                e.inputs.push(path.value.clone());
                format!(
                    "copy of {}{}",
                    path.value,
                    if *expand { " (expanded)" } else { "" }
                )
            }
            WriterInput::Content(c) => content(inst, c, &mut e.inputs),
        };
        e.files.push(PlannedFile {
            path: w.output.value.clone(),
            from,
            mode: w
                .mode
                .as_ref()
                .map(|m| format!("0{}{}{}", m.value[0], m.value[1], m.value[2])),
        });
    }
    match &inst.assembly.value {
        ArtifactAssembly::CloudInit(types, base) => {
            for t in types.iter() {
                e.outputs.push(match t.value {
                    CloudInitType::CI_ISO => format!("{}.iso", base.value),
                    CloudInitType::CI_VFAT => format!("{}.vfat", base.value),
                    CloudInitType::CI_DIR => format!("{}/", base.value),
                });
            }
        }
        ArtifactAssembly::VmImages(targets, script)
        | ArtifactAssembly::VmImagesWithFixup(targets, script, _) => {
            images(targets, script, &mut e);
        }
    }
    e
}

/// Describes content and records the files and URLs it reads.
fn content(inst: &Instance, c: &Content, inputs: &mut Vec<String>) -> String {
    use Content::*;
    match c {
        RenderErlang(ast) => format!("Erlang term{}", ast_inputs(inst, ast, inputs)),
        RenderYamlObject(ast) => format!("YAML{}", ast_inputs(inst, ast, inputs)),
        RenderCloudConfig(ast) => format!("cloud-config YAML{}", ast_inputs(inst, ast, inputs)),
        FromByteString(_) => "bytes".into(),
        FromString(_) => "text".into(),
        FromTextFile(file) => format!("text of {}", source_file(inst, file, inputs)),
        RenderBase64BinaryFile(path) => {
            inputs.push(path.value.clone());
            format!("base64 of {}", path.value)
        }
        RenderBase64Binary(_) => "base64 of bytes".into(),
        FromURL(url) => {
            inputs.push(url.value.clone());
            format!("download of {}", url.value)
        }
    }
}

fn ast_inputs<A>(inst: &Instance, ast: &Ast<A>, inputs: &mut Vec<String>) -> String {
    let before = inputs.len();
    walk_ast(inst, ast, inputs);
    if inputs.len() == before {
        String::new()
    } else {
        format!(" from {}", inputs[before..].join(", "))
    }
}

fn walk_ast<A>(inst: &Instance, ast: &Ast<A>, inputs: &mut Vec<String>) {
    match ast {
        Ast::ASTObj(entries) => entries.iter().for_each(|e| walk_ast(inst, &e.1, inputs)),
        Ast::ASTArr(items) | Ast::ASTMerge(items) => {
            items.iter().for_each(|i| walk_ast(inst, i, inputs))
        }
        Ast::ASTEmbed(c) => {
            content(inst, c, inputs);
        }
        Ast::ASTParse(file) => {
            source_file(inst, file, inputs);
        }
        Ast::ASTString(_) | Ast::ASTInt(_) | Ast::AST(_) => {}
    }
}

/// The path of a content source file, interpolated as it will be when read.
fn source_file(inst: &Instance, file: &Node<SourceFile>, inputs: &mut Vec<String>) -> String {
    let SourceFile::Source(conv, path) = &file.value;
    let mut ignored = Vec::new();
    let path = Interpolator {
        source: inst.source.clone(),
        diagnostics: &mut ignored,
    }
    .string(path, &inst.env)
    .value;
    inputs.push(path.clone());
    match conv.value {
        SourceFileConversion::ExpandVariables => format!("{path} (expanded)"),
        SourceFileConversion::NoConversion => path,
    }
}

fn images(targets: &List<ImageTarget>, script: &Node<VmScript>, e: &mut PlanEntry) {
    for t in targets.iter() {
        let ImageTarget::ImageTarget(dest, source, _) = &t.value;
        match &source.value {
            ImageSource::EmptyImage(..) => {}
            ImageSource::CopyOnWrite(Node {
                value: Image::Image(p, ..),
                ..
            })
            | ImageSource::SourceImage(
                Node {
                    value: Image::Image(p, ..),
                    ..
                },
                ..,
            ) => e.inputs.push(p.value.clone()),
            ImageSource::From(name, _) => e.inputs.push(format!("shared image {}", name.value)),
        }
        match &dest.value {
            ImageDestination::Share(name, ..) => {
                e.outputs.push(format!("shared image {}", name.value))
            }
            ImageDestination::LiveInstallerImage(name, root, _) => e
                .outputs
                .push(format!("{}/machines/{}/", root.value, name.value)),
            ImageDestination::LocalFile(
                Node {
                    value: Image::Image(p, ..),
                    ..
                },
                _,
            ) => e.outputs.push(p.value.clone()),
            ImageDestination::Transient => {}
        }
    }
    if let VmScript::VmScript(_, shares, _) = &script.value {
        for s in shares.iter() {
            match &s.value {
                SharedDirectory::SharedDirectory(p, _) => {
                    e.inputs.push(format!("{}/ (read-write)", p.value))
                }
                SharedDirectory::SharedDirectoryRO(p, _) => {
                    e.inputs.push(format!("{}/ (read-only)", p.value))
                }
                SharedDirectory::SharedSources(_) => {}
            }
        }
    }
}

/// The plan as text, one block per instance.
pub fn render_text(entries: &[PlanEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("{} ({}): {}\n", e.id, e.unique_id, e.kind));
        if !e.files.is_empty() {
            out.push_str("  files:\n");
            for f in &e.files {
                let mode = f
                    .mode
                    .as_deref()
                    .map(|m| format!(" [mode {m}]"))
                    .unwrap_or_default();
                out.push_str(&format!("    {}{mode} <- {}\n", f.path, f.from));
            }
        }
        for (title, items) in [("inputs", &e.inputs), ("outputs", &e.outputs)] {
            if !items.is_empty() {
                out.push_str(&format!("  {title}:\n"));
                for i in items {
                    out.push_str(&format!("    {i}\n"));
                }
            }
        }
    }
    out
}
