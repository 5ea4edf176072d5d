//! Build files: parsed, expanded and checked into a plan, with the
//! diagnostics the CLI prints; what `b9 show` prints about a plan.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::diagnostic::{wrap, Diagnostic};
use super::error::Error;
use super::session::Session;
use crate::content::cloud_config::CloudConfigCheck;
use crate::diag;
use crate::diag::source::Source;
use crate::eval::{check, expand};
use crate::lang::{self, BuildFile};
use crate::pipeline::cached::{self, KeyInputs};

pub use crate::eval::plan::{ArtifactKind, PlanEntry, PlannedFile};
pub use crate::pipeline::cached::Verdict as StepStatus;

/// Build files (paths or texts) and the positional arguments bound to
/// `${arg_1}`, `${arg_2}`, ...; several files are combined as
/// `Let [] [file1, file2, ...]`.
#[derive(Clone, Debug, Default)]
pub struct BuildFiles {
    sources: Vec<BuildSource>,
    args: Vec<String>,
}

#[derive(Clone, Debug)]
enum BuildSource {
    File(PathBuf),
    Text { name: PathBuf, text: String },
}

impl BuildFiles {
    /// The build files at `paths`.
    pub fn files<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> BuildFiles {
        BuildFiles {
            sources: paths
                .into_iter()
                .map(|p| BuildSource::File(p.into()))
                .collect(),
            args: Vec::new(),
        }
    }

    /// One build file given as text; `name` names it in diagnostics and is
    /// where relative paths in it are resolved from (as if it were a file
    /// there).
    pub fn text(name: impl Into<PathBuf>, text: impl Into<String>) -> BuildFiles {
        BuildFiles::default().and_text(name, text)
    }

    /// These build files and one more, given as text.
    pub fn and_text(mut self, name: impl Into<PathBuf>, text: impl Into<String>) -> BuildFiles {
        self.sources.push(BuildSource::Text {
            name: name.into(),
            text: text.into(),
        });
        self
    }

    /// These build files with the positional arguments `args`.
    pub fn with_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> BuildFiles {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// How many build files there are.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True without build files.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Parses every build file (relative paths taken from `cwd`); the
    /// problems of all files come together.
    fn parse(&self, cwd: &Path) -> Result<Vec<BuildFile>, Vec<diag::Diagnostic>> {
        let mut parsed = Vec::new();
        let mut problems = Vec::new();
        for s in &self.sources {
            let result = match s {
                BuildSource::File(f) => lang::parse_file_in(cwd, f),
                BuildSource::Text { name, text } => lang::parse(Source::new(name, text.clone())),
            };
            match result {
                Ok(file) => {
                    tracing::debug!("parsed build file {}", file.source.name().display());
                    parsed.push(file)
                }
                Err(mut d) => problems.append(&mut d),
            }
        }
        if problems.is_empty() {
            Ok(parsed)
        } else {
            Err(problems)
        }
    }
}

/// The outcome of [`Session::check`]: how many artifact instances the build
/// files have, and the warnings.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The number of artifact instances.
    pub instances: usize,
    /// The warnings (errors fail the check).
    pub warnings: Vec<Diagnostic>,
}

/// Expanded (and, for a build, checked) build files: the artifact
/// instances, ready to show or build.
#[derive(Debug)]
pub struct Plan {
    pub(crate) instances: Vec<expand::Instance>,
    build_id: String,
    warnings: Vec<Diagnostic>,
}

/// What `b9 show` says about one `VmImages` artifact's guest step.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepVerdict {
    /// The instance id.
    pub instance: String,
    /// Whether the step would come from the step cache, resume from a
    /// cached layer, or run (and why); its `Display` is what `b9 show`
    /// prints.
    pub verdict: StepStatus,
}

impl Session {
    /// Checks build files completely (syntax, variables, sources, images,
    /// outputs) without building, as `b9 check`; each instance is checked
    /// and dropped. `notes` receives remarks for the user (a check that was
    /// skipped).
    ///
    /// ```
    /// let session = b9::Session::new(b9::Config::default())?;
    /// let files = b9::BuildFiles::text(
    ///     "hello.b9",
    ///     r#"Artifact (IID "hello") (VmImages [] (VmScript X86_64 [] (Run "true" [])))"#,
    /// );
    /// let report = session.check(&files, &mut |note| eprintln!("{note}"))?;
    /// assert_eq!(report.instances, 1);
    /// # Ok::<(), b9::Error>(())
    /// ```
    pub fn check(
        &self,
        files: &BuildFiles,
        notes: &mut dyn FnMut(&str),
    ) -> Result<CheckReport, Error> {
        let mut instances = 0usize;
        let warnings = self.evaluate(files, true, notes, &mut |_| instances += 1)?;
        Ok(CheckReport {
            instances,
            warnings,
        })
    }

    /// Expands and checks build files into the plan a build runs, as
    /// `b9 build` does before building anything.
    pub fn plan(&self, files: &BuildFiles, notes: &mut dyn FnMut(&str)) -> Result<Plan, Error> {
        self.plan_with(files, true, notes)
    }

    /// Expands build files without the static checks, as `b9 show` does.
    pub fn expand(&self, files: &BuildFiles, notes: &mut dyn FnMut(&str)) -> Result<Plan, Error> {
        self.plan_with(files, false, notes)
    }

    fn plan_with(
        &self,
        files: &BuildFiles,
        checks: bool,
        notes: &mut dyn FnMut(&str),
    ) -> Result<Plan, Error> {
        let mut instances = Vec::new();
        let warnings = self.evaluate(files, checks, notes, &mut |i| instances.push(i))?;
        Ok(Plan {
            instances,
            build_id: self.build_id.clone(),
            warnings,
        })
    }

    /// Parses and expands the build files and (with `checks`) runs the
    /// static checks, handing each instance to `keep`. Errors fail;
    /// warnings are returned.
    fn evaluate(
        &self,
        files: &BuildFiles,
        checks: bool,
        notes: &mut dyn FnMut(&str),
        keep: &mut dyn FnMut(expand::Instance),
    ) -> Result<Vec<Diagnostic>, Error> {
        let parsed = files.parse(&self.dirs.cwd).map_err(Error::input)?;
        // The cloud-configs of `CloudInit` artifacts against cloud-init's
        // schema (compiled once a run, when the first one is met).
        let mut cloud = CloudConfigCheck::new(self.config.cloud_init.schema.clone());
        let mut checker = checks.then(|| check::Checker::new(&self.dirs).with_check(&mut cloud));
        let mut count = 0usize;
        let mut diagnostics = expand::expand_into(&parsed, &self.vars(&files.args), &mut |inst| {
            count += 1;
            if let Some(c) = &mut checker {
                c.instance(&inst);
            }
            keep(inst);
        });
        tracing::debug!("expanded into {count} artifact instances");
        if let Some(c) = checker {
            diagnostics.extend(c.finish());
        }
        if let Some(note) = cloud.skipped_note() {
            notes(&note);
        }
        let diagnostics = check::dedupe(diagnostics);
        if diagnostics.iter().any(diag::Diagnostic::is_error) {
            return Err(Error::input(diagnostics));
        }
        Ok(wrap(diagnostics))
    }
}

impl Plan {
    /// The warnings found while checking.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// How many artifact instances the plan has.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// True when the build files produce no artifact.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Each instance: its id, kind, the files it generates, what it reads
    /// and what it writes.
    pub fn entries(&self) -> Vec<PlanEntry> {
        crate::eval::plan::plan(&self.instances, &self.build_id)
    }

    /// Keeps only the instances whose entry `keep` accepts, so that
    /// [`Session::build`] builds those alone (one artifact, only the media,
    /// the ones whose inputs changed...).
    ///
    /// ```
    /// let session = b9::Session::new(b9::Config::default())?;
    /// let files = b9::BuildFiles::text(
    ///     "two.b9",
    ///     r#"Let [] [ Artifact (IID "a") (VmImages [] NoVmScript)
    ///               , Artifact (IID "b") (VmImages [] NoVmScript) ]"#,
    /// );
    /// let mut plan = session.expand(&files, &mut |_| {})?;
    /// plan.retain(|entry| entry.id == "b");
    /// let ids: Vec<String> = plan.entries().into_iter().map(|e| e.id).collect();
    /// assert_eq!(ids, ["b"]);
    /// # Ok::<(), b9::Error>(())
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&PlanEntry) -> bool) {
        let build_id = &self.build_id;
        self.instances
            .retain(|i| keep(&crate::eval::plan::entry(i, build_id)));
    }

    /// For each `VmImages` artifact, whether its guest step would come
    /// from the step cache of `session`.
    pub fn step_cache(&self, session: &Session) -> Vec<StepVerdict> {
        let images = super::build::image_settings(session, false, crate::events::Events::default());
        // The instance directory exists only during a build.
        let inputs = KeyInputs {
            images: &images,
            vm: &session.vm,
            sources: Path::new(""),
        };
        self.instances
            .iter()
            .filter(|i| cached::parts(i).is_some())
            .map(|i| StepVerdict {
                instance: i.id.value.clone(),
                verdict: cached::status(i, images.step_cache.as_ref(), &inputs),
            })
            .collect()
    }

    /// What `b9 show` prints: the plan, then the step-cache verdicts.
    pub fn show_text(&self, session: &Session) -> String {
        let steps: String = self
            .step_cache(session)
            .iter()
            .map(|s| format!("step cache: {}: {}\n", s.instance, s.verdict))
            .collect();
        crate::eval::plan::render_text(&self.entries()) + &steps
    }

    /// What `b9 show --json` prints.
    pub fn show_json(&self, session: &Session) -> String {
        let value = serde_json::json!({
            "build_id": self.build_id,
            "instances": self.entries(),
            "step_cache": self
                .step_cache(session)
                .into_iter()
                .map(|s| (s.instance, s.verdict))
                .collect::<std::collections::BTreeMap<_, _>>(),
        });
        serde_json::to_string_pretty(&value)
            .map(|s| s + "\n")
            .unwrap_or_default()
    }
}
