//! Diagnostics as values: what the CLI prints for a problem in a build file,
//! the configuration or a command's input.

use std::fmt;
use std::path::Path;

use crate::diag;

pub use crate::diag::Severity;

/// One problem found in an input: severity, message, place, notes and
/// hints. Its [`Display`](fmt::Display) is exactly what `b9` prints.
#[derive(Clone, Debug)]
pub struct Diagnostic(pub(crate) diag::Diagnostic);

/// Where a diagnostic points: a file and the 1-based line and column of the
/// start and end of the marked text.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSpan<'a> {
    /// The file (or the name given to a text).
    pub file: &'a Path,
    /// Line and column where the marked text starts.
    pub start: (usize, usize),
    /// Line and column where it ends.
    pub end: (usize, usize),
}

impl Diagnostic {
    /// An error with a message and no place.
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic(diag::Diagnostic::error(message))
    }

    /// A warning with a message and no place.
    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic(diag::Diagnostic::warning(message))
    }

    /// Error or warning.
    pub fn severity(&self) -> Severity {
        self.0.severity
    }

    /// True for an error.
    pub fn is_error(&self) -> bool {
        self.0.is_error()
    }

    /// What is wrong, in one line.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Where, if the problem has a place.
    pub fn span(&self) -> Option<SourceSpan<'_>> {
        self.0.location.as_ref().map(|l| {
            let start = l.source.line_col(l.span.start);
            let end = l.source.line_col(l.span.end);
            SourceSpan {
                file: l.source.name(),
                start: (start.line, start.column),
                end: (end.line, end.column),
            }
        })
    }

    /// The text shown under the marker, if any.
    pub fn label(&self) -> Option<&str> {
        self.0.label.as_deref()
    }

    /// Further facts (the `= note:` lines).
    pub fn notes(&self) -> &[String] {
        &self.0.notes
    }

    /// What to do about it (the `= hint:` lines).
    pub fn hints(&self) -> &[String] {
        &self.0.hints
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<diag::Diagnostic> for Diagnostic {
    fn from(d: diag::Diagnostic) -> Diagnostic {
        Diagnostic(d)
    }
}

/// Wraps internal diagnostics.
pub(crate) fn wrap(ds: Vec<diag::Diagnostic>) -> Vec<Diagnostic> {
    ds.into_iter().map(Diagnostic).collect()
}
