//! The error every fallible API function returns.

use std::fmt;

use super::diagnostic::{wrap, Diagnostic};
use crate::diag;

/// Why an operation failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is wrong: a build file, the configuration, or an argument
    /// (the CLI exits with status 2). Holds every problem found.
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
    /// The operation itself failed (the CLI exits with status 1).
    #[error("{0}")]
    Failed(Diagnostic),
    /// Artifacts of a build failed; the others were built.
    #[error("{}", render_failures(.0))]
    Build(Vec<ArtifactFailure>),
}

/// Why one artifact of a build failed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactFailure {
    /// The instance id (empty when the build directory itself failed).
    pub instance: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for ArtifactFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "artifact `{}` failed: {}", self.instance, self.message)
    }
}

impl Error {
    /// The problems as the CLI prints them, one diagnostic each.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            Error::Invalid(ds) => ds.clone(),
            Error::Failed(d) => vec![d.clone()],
            Error::Build(failures) => failures
                .iter()
                .map(|f| Diagnostic::error(f.to_string()))
                .collect(),
        }
    }

    /// An input error with one message.
    pub(crate) fn invalid(message: impl fmt::Display) -> Error {
        Error::Invalid(vec![Diagnostic::error(message.to_string())])
    }

    /// A failed operation with one message.
    pub(crate) fn failed(message: impl fmt::Display) -> Error {
        Error::Failed(Diagnostic::error(message.to_string()))
    }
}

impl Error {
    /// Input errors found by the internals.
    pub(crate) fn input(ds: Vec<diag::Diagnostic>) -> Error {
        Error::Invalid(wrap(ds))
    }

    /// One input error found by the internals.
    pub(crate) fn input_one(d: diag::Diagnostic) -> Error {
        Error::Invalid(vec![Diagnostic(d)])
    }
}

fn render(ds: &[Diagnostic]) -> String {
    ds.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_failures(fs: &[ArtifactFailure]) -> String {
    fs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
