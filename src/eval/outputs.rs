//! Where outputs may go (`b9 check`, and `b9 build` before anything is
//! written): no output path is, or contains, the project root, the working
//! directory, a build file, a source read by the build (files, images,
//! shared directories), the shared-image cache or the home directory, nor
//! another output; names that become file names (`Share`,
//! `LiveInstallerImage`) are plain names. Rules in `docs/OUTPUTS.md`.
//!
//! Paths are compared after resolving the symbolic links of their existing
//! parent directories; what lies at an output path itself is judged by the
//! build when it replaces it (`build::output`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::diag::source::{SourceRef, Span};
use crate::diag::Diagnostic;
use crate::eval::claims::{self, Claims, PrehashedMap};
use crate::eval::dirs::{normalize, Dirs};
use crate::eval::expand::Instance;
use crate::lang::syntax::*;
use crate::lang::typed::Node;

/// The output rules, fed one instance at a time with the other static
/// checks (`eval::check`'s checker): what the instances seen so far read is
/// guarded, and every output is checked against it; a path guarded after
/// an output that is or contains it was accepted is reported at that output.
pub struct OutputRules {
    r: Resolver,
    guarded: Guarded,
    earlier: Earlier,
    /// The accepted outputs by resolved path, with where they are named.
    accepted: Claims,
    /// The build file of the last instance (guarded once).
    last_file: Option<SourceRef>,
}

impl OutputRules {
    /// Guards the project root, the working directory and `dirs.protected`.
    pub fn new(dirs: &Dirs) -> OutputRules {
        let mut rules = OutputRules {
            r: Resolver::default(),
            guarded: Guarded::default(),
            earlier: Earlier::default(),
            accepted: Claims::default(),
            last_file: None,
        };
        let mut none = Vec::new();
        rules.guard("the project root", &dirs.project_root, &mut none);
        rules.guard("the working directory", &dirs.cwd, &mut none);
        for (what, path) in &dirs.protected {
            rules.guard(what, path, &mut none);
        }
        rules
    }

    /// Checks the outputs of `inst`; the errors go to `out`, located at the
    /// path in the build file.
    pub fn instance(&mut self, inst: &Instance, dirs: &Dirs, out: &mut Vec<Diagnostic>) {
        if !self
            .last_file
            .as_ref()
            .is_some_and(|f| SourceRef::ptr_eq(f, &inst.source))
        {
            self.guard("the build file", &dirs.cwd.join(inst.source.name()), out);
            self.last_file = Some(inst.source.clone());
        }
        self.accepted.start_instance(&inst.id.value);
        for o in output_paths(inst, out) {
            let path = self.r.resolve(&dirs.cwd.join(&o.path));
            let key = claims::hash(0, &path);
            let mut problems: Vec<String> = self
                .guarded
                .under(key, &path)
                .map(|(what, p)| {
                    let verb = if *p == path { "is" } else { "contains" };
                    format!("{verb} {what} {}", p.display())
                })
                .collect();
            if let Some(inside) = self.earlier.inside(&path) {
                problems.push(format!(
                    "is inside the output {}, which b9 replaces whole",
                    inside.display()
                ));
            }
            if let Some(other) = self.earlier.under(key, &path) {
                problems.push(format!("contains the output {}", other.display()));
            }
            if problems.is_empty() {
                if let Some(first) = self.accepted.claim(&path, &inst.source, o.span) {
                    let d = Diagnostic::error(format!(
                        "{} is written by two artifacts",
                        path.display()
                    ))
                    .at(&inst.source, o.span)
                    .with_label("second writer")
                    .with_note(format!(
                        "first written by artifact instance `{}` at {}:{}",
                        first.id,
                        first.source.name().display(),
                        first.source.line_col(first.span.start)
                    ))
                    .with_note(format!("in artifact instance `{}`", inst.id.value));
                    out.push(d);
                } else {
                    self.earlier.add(key, path, o.directory);
                }
                continue;
            }
            let mut d = refusal(&path, &problems[0])
                .at(&inst.source, o.span)
                .with_note(format!("in artifact instance `{}`", inst.id.value));
            for p in problems.iter().skip(1).take(3) {
                d = d.with_note(format!("it also {p}"));
            }
            out.push(d);
        }
    }

    /// Guards `path` (`what` says what it is: "the source file"...); an
    /// output accepted earlier that is or contains it is reported, at that
    /// output. The checks guard every host path an instance reads as they
    /// meet it, before [`Self::instance`] checks its outputs.
    pub fn guard(&mut self, what: &str, path: &Path, out: &mut Vec<Diagnostic>) {
        for form in self.guarded.add(&mut self.r, what, path) {
            for a in form.ancestors() {
                if let Some(first) = self.accepted.find(a) {
                    let verb = if a == form { "is" } else { "contains" };
                    let problem = format!("{verb} {what} {}", form.display());
                    out.push(
                        refusal(a, &problem)
                            .at(first.source, first.span)
                            .with_note(format!("in artifact instance `{}`", first.id)),
                    );
                }
            }
        }
    }
}

/// The error for an output at `path` with `problem`.
fn refusal(path: &Path, problem: &str) -> Diagnostic {
    Diagnostic::error(format!(
        "the output {} {problem}; b9 replaces its outputs",
        path.display()
    ))
    .with_label("this output path")
    .with_hint("choose a path of its own for the output, e.g. under `out/`")
}

/// The outputs accepted so far (an `Each` may make millions: each costs a
/// few look-ups of one hash of its path, [`claims::hash`]).
#[derive(Default)]
struct Earlier {
    /// The directory outputs.
    dirs: PrehashedMap<()>,
    /// An output under each proper ancestor of an output.
    containing: PrehashedMap<PathBuf>,
    /// Parent directories of outputs, which lie in no directory output
    /// (a later directory output there would contain an output: refused).
    clear_parents: PrehashedMap<()>,
    /// The parent of the output added last (one of `clear_parents`, and in
    /// `containing`): outputs of an `Each` mostly share it.
    last_parent: OsString,
}

impl Earlier {
    /// The directory output `path` lies in.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let parent = path.parent()?;
        if parent.as_os_str() == self.last_parent
            || self.clear_parents.contains_key(&claims::hash(0, parent))
        {
            return None;
        }
        parent
            .ancestors()
            .find(|a| self.dirs.contains_key(&claims::hash(0, a)))
            .map(Path::to_path_buf)
    }

    /// The output that lies at or under `path` (its hash is `key`).
    fn under(&self, key: u64, path: &Path) -> Option<&PathBuf> {
        self.containing.get(&key).filter(|o| o.starts_with(path))
    }

    fn add(&mut self, key: u64, path: PathBuf, directory: bool) {
        if directory {
            self.dirs.insert(key, ());
        }
        let Some(parent) = path.parent() else {
            return;
        };
        if parent.as_os_str() == self.last_parent {
            return;
        }
        self.clear_parents.insert(claims::hash(0, parent), ());
        self.last_parent = parent.as_os_str().to_os_string();
        for a in path.ancestors().skip(1) {
            let k = claims::hash(0, a);
            if self.containing.contains_key(&k) {
                break;
            }
            self.containing.insert(k, path.clone());
        }
    }
}

/// An output path of an instance and where the build file names it.
struct OutputPath {
    path: PathBuf,
    span: Span,
    /// Replaced whole when it exists (not a single file).
    directory: bool,
}

/// The paths an instance writes outside the build directory; names that
/// must be plain file names are checked on the way.
fn output_paths(inst: &Instance, out: &mut Vec<Diagnostic>) -> Vec<OutputPath> {
    let mut paths = Vec::new();
    let mut plain = |name: &Node<String>, what: &str| {
        let v = &name.value;
        if v.is_empty() || v == "." || v == ".." || v.contains('/') || v.contains('\0') {
            out.push(
                Diagnostic::error(format!(
                    "{what} {v:?} must be a plain name (not empty, no `/`, not `.` or `..`)"
                ))
                .at(&inst.source, name.span)
                .with_note(format!("in artifact instance `{}`", inst.id.value))
                .with_note("it becomes part of a file or directory name b9 writes"),
            );
        }
    };
    match &inst.assembly.value {
        ArtifactAssembly::CloudInit(types, base) => {
            for t in types.iter() {
                let suffix = match t.value {
                    CloudInitType::CI_ISO => ".iso",
                    CloudInitType::CI_VFAT => ".vfat",
                    CloudInitType::CI_DIR => "",
                };
                paths.push(OutputPath {
                    path: PathBuf::from(format!("{}{suffix}", base.value)),
                    span: base.span.join(t.span),
                    directory: t.value == CloudInitType::CI_DIR,
                });
            }
        }
        ArtifactAssembly::VmImages(targets, _)
        | ArtifactAssembly::VmImagesWithFixup(targets, ..) => {
            for t in targets.iter() {
                let ImageTarget::ImageTarget(dest, _, _) = &t.value;
                match &dest.value {
                    ImageDestination::LocalFile(image, _) => {
                        let Image::Image(path, _, _) = &image.value;
                        paths.push(OutputPath {
                            path: PathBuf::from(&path.value),
                            span: path.span,
                            directory: false,
                        });
                    }
                    ImageDestination::LiveInstallerImage(name, root, _) => {
                        plain(name, "the `LiveInstallerImage` name");
                        paths.push(OutputPath {
                            path: Path::new(&root.value).join("machines").join(&name.value),
                            span: root.span,
                            directory: true,
                        });
                    }
                    ImageDestination::Share(name, _, _) => plain(name, "the shared image name"),
                    ImageDestination::Transient => {}
                }
            }
        }
    }
    paths
}

/// Paths are keyed by their bytes (normalised paths have one spelling),
/// which hashes much faster than `Path`'s component-wise hash.
/// Guarded paths, found by any of their ancestors (an output "contains" a
/// guarded path when it is one of the path's ancestors).
#[derive(Default)]
struct Guarded {
    /// By the hash of each ancestor ([`claims::hash`]): a few guarded paths
    /// under it.
    by_ancestor: PrehashedMap<Vec<(String, PathBuf)>>,
    /// What was added, by a hash of what it is and its path (every
    /// instance of an `Each` reads the same files).
    seen: PrehashedMap<()>,
}

impl Guarded {
    /// Guards `path`; returns the forms of it that were added (none when it
    /// was guarded already).
    fn add(&mut self, r: &mut Resolver, what: &str, path: &Path) -> Vec<PathBuf> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (what, path.as_os_str()).hash(&mut h);
        if self.seen.insert(h.finish(), ()).is_some() {
            return Vec::new();
        }
        let resolved = r.resolve(path);
        let mut forms = vec![resolved];
        if let Ok(real) = path.canonicalize() {
            if !forms.contains(&real) {
                forms.push(real);
            }
        }
        for form in &forms {
            for a in form.ancestors() {
                let list = self.by_ancestor.entry(claims::hash(0, a)).or_default();
                if list.len() < 4 && !list.iter().any(|(w, p)| w == what && p == form) {
                    list.push((what.to_string(), form.clone()));
                }
            }
        }
        forms
    }

    /// The guarded paths at or under `path` (whose hash is `key`).
    fn under<'a>(
        &'a self,
        key: u64,
        path: &'a Path,
    ) -> impl Iterator<Item = &'a (String, PathBuf)> + 'a {
        self.by_ancestor
            .get(&key)
            .into_iter()
            .flatten()
            .filter(move |(_, p)| p.starts_with(path))
    }
}

/// Absolute paths with `.`/`..` removed and the symbolic links of their
/// parent directories resolved (memoised per directory; the last component
/// is kept as written).
#[derive(Default)]
struct Resolver {
    dirs: HashMap<OsString, PathBuf>,
}

impl Resolver {
    fn resolve(&mut self, path: &Path) -> PathBuf {
        let path = normalize(path);
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => self.dir(parent).join(name),
            _ => path,
        }
    }

    /// `dir` with its symbolic links resolved (as far as it exists).
    fn dir<'a>(&'a mut self, dir: &'a Path) -> &'a Path {
        if !self.dirs.contains_key(dir.as_os_str()) {
            let resolved = match dir.canonicalize() {
                Ok(real) => real,
                Err(_) => match (dir.parent(), dir.file_name()) {
                    (Some(parent), Some(name)) => self.dir(parent).join(name),
                    _ => dir.to_path_buf(),
                },
            };
            self.dirs.insert(dir.as_os_str().to_os_string(), resolved);
        }
        self.dirs.get(dir.as_os_str()).map_or(dir, PathBuf::as_path)
    }
}
