//! Generator expansion (docs/COMPATIBILITY.md#generators, #scoping, #builtins): `Let`, `LetX`, `Each`, `EachT`,
//! `Sources`, `Artifact`, `EmptyArtifact` into a list of artifact instances,
//! depth-first in document order, with every generator-level string
//! interpolated in the instance's environment.

use std::path::Path;

use crate::diag::source::{SourceRef, Span};
use crate::diag::Diagnostic;
use crate::eval::env::{Env, Origin};
use crate::eval::subst::Interpolator;
use crate::lang::syntax::*;
use crate::lang::typed::Node;
use crate::lang::BuildFile;

/// The built-in variables of one build (docs/COMPATIBILITY.md#builtins).
#[derive(Clone, Debug)]
pub struct BuildVars {
    /// Positional arguments after `--`, bound as `arg_1`...
    pub args: Vec<String>,
    /// `projectRoot`.
    pub project_root: String,
    /// `buildDir`.
    pub build_dir: String,
    /// `build_date`.
    pub build_date: String,
    /// `build_id`.
    pub build_id: String,
}

impl BuildVars {
    /// The environment every generator starts from.
    pub fn env(&self) -> Env {
        let mut env = Env::default();
        for (i, a) in self.args.iter().enumerate() {
            env = env.bind(format!("arg_{}", i + 1), a.clone(), Origin::Builtin);
        }
        env.bind("projectRoot", self.project_root.clone(), Origin::Builtin)
            .bind("buildDir", self.build_dir.clone(), Origin::Builtin)
            .bind("build_date", self.build_date.clone(), Origin::Builtin)
            .bind("build_id", self.build_id.clone(), Origin::Builtin)
    }
}

/// The name `${instance_id}` is bound to in each artifact.
pub const INSTANCE_ID: &str = "instance_id";

/// One artifact to build.
#[derive(Clone, Debug)]
pub struct Instance {
    /// The interpolated `IID`.
    pub id: Node<String>,
    /// The build file it comes from.
    pub source: SourceRef,
    /// The variables valid at the `Artifact`, plus `instance_id`.
    pub env: Env,
    /// The files to generate into the instance directory, in order.
    pub writers: Vec<Writer>,
    /// What to produce, interpolated.
    pub assembly: Node<ArtifactAssembly>,
}

/// One file an instance generates (docs/COMPATIBILITY.md#generated-files): sources flattened, with
/// `FromDirectory` and `IntoDirectory` applied.
#[derive(Clone, Debug)]
pub struct Writer {
    /// Path inside the instance directory.
    pub output: Node<String>,
    /// Where the bytes come from.
    pub input: WriterInput,
    /// `SetPermissions` owner, group and other digits.
    pub mode: Option<Node<[i64; 3]>>,
}

/// The input of a [`Writer`].
#[derive(Clone, Debug)]
pub enum WriterInput {
    /// A host file, copied or template-expanded.
    File {
        /// Its path (relative to the working directory).
        path: Node<String>,
        /// Whether `${var}` in it are expanded.
        expand: bool,
    },
    /// Generated content.
    Content(Node<Content>),
}

/// Expands the build files (combined as `Let [] [f1, f2, ...]`) into instances.
/// Returns the instances and every problem found.
#[cfg(any(test, feature = "internals"))]
pub fn expand(files: &[BuildFile], vars: &BuildVars) -> (Vec<Instance>, Vec<Diagnostic>) {
    let mut instances = Vec::new();
    let diagnostics = expand_into(files, vars, &mut |inst| instances.push(inst));
    (instances, diagnostics)
}

/// Like [`expand`], but hands each instance to `sink` as soon as it is made,
/// so a caller that only looks at each once (`b9 check`) never holds all of
/// them: an `Each` over a million values stays small.
pub fn expand_into(
    files: &[BuildFile],
    vars: &BuildVars,
    sink: &mut dyn FnMut(Instance),
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let env = vars.env();
    for file in files {
        let mut ex = Expander {
            subst: Interpolator {
                source: file.source.clone(),
                diagnostics: &mut diagnostics,
            },
            sink: &mut *sink,
        };
        ex.generator(&file.generator, &env, &[]);
    }
    diagnostics
}

struct Expander<'a> {
    subst: Interpolator<'a>,
    sink: &'a mut dyn FnMut(Instance),
}

type SourceStack<'g> = [&'g Node<ArtifactSource>];

/// A variable, its value, and the span of the binding.
type Pair<'a> = (&'a Node<String>, &'a Node<String>, Span);

impl<'g> Expander<'_> {
    fn error(&mut self, span: Span, d: Diagnostic) {
        let d = d.at(&self.subst.source, span);
        self.subst.diagnostics.push(d);
    }

    fn generator(&mut self, g: &'g Node<ArtifactGenerator>, env: &Env, sources: &SourceStack<'g>) {
        use ArtifactGenerator::*;
        match &g.value {
            Sources(more, body) => {
                let mut all = sources.to_vec();
                all.extend(more.iter());
                self.body(body, env, &all);
            }
            Let(bindings, body) => {
                let pairs: Vec<_> = bindings.iter().map(|b| (&b.0, &b.1, b.span)).collect();
                let env = self.bind_all(env, &pairs);
                self.body(body, &env, sources);
            }
            LetX(bindings, body) => {
                let mut combos: Vec<Vec<Pair>> = vec![Vec::new()];
                for b in bindings.iter() {
                    let (key, values) = (&b.0, &b.1);
                    combos = combos
                        .into_iter()
                        .flat_map(|c| {
                            values.iter().map(move |v| {
                                let mut c = c.clone();
                                c.push((key, v, b.span));
                                c
                            })
                        })
                        .collect();
                }
                for combo in combos {
                    let env = self.bind_all(env, &combo);
                    self.body(body, &env, sources);
                }
            }
            Each(bindings, body) => {
                let Some(len) = self.each_length(g, bindings) else {
                    return;
                };
                for i in 0..len {
                    let row: Vec<_> = bindings.iter().map(|b| (&b.0, &b.1[i], b.span)).collect();
                    let env = self.bind_all(env, &row);
                    self.body(body, &env, sources);
                }
            }
            EachT(names, rows, body) => {
                for row in rows.iter() {
                    if row.len() != names.len() {
                        let values: Vec<String> =
                            row.iter().map(|v| format!("{:?}", v.value)).collect();
                        let d = Diagnostic::error(format!(
                            "this EachT row has {} values, but EachT names {} variables",
                            row.len(),
                            names.len()
                        ))
                        .with_label(format!("[{}]", values.join(", ")))
                        .with_note(format!(
                            "variables: {}",
                            names
                                .iter()
                                .map(|n| n.value.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                        self.error(row.span, d);
                        continue;
                    }
                    let pairs: Vec<_> = names
                        .iter()
                        .zip(row.iter())
                        .map(|(n, v)| (n, v, v.span.join(n.span)))
                        .collect();
                    let env = self.bind_all(env, &pairs);
                    self.body(body, &env, sources);
                }
            }
            Artifact(id, assembly) => self.artifact(id, assembly, env, sources),
            EmptyArtifact => {}
        }
    }

    fn body(&mut self, body: &'g List<ArtifactGenerator>, env: &Env, sources: &SourceStack<'g>) {
        for g in body.iter() {
            self.generator(g, env, sources);
        }
    }

    /// The common length of `Each` value lists, or an error.
    fn each_length(
        &mut self,
        g: &Node<ArtifactGenerator>,
        bindings: &List<(Node<String>, List<String>)>,
    ) -> Option<usize> {
        let lengths: Vec<usize> = bindings.iter().map(|b| b.1.len()).collect();
        let Some(&first) = lengths.first() else {
            let d = Diagnostic::error("`Each` needs at least one variable")
                .with_label("`Each []` gives nothing to iterate over")
                .with_hint("use `Let [] [...]` for a body without variables");
            self.error(g.span, d);
            return None;
        };
        if lengths.iter().any(|&l| l != first) {
            let detail: Vec<String> = bindings
                .iter()
                .map(|b| format!("`{}` has {}", b.0.value, b.1.len()))
                .collect();
            let d = Diagnostic::error("all value lists of `Each` must have the same length")
                .with_label(detail.join(", "))
                .with_hint("use `LetX` for every combination of the values");
            self.error(bindings.span, d);
            return None;
        }
        Some(first)
    }

    /// Binds key/value pairs left to right, each value interpolated in the
    /// environment that holds the earlier ones; rebinding to another value is
    /// an error.
    fn bind_all(&mut self, env: &Env, pairs: &[Pair]) -> Env {
        let mut env = env.clone();
        for &(key, value, span) in pairs {
            let value = self.subst.string(value, &env);
            match env.lookup(key) {
                Some((old, _)) if old == value.value => {}
                Some((old, origin)) => {
                    let mut d = Diagnostic::error(format!(
                        "`{}` is already bound to {:?}; it cannot be rebound to {:?}",
                        key.value, old, value.value
                    ))
                    .with_label("rebinding")
                    .with_note("variables cannot be shadowed: use another name");
                    d = match origin {
                        Origin::Builtin => {
                            d.with_note(format!("`{}` is a built-in variable", key.value))
                        }
                        Origin::At(src, sp) => d.with_note(format!(
                            "first bound at {}:{}",
                            src.name().display(),
                            src.line_col(sp.start)
                        )),
                    };
                    self.error(span, d);
                }
                None => {
                    env = env.bind(
                        key.value.clone(),
                        value.value,
                        Origin::At(self.subst.source.clone(), span),
                    );
                }
            }
        }
        env
    }

    fn artifact(
        &mut self,
        id: &Node<InstanceId>,
        assembly: &Node<ArtifactAssembly>,
        env: &Env,
        sources: &SourceStack<'g>,
    ) {
        let InstanceId::IID(raw_id) = &id.value;
        let iid = self.subst.string(raw_id, env);
        let env = env.bind(
            INSTANCE_ID,
            iid.value.clone(),
            Origin::At(self.subst.source.clone(), id.span),
        );
        let mut writers = Vec::new();
        for s in sources {
            self.flatten(s, &env, &Flat::default(), &mut writers);
        }
        let assembly = self.subst.assembly(assembly, &env);
        (self.sink)(Instance {
            id: iid,
            source: self.subst.source.clone(),
            env,
            writers,
            assembly,
        });
    }

    /// Flattens one source into writers.
    fn flatten(&mut self, s: &Node<ArtifactSource>, env: &Env, ctx: &Flat, out: &mut Vec<Writer>) {
        use ArtifactSource::*;
        match &s.value {
            FromFile(dest, file) => {
                let SourceFile::Source(conv, path) = &file.value;
                let path = self.subst.string(path, env);
                let path = match &ctx.from_dir {
                    Some(dir) => path.with(join(dir, &path)),
                    None => path,
                };
                out.push(Writer {
                    output: self.output(dest, env, ctx),
                    input: WriterInput::File {
                        path,
                        expand: matches!(conv.value, SourceFileConversion::ExpandVariables),
                    },
                    mode: ctx.mode.clone(),
                });
            }
            FromContent(dest, content) => out.push(Writer {
                output: self.output(dest, env, ctx),
                input: WriterInput::Content(content.clone()),
                mode: ctx.mode.clone(),
            }),
            SetPermissions(o, g, a, nested) => {
                if let Some(outer) = &ctx.mode {
                    let d = Diagnostic::error("permissions for these sources are already set by an enclosing `SetPermissions`")
                        .with_note(format!(
                            "the enclosing one sets {}{}{}",
                            outer.value[0], outer.value[1], outer.value[2]
                        ));
                    self.error(s.span, d);
                }
                for digit in [o, g, a] {
                    if !(0..=7).contains(&digit.value) {
                        let d = Diagnostic::error(format!("bad permission digit {}: must be 0 to 7", digit.value))
                            .with_note("SetPermissions owner group other, e.g. `SetPermissions 7 5 5 [...]` for 0755");
                        self.error(digit.span, d);
                    }
                }
                let ctx = Flat {
                    mode: Some(s.with([o.value, g.value, a.value])),
                    ..ctx.clone()
                };
                for n in nested.iter() {
                    self.flatten(n, env, &ctx, out);
                }
            }
            FromDirectory(dir, nested) => {
                let ctx = Flat {
                    from_dir: Some(self.nested_dir(&ctx.from_dir, dir, env)),
                    ..ctx.clone()
                };
                for n in nested.iter() {
                    self.flatten(n, env, &ctx, out);
                }
            }
            IntoDirectory(dir, nested) => {
                let ctx = Flat {
                    into_dir: Some(self.nested_dir(&ctx.into_dir, dir, env)),
                    ..ctx.clone()
                };
                for n in nested.iter() {
                    self.flatten(n, env, &ctx, out);
                }
            }
        }
    }

    /// An inner `FromDirectory`/`IntoDirectory` directory joined to the outer one.
    fn nested_dir(&mut self, outer: &Option<String>, dir: &Node<String>, env: &Env) -> String {
        let dir = self.subst.string(dir, env).value;
        match outer {
            Some(outer) => join(outer, &dir),
            None => dir,
        }
    }

    fn output(&mut self, dest: &Node<String>, env: &Env, ctx: &Flat) -> Node<String> {
        let dest = self.subst.string(dest, env);
        match &ctx.into_dir {
            Some(dir) => dest.with(join(dir, &dest)),
            None => dest,
        }
    }
}

/// What enclosing `SetPermissions`, `FromDirectory` and `IntoDirectory` say.
#[derive(Clone, Default)]
struct Flat {
    mode: Option<Node<[i64; 3]>>,
    from_dir: Option<String>,
    into_dir: Option<String>,
}

/// `a </> b` as Haskell's filepath: an absolute `b` wins.
pub fn join(a: &str, b: &str) -> String {
    Path::new(a).join(b).to_string_lossy().into_owned()
}
