//! Interpolation of the strings named in docs/COMPATIBILITY.md#substitution,
//! over the typed syntax.
//!
//! Generator-level strings (ids, paths, names, mount points, script words) are
//! substituted here, once per artifact instance. Content-level strings
//! (`FromString`, `ASTString`, keys, URLs, literals) and the post-fix script of
//! `VmImagesWithFixup` are left as written.

use crate::diag::source::{SourceRef, Span};
use crate::diag::{did_you_mean, Diagnostic};
use crate::eval::env::Env;
use crate::lang::syntax::*;
use crate::lang::typed::Node;
use crate::text::template::{self, Piece};

/// Substitutes strings of one build file and collects the errors.
pub struct Interpolator<'d> {
    /// The file the strings come from.
    pub source: SourceRef,
    /// Where errors go.
    pub diagnostics: &'d mut Vec<Diagnostic>,
}

impl Interpolator<'_> {
    /// `s` with every `${var}` replaced from `env`; on error, records it and
    /// returns `s` unchanged.
    pub fn string(&mut self, s: &Node<String>, env: &Env) -> Node<String> {
        match self.try_string(s, env) {
            Ok(v) => s.with(v),
            Err(d) => {
                self.diagnostics.push(d);
                s.clone()
            }
        }
    }

    /// As [`Self::string`], returning the diagnostic instead of recording it.
    pub fn try_string(&self, s: &Node<String>, env: &Env) -> Result<String, Diagnostic> {
        if !s.contains('$') {
            return Ok(s.value.clone());
        }
        let pieces = template::parse(s).map_err(|e| {
            Diagnostic::error(format!("template syntax error: {}", e.message))
                .at(&self.source, self.inner_span(s, e.start, e.end))
        })?;
        template::render(&pieces, |n| env.get(n)).map_err(|piece| {
            let Piece::Var { name, start, end } = piece else {
                return Diagnostic::error("internal: text piece reported as variable");
            };
            undefined_variable(name, env).at(&self.source, self.inner_span(s, *start, *end))
        })
    }

    fn inner_span(&self, s: &Node<String>, start: usize, end: usize) -> Span {
        inner_span(&self.source, s, start, end)
    }

    fn list<T>(
        &mut self,
        l: &List<T>,
        env: &Env,
        f: impl Fn(&mut Self, &Node<T>, &Env) -> T,
    ) -> List<T> {
        l.with(l.iter().map(|x| x.with(f(self, x, env))).collect())
    }

    /// A mount point.
    pub fn mount(&mut self, m: &Node<MountPoint>, env: &Env) -> Node<MountPoint> {
        m.with(match &m.value {
            MountPoint::MountPoint(p) => MountPoint::MountPoint(self.string(p, env)),
            MountPoint::NotMounted => MountPoint::NotMounted,
        })
    }

    fn image(&mut self, i: &Node<Image>, env: &Env) -> Node<Image> {
        let Image::Image(path, ty, fs) = &i.value;
        i.with(Image::Image(self.string(path, env), ty.clone(), fs.clone()))
    }

    fn destination(&mut self, d: &Node<ImageDestination>, env: &Env) -> Node<ImageDestination> {
        use ImageDestination::*;
        d.with(match &d.value {
            Share(name, ty, r) => Share(self.string(name, env), ty.clone(), r.clone()),
            LiveInstallerImage(name, root, r) => {
                LiveInstallerImage(self.string(name, env), self.string(root, env), r.clone())
            }
            LocalFile(image, r) => LocalFile(self.image(image, env), r.clone()),
            Transient => Transient,
        })
    }

    fn image_source(&mut self, s: &Node<ImageSource>, env: &Env) -> Node<ImageSource> {
        use ImageSource::*;
        s.with(match &s.value {
            EmptyImage(label, fs, ty, size) => EmptyImage(
                self.string(label, env),
                fs.clone(),
                ty.clone(),
                size.clone(),
            ),
            CopyOnWrite(image) => CopyOnWrite(self.image(image, env)),
            SourceImage(image, p, r) => SourceImage(self.image(image, env), p.clone(), r.clone()),
            From(name, r) => From(self.string(name, env), r.clone()),
        })
    }

    fn target(&mut self, t: &ImageTarget, env: &Env) -> ImageTarget {
        let ImageTarget::ImageTarget(d, s, m) = t;
        ImageTarget::ImageTarget(
            self.destination(d, env),
            self.image_source(s, env),
            self.mount(m, env),
        )
    }

    fn share(&mut self, s: &SharedDirectory, env: &Env) -> SharedDirectory {
        type Sd = SharedDirectory;
        match s {
            Sd::SharedDirectory(p, m) => {
                Sd::SharedDirectory(self.string(p, env), self.mount(m, env))
            }
            Sd::SharedDirectoryRO(p, m) => {
                Sd::SharedDirectoryRO(self.string(p, env), self.mount(m, env))
            }
            Sd::SharedSources(m) => Sd::SharedSources(self.mount(m, env)),
        }
    }

    /// A script: `In` directories, `Run` words and `As` users.
    pub fn script(&mut self, s: &Script, env: &Env) -> Script {
        use Script::*;
        match s {
            Begin(steps) => Begin(self.list(steps, env, |me, s, env| me.script(s, env))),
            Run(cmd, args) => Run(
                self.string(cmd, env),
                self.list(args, env, |me, a, env| me.string(a, env).value),
            ),
            In(dir, steps) => In(
                self.string(dir, env),
                self.list(steps, env, |me, s, env| me.script(s, env)),
            ),
            As(user, steps) => As(
                self.string(user, env),
                self.list(steps, env, |me, s, env| me.script(s, env)),
            ),
            IgnoreErrors(b, steps) => IgnoreErrors(
                b.clone(),
                self.list(steps, env, |me, s, env| me.script(s, env)),
            ),
            Verbosity(v, steps) => Verbosity(
                v.clone(),
                self.list(steps, env, |me, s, env| me.script(s, env)),
            ),
            NoOP => NoOP,
        }
    }

    fn vm_script(&mut self, s: &Node<VmScript>, env: &Env) -> Node<VmScript> {
        s.with(match &s.value {
            VmScript::VmScript(arch, shares, script) => VmScript::VmScript(
                arch.clone(),
                self.list(shares, env, |me, s, env| me.share(s, env)),
                script.with(self.script(script, env)),
            ),
            VmScript::NoVmScript => VmScript::NoVmScript,
        })
    }

    /// An assembly; the post-fix script of `VmImagesWithFixup` stays as written.
    pub fn assembly(&mut self, a: &Node<ArtifactAssembly>, env: &Env) -> Node<ArtifactAssembly> {
        use ArtifactAssembly::*;
        a.with(match &a.value {
            CloudInit(types, path) => CloudInit(types.clone(), self.string(path, env)),
            VmImages(targets, script) => VmImages(
                self.list(targets, env, |me, t, env| me.target(t, env)),
                self.vm_script(script, env),
            ),
            VmImagesWithFixup(targets, script, fixup) => VmImagesWithFixup(
                self.list(targets, env, |me, t, env| me.target(t, env)),
                self.vm_script(script, env),
                fixup.clone(),
            ),
        })
    }
}

/// The span of bytes `start..end` of a string literal's value in `source`.
/// In a literal with escapes, the same text is looked for in the written
/// literal (the n-th occurrence for the n-th, when both hold it equally
/// often); failing that, the whole literal.
pub fn inner_span(source: &SourceRef, s: &Node<String>, start: usize, end: usize) -> Span {
    let written = source.text().get(s.span.start..s.span.end).unwrap_or("");
    let Some(quoted) = written.strip_prefix('"').and_then(|w| w.strip_suffix('"')) else {
        return s.span;
    };
    let at = |i: usize| Span::new(s.span.start + 1 + i, s.span.start + 1 + i + (end - start));
    if quoted == s.value {
        return at(start);
    }
    let Some(piece) = s.value.get(start..end).filter(|p| !p.is_empty()) else {
        return s.span;
    };
    let in_value: Vec<usize> = s.value.match_indices(piece).map(|(i, _)| i).collect();
    let in_written: Vec<usize> = quoted.match_indices(piece).map(|(i, _)| i).collect();
    match in_value.iter().position(|&i| i == start) {
        Some(nth) if in_value.len() == in_written.len() => at(in_written[nth]),
        _ => s.span,
    }
}

/// "undefined variable" with the defined names and a near miss.
pub fn undefined_variable(name: &str, env: &Env) -> Diagnostic {
    let names = env.names();
    let mut d = Diagnostic::error(format!("undefined variable `{name}`"))
        .with_label("not bound by any enclosing Let, LetX, Each or EachT, nor built in")
        .with_note(format!("defined here: {}", names.join(", ")));
    if let Some(best) = did_you_mean(name, names.iter().copied()) {
        d = d.with_hint(format!("did you mean `{best}`?"));
    }
    d
}
