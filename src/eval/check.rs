//! Static checks of expanded instances: everything that can be known wrong
//! before a build starts (`b9 check`).
//!
//! Source files exist and are readable; `ExpandVariables` files are valid
//! templates using only defined variables; YAML and Erlang files parse; mount points are
//! absolute and exactly one image is the root when images are mounted;
//! partition numbers and sizes are valid; no two artifacts write one output.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use crate::diag::source::{Source, SourceRef, Span};
use crate::diag::{Diagnostic, Seen};
pub use crate::eval::dirs::{normalize, Dirs};
use crate::eval::env::Env;
use crate::eval::expand::{Instance, WriterInput};
use crate::eval::outputs::OutputRules;
use crate::eval::subst::{undefined_variable, Interpolator};
use crate::lang::syntax::*;
use crate::lang::typed::Node;
use crate::text::template::{self, Piece, TemplateError};
use crate::text::{erlang, yaml};

/// Runs every static check over the instances and returns the problems found
/// (errors and warnings), each reported once.
#[cfg(any(test, feature = "internals"))]
pub fn check(instances: &[Instance], dirs: &Dirs) -> Vec<Diagnostic> {
    let mut c = Checker::new(dirs);
    for inst in instances {
        c.instance(inst);
    }
    c.finish()
}

/// Drops repeated diagnostics (the same problem in many `Each` iterations).
pub fn dedupe(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = Seen::default();
    diagnostics.into_iter().filter(|d| seen.first(d)).collect()
}

/// A check of whole instances defined above `eval` (the cloud-config
/// checks, `content::cloud_config`), run by the [`Checker`] on every
/// instance; its problems are deduplicated with the others.
pub trait InstanceCheck {
    /// Checks one instance; problems go to `out`.
    fn instance(&mut self, inst: &Instance, dirs: &Dirs, out: &mut Vec<Diagnostic>);
}

/// A host file as the checks see it.
enum FileState {
    /// A readable regular file whose contents were not needed.
    Exists,
    /// Readable; its text when it is UTF-8.
    Read(Option<SourceRef>),
    /// Missing or unreadable, with the reason.
    Unreadable(String),
}

/// The static checks, fed one instance at a time (see
/// [`crate::eval::expand::expand_into`]); repeated problems are kept once
/// as they come.
pub struct Checker<'a> {
    dirs: &'a Dirs,
    files: HashMap<PathBuf, FileState>,
    /// `ExpandVariables` files, parsed once.
    templates: HashMap<PathBuf, Rc<Result<Vec<Piece>, TemplateError>>>,
    /// Where outputs may go, and that no two artifacts write one
    /// (`docs/OUTPUTS.md`).
    rules: OutputRules,
    /// A further check, from a layer above.
    extra: Option<&'a mut dyn InstanceCheck>,
    out: Vec<Diagnostic>,
    seen: Seen,
}

/// The kind of text an `ASTParse` file must hold.
#[derive(Clone, Copy, PartialEq)]
enum Syntax {
    Yaml,
    Erlang,
}

impl<'a> Checker<'a> {
    /// No instance checked yet; relative paths resolve in `dirs`.
    pub fn new(dirs: &'a Dirs) -> Checker<'a> {
        Checker {
            dirs,
            files: HashMap::new(),
            templates: HashMap::new(),
            rules: OutputRules::new(dirs),
            extra: None,
            out: Vec::new(),
            seen: Seen::default(),
        }
    }

    /// Runs `extra` on every instance too.
    pub fn with_check(mut self, extra: &'a mut dyn InstanceCheck) -> Checker<'a> {
        self.extra = Some(extra);
        self
    }

    /// The problems found, in the order found, each once.
    pub fn finish(self) -> Vec<Diagnostic> {
        self.out
    }

    fn push(&mut self, d: Diagnostic) {
        if self.seen.first(&d) {
            self.out.push(d);
        }
    }

    fn error(&mut self, inst: &Instance, span: Span, d: Diagnostic) {
        let d = d.at(&inst.source, span).with_note(in_instance(inst));
        self.push(d);
    }

    /// Checks one instance.
    pub fn instance(&mut self, inst: &Instance) {
        if let Some(why) = instance_id_problem(&inst.id.value) {
            let d = Diagnostic::error(format!(
                "instance id {:?} cannot name the instance's build directory: {why}",
                inst.id.value
            ))
            .with_note(
                "the id names `<buildDir>/artifact-instances/<id>-<buildId>/` and `<buildDir>/images/<id>/`",
            );
            self.error(inst, inst.id.span, d);
        }
        for w in &inst.writers {
            if w.output.is_empty() || Path::new(&w.output.value).is_absolute() || escapes(&w.output)
            {
                let d = Diagnostic::error(format!(
                    "output path {:?} must be a relative path inside the instance directory",
                    w.output.value
                ));
                self.error(inst, w.output.span, d);
            }
            self.file_name(inst, &w.output, "output path");
            match &w.input {
                WriterInput::File { path, expand } => self.source_file(inst, path, *expand, None),
                WriterInput::Content(c) => self.content(inst, c),
            }
        }
        self.assembly(inst);
        let mut found = Vec::new();
        self.rules.instance(inst, self.dirs, &mut found);
        crate::eval::unsubstituted::instance(inst, &mut found);
        if let Some(extra) = &mut self.extra {
            extra.instance(inst, self.dirs, &mut found);
        }
        for d in found {
            self.push(d);
        }
    }

    /// Guards a host path the instance reads against the outputs
    /// (`eval::outputs`).
    fn reads(&mut self, what: &str, path: &Path) {
        let mut found = Vec::new();
        self.rules.guard(what, path, &mut found);
        for d in found {
            self.push(d);
        }
    }

    /// Classifies a host file, once per path; its contents are read only
    /// when `need_text` (source files can be large binaries).
    fn file(&mut self, path: &Path, need_text: bool) -> &FileState {
        let known = match self.files.get(path) {
            None => false,
            Some(FileState::Exists) => !need_text,
            Some(_) => true,
        };
        if !known {
            let state = if need_text {
                match std::fs::read(path) {
                    Ok(bytes) => {
                        FileState::Read(String::from_utf8(bytes).ok().map(|t| Source::new(path, t)))
                    }
                    Err(e) if path.is_dir() => {
                        FileState::Unreadable(format!("it is a directory ({e})"))
                    }
                    Err(e) => FileState::Unreadable(e.to_string()),
                }
            } else {
                match std::fs::File::open(path) {
                    Ok(_) if path.is_file() => FileState::Exists,
                    Ok(_) => FileState::Unreadable("it is not a regular file".into()),
                    Err(e) => FileState::Unreadable(e.to_string()),
                }
            };
            self.files.insert(path.to_path_buf(), state);
        }
        self.files.get(path).unwrap_or(&FileState::Exists)
    }

    /// A source file: exists, is readable, and when expanded is a valid template
    /// over the instance's variables; `syntax` asks for a YAML check too.
    fn source_file(
        &mut self,
        inst: &Instance,
        path: &Node<String>,
        expand: bool,
        syntax: Option<Syntax>,
    ) {
        if !self.file_name(inst, path, "source file") {
            return;
        }
        let resolved = self.dirs.cwd.join(&path.value);
        self.reads("the source file", &resolved);
        let need_text = expand || syntax.is_some();
        let state = match self.file(&resolved, need_text) {
            FileState::Unreadable(why) => Err(why.clone()),
            FileState::Read(text) => Ok(text.clone()),
            FileState::Exists => Ok(None),
        };
        let text = match state {
            Err(why) => {
                let d = Diagnostic::error(format!(
                    "cannot read source file {}: {why}",
                    resolved.display()
                ))
                .with_label("this file")
                .with_hint("relative source paths are resolved against the working directory");
                self.error(inst, path.span, d);
                return;
            }
            Ok(text) => text,
        };
        if !expand && syntax.is_none() {
            return;
        }
        let Some(src) = text else {
            let d = Diagnostic::error(format!("{} is not UTF-8 text", resolved.display()));
            self.error(inst, path.span, d);
            return;
        };
        let expanded = if expand {
            match self.expand_file(inst, path, &src, &inst.env) {
                Some(t) => t,
                None => return,
            }
        } else {
            src.text().to_string()
        };
        match syntax {
            Some(Syntax::Yaml) => {
                if let Err(e) = yaml::parse(&expanded) {
                    let d =
                        Diagnostic::error(format!("invalid YAML in {}: {e}", resolved.display()));
                    self.error(inst, path.span, d);
                }
            }
            Some(Syntax::Erlang) => match erlang::parse_document(&expanded) {
                Ok((_, Some(trailing))) => {
                    let d = ignored_after_final_dot(&src, &expanded, trailing.offset)
                        .with_note(in_instance(inst));
                    self.push(d);
                }
                Ok((_, None)) => {}
                Err(e) => {
                    let d = Diagnostic::error(format!(
                        "invalid Erlang term in {} at line {}, column {}: {}",
                        resolved.display(),
                        e.line,
                        e.column,
                        e.message
                    ));
                    self.error(inst, path.span, d);
                }
            },
            None => {}
        }
    }

    /// Expands a template file for the instance, reporting syntax errors and
    /// undefined variables at their place in the file.
    fn expand_file(
        &mut self,
        inst: &Instance,
        path: &Node<String>,
        src: &SourceRef,
        env: &Env,
    ) -> Option<String> {
        let used_by = || {
            format!(
                "used as `ExpandVariables` source by artifact instance `{}` at {}:{}",
                inst.id.value,
                inst.source.name().display(),
                inst.source.line_col(path.span.start)
            )
        };
        // Parsed once per file: every instance of an `Each` expands it.
        let parsed = Rc::clone(
            self.templates
                .entry(src.name().to_path_buf())
                .or_insert_with(|| Rc::new(template::parse(src.text()))),
        );
        let pieces = match &*parsed {
            Ok(p) => p,
            Err(e) => {
                let d = Diagnostic::error(format!("template syntax error: {}", e.message))
                    .at(src, Span::new(e.start, e.end))
                    .with_note(used_by());
                self.push(d);
                return None;
            }
        };
        match template::render(pieces, |n| env.get(n)) {
            Ok(t) => Some(t),
            Err(piece) => {
                if let Piece::Var { name, start, end } = piece {
                    let d = undefined_variable(name, env)
                        .at(src, Span::new(*start, *end))
                        .with_note(used_by());
                    self.push(d);
                }
                None
            }
        }
    }

    fn content(&mut self, inst: &Instance, c: &Node<Content>) {
        use Content::*;
        match &c.value {
            RenderErlang(ast) => self.ast(inst, ast, Syntax::Erlang),
            RenderYamlObject(ast) => self.ast(inst, ast, Syntax::Yaml),
            RenderCloudConfig(ast) => self.ast(inst, ast, Syntax::Yaml),
            FromTextFile(file) => self.content_file(inst, file, None),
            RenderBase64BinaryFile(path) => self.source_file(inst, path, false, None),
            FromByteString(_) | FromString(_) | RenderBase64Binary(_) | FromURL(_) => {}
        }
    }

    /// A `SourceFile` read while rendering content: its path is interpolated then.
    fn content_file(&mut self, inst: &Instance, file: &Node<SourceFile>, syntax: Option<Syntax>) {
        let SourceFile::Source(conv, path) = &file.value;
        let mut diags = Vec::new();
        let resolved = Interpolator {
            source: inst.source.clone(),
            diagnostics: &mut diags,
        }
        .string(path, &inst.env);
        for d in diags {
            self.push(d.with_note(in_instance(inst)));
        }
        let expand = matches!(conv.value, SourceFileConversion::ExpandVariables);
        self.source_file(inst, &resolved, expand, syntax);
    }

    fn ast<A>(&mut self, inst: &Instance, ast: &Node<Ast<A>>, syntax: Syntax) {
        match &ast.value {
            Ast::ASTObj(entries) => {
                for e in entries.iter() {
                    self.ast(inst, &e.1, syntax);
                }
            }
            Ast::ASTArr(items) => items.iter().for_each(|i| self.ast(inst, i, syntax)),
            Ast::ASTMerge(items) => {
                if items.is_empty() {
                    let d = Diagnostic::error("`ASTMerge` must not be used with an empty list")
                        .with_label("nothing to merge");
                    self.error(inst, ast.span, d);
                }
                items.iter().for_each(|i| self.ast(inst, i, syntax));
            }
            Ast::ASTEmbed(content) => self.content(inst, &content.with((*content.value).clone())),
            Ast::ASTParse(file) => self.content_file(inst, file, Some(syntax)),
            Ast::ASTString(_) | Ast::ASTInt(_) | Ast::AST(_) => {}
        }
    }

    fn assembly(&mut self, inst: &Instance) {
        use ArtifactAssembly::*;
        match &inst.assembly.value {
            CloudInit(_, base) => {
                self.file_name(inst, base, "cloud-init output path");
            }
            VmImages(targets, script) | VmImagesWithFixup(targets, script, _) => {
                self.targets(inst, targets, script);
            }
        }
    }

    fn targets(&mut self, inst: &Instance, targets: &List<ImageTarget>, script: &Node<VmScript>) {
        let mut roots = Vec::new();
        let mut mounted = 0;
        for t in targets.iter() {
            let ImageTarget::ImageTarget(dest, source, mount) = &t.value;
            if let MountPoint::MountPoint(p) = &mount.value {
                mounted += 1;
                self.absolute_mount(inst, p);
                if p.value.trim_end_matches('/').is_empty() {
                    roots.push(mount.span);
                }
            }
            let fs = self.image_source(inst, source);
            self.destination(inst, dest, fs);
        }
        for extra in roots.iter().skip(1) {
            let d = Diagnostic::error("more than one image is mounted at `/`")
                .with_label("a second root image")
                .with_note(
                    "exactly one image of a `VmImages` build is the guest's root file system",
                );
            self.error(inst, *extra, d);
        }
        if let VmScript::VmScript(_, shares, body) = &script.value {
            for s in shares.iter() {
                let (SharedDirectory::SharedDirectory(_, m)
                | SharedDirectory::SharedDirectoryRO(_, m)
                | SharedDirectory::SharedSources(m)) = &s.value;
                if let MountPoint::MountPoint(p) = &m.value {
                    self.absolute_mount(inst, p);
                }
                if let SharedDirectory::SharedDirectory(dir, _)
                | SharedDirectory::SharedDirectoryRO(dir, _) = &s.value
                {
                    if self.file_name(inst, dir, "shared directory") {
                        let resolved = self.dirs.cwd.join(&dir.value);
                        self.reads("the shared directory", &resolved);
                    }
                }
            }
            if roots.is_empty() && mounted > 0 && runs_something(body) {
                let d = Diagnostic::error("images are mounted, but none at `/`")
                    .with_label("the script needs a root file system")
                    .with_hint("mount one image at `MountPoint \"/\"`");
                self.error(inst, targets.span, d);
            }
        }
    }

    fn absolute_mount(&mut self, inst: &Instance, p: &Node<String>) {
        self.file_name(inst, p, "mount point");
        if !p.value.starts_with('/') {
            let d = Diagnostic::error(format!("mount point {:?} is not an absolute path", p.value))
                .with_hint(format!("write {:?}", format!("/{}", p.value)));
            self.error(inst, p.span, d);
        }
    }

    /// Checks an image source; returns the file system of the build image when known.
    fn image_source(&mut self, inst: &Instance, s: &Node<ImageSource>) -> Option<FileSystem> {
        use ImageSource::*;
        match &s.value {
            EmptyImage(_, fs, _, size) => {
                self.size(inst, size);
                match fs.value {
                    FileSystem::ISO9660 | FileSystem::VFAT => {
                        let d = Diagnostic::error(format!(
                            "an `EmptyImage` cannot have the file system `{}`",
                            fs_name(&fs.value)
                        ))
                        .with_note("`EmptyImage` creates `Ext4` file systems or none (`NoFileSystem`)")
                        .with_hint("for cloud-init media use `CloudInit [CI_ISO]` or `CloudInit [CI_VFAT]`");
                        self.error(inst, fs.span, d);
                    }
                    FileSystem::Ext4_64 => {
                        let d = Diagnostic::warning("`Ext4_64` is deprecated")
                            .with_hint("use `Ext4` and `ext4_attributes: [\"64bit\"]` in b9.conf");
                        self.error(inst, fs.span, d);
                    }
                    _ => {}
                }
                Some(fs.value.clone())
            }
            CopyOnWrite(image) => self.source_image(inst, image),
            SourceImage(image, part, resize) => {
                let fs = self.source_image(inst, image);
                if let Partition::Partition(n) = &part.value {
                    if !(1..=128).contains(&n.value) {
                        let d = Diagnostic::error(format!(
                            "partition number {} is out of range",
                            n.value
                        ))
                        .with_note(
                            "partitions are numbered from 1: MBR primaries 1-4, GPT entries 1-128",
                        );
                        self.error(inst, n.span, d);
                    }
                }
                self.resize(inst, resize, fs.clone());
                fs
            }
            From(name, resize) => {
                self.file_name(inst, name, "shared image name");
                self.resize(inst, resize, None);
                None
            }
        }
    }

    fn source_image(&mut self, inst: &Instance, image: &Node<Image>) -> Option<FileSystem> {
        let Image::Image(path, _, fs) = &image.value;
        if !self.file_name(inst, path, "source image") {
            return Some(fs.value.clone());
        }
        let resolved = self.dirs.project_root.join(&path.value);
        self.reads("the source image", &resolved);
        // Images are untrusted input: a regular file whose backing files
        // and extents stay in its directory (without blocking on a FIFO).
        if let Err(e) = crate::disk::open::check_source(&resolved) {
            let io = matches!(e, crate::disk::DiskError::Io { .. });
            let mut d = Diagnostic::error(format!(
                "cannot use source image {}: {e}",
                resolved.display()
            ));
            if io {
                d = d.with_hint("relative image paths are resolved against the project root (`-b` / build_dir_root)");
            }
            self.error(inst, path.span, d);
        }
        Some(fs.value.clone())
    }

    fn destination(&mut self, inst: &Instance, d: &Node<ImageDestination>, fs: Option<FileSystem>) {
        use ImageDestination::*;
        match &d.value {
            Share(name, _, resize) => {
                self.file_name(inst, name, "shared image name");
                self.resize(inst, resize, fs);
            }
            LiveInstallerImage(name, root, resize) => {
                self.file_name(inst, name, "live installer image name");
                self.file_name(inst, root, "live installer output directory");
                let w = Diagnostic::warning("`LiveInstallerImage` is deprecated");
                self.error(inst, d.span, w);
                self.resize(inst, resize, fs);
            }
            LocalFile(image, resize) => {
                let Image::Image(path, _, _) = &image.value;
                self.file_name(inst, path, "output image");
                self.resize(inst, resize, fs);
            }
            Transient => {}
        }
    }

    fn resize(&mut self, inst: &Instance, r: &Node<ImageResize>, fs: Option<FileSystem>) {
        use ImageResize::*;
        let fs_size = match &r.value {
            ResizeImage(size) => {
                self.size(inst, size);
                return;
            }
            Resize(size) | ShrinkToMinimumAndIncrease(size) => Some(size),
            ShrinkToMinimum => None,
            KeepSize => return,
        };
        if let Some(size) = fs_size {
            self.size(inst, size);
        }
        if let Some(fs) = fs.filter(|f| !matches!(f, FileSystem::Ext4 | FileSystem::Ext4_64)) {
            let d = Diagnostic::error(format!("cannot resize a `{}` file system", fs_name(&fs)))
                .with_note("`Resize` and `ShrinkToMinimum*` work on ext4 file systems")
                .with_hint("use `ResizeImage` to resize only the image container");
            self.error(inst, r.span, d);
        }
    }

    fn size(&mut self, inst: &Instance, size: &Node<ImageSize>) {
        let ImageSize::ImageSize(amount, _) = &size.value;
        if amount.value <= 0 {
            let d = Diagnostic::error(format!("image size {} must be positive", amount.value));
            self.error(inst, amount.span, d);
        }
    }

    /// A string b9 will use as (part of) a file name: a NUL character cannot
    /// be in one, so it is reported here rather than failing the build.
    /// False if it was reported.
    fn file_name(&mut self, inst: &Instance, name: &Node<String>, what: &str) -> bool {
        if !name.value.contains('\0') {
            return true;
        }
        let d = Diagnostic::error(format!(
            "{what} {:?} contains a NUL character, which no file name can hold",
            name.value
        ));
        self.error(inst, name.span, d);
        false
    }
}

fn fs_name(fs: &FileSystem) -> &'static str {
    match fs {
        FileSystem::NoFileSystem => "NoFileSystem",
        FileSystem::Ext4 => "Ext4",
        FileSystem::Ext4_64 => "Ext4_64",
        FileSystem::ISO9660 => "ISO9660",
        FileSystem::VFAT => "VFAT",
    }
}

/// The note naming the instance a problem was found in (control characters
/// in its id escaped, not printed).
/// The warning for text after the final `.` of an Erlang file, which is
/// ignored as the original did (docs/COMPATIBILITY.md#erlang-terms). Located
/// in the file when the text after the point is as written there (always
/// without `ExpandVariables`), else in the expanded text.
fn ignored_after_final_dot(file: &SourceRef, expanded: &str, offset: usize) -> Diagnostic {
    let tail = expanded.get(offset..).unwrap_or("");
    let d = Diagnostic::warning("text after the final `.` of this Erlang term is ignored")
        .with_label("ignored")
        .with_hint("end the file at the `.`, or comment this out with `%`");
    match file.text().strip_suffix(tail) {
        Some(head) => d.at(file, Span::new(head.len(), file.text().len())),
        None => {
            let name = format!("{} (expanded)", file.name().display());
            d.at(
                &Source::new(name, expanded),
                Span::new(offset, expanded.len()),
            )
        }
    }
}

fn in_instance(inst: &Instance) -> String {
    let id = &inst.id.value;
    if id.chars().any(char::is_control) {
        format!("in artifact instance {id:?}")
    } else {
        format!("in artifact instance `{id}`")
    }
}

/// Why `id` cannot name a directory, if it cannot.
fn instance_id_problem(id: &str) -> Option<&'static str> {
    if id == "." || id == ".." {
        Some("`.` and `..` are not names but links: `<buildDir>/images/..` is the build directory itself")
    } else if id.contains('\0') {
        Some("it contains a NUL character, which no file name can hold")
    } else if id.contains('/') {
        Some("it contains `/`, which would make it a path")
    } else {
        None
    }
}

/// True if the script has at least one `Run`.
pub fn runs_something(s: &Script) -> bool {
    use Script::*;
    match s {
        Run(..) => true,
        Begin(steps)
        | In(_, steps)
        | As(_, steps)
        | IgnoreErrors(_, steps)
        | Verbosity(_, steps) => steps.iter().any(|s| runs_something(s)),
        NoOP => false,
    }
}

/// True if a relative path climbs out of its base with `..`.
fn escapes(path: &str) -> bool {
    let mut depth = 0i32;
    for c in Path::new(path).components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}
