//! Diagnostics: an error or warning that names file, line and column, shows the
//! source line with a marker, and carries notes and hints.
//!
//! Every front-end module (language, evaluation, checks, configuration) reports
//! through [`Diagnostic`], so `b9 check` can print all problems of a run in one
//! consistent format.

use std::fmt;

use crate::lang::source::{LineCol, SourceRef, Span};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Stops the build.
    Error,
    /// Reported, but the build goes on.
    Warning,
}

/// A place in a source text.
#[derive(Clone, Debug)]
pub struct Location {
    /// The text.
    pub source: SourceRef,
    /// The bytes marked.
    pub span: Span,
}

impl Location {
    /// Line and column of the start of the span.
    pub fn line_col(&self) -> LineCol {
        self.source.line_col(self.span.start)
    }
}

/// One problem found in an input.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one line.
    pub message: String,
    /// Where, if the problem has a place.
    pub location: Option<Location>,
    /// Text shown under the marker.
    pub label: Option<String>,
    /// Further facts (`= note:` lines).
    pub notes: Vec<String>,
    /// What to do about it (`= hint:` lines).
    pub hints: Vec<String>,
}

impl Diagnostic {
    /// An error with a message and no place yet.
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            location: None,
            label: None,
            notes: Vec::new(),
            hints: Vec::new(),
        }
    }

    /// A warning with a message and no place yet.
    pub fn warning(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Sets the place.
    pub fn at(mut self, source: &SourceRef, span: Span) -> Diagnostic {
        self.location = Some(Location {
            source: source.clone(),
            span,
        });
        self
    }

    /// Sets the text under the marker.
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hints.push(hint.into());
        self
    }

    /// `file:line:col` of the diagnostic, if it has a place.
    pub fn position(&self) -> Option<String> {
        self.location
            .as_ref()
            .map(|l| format!("{}:{}", l.source.name().display(), l.line_col()))
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{kind}: {}", self.message)?;
        let mut gutter = 1;
        if let Some(loc) = &self.location {
            let start = loc.line_col();
            gutter = start.line.to_string().len() + 1;
            let pad = " ".repeat(gutter);
            writeln!(f, "{pad}--> {}:{start}", loc.source.name().display())?;
            writeln!(f, "{pad}|")?;
            let line = loc.source.line_text(start.line);
            writeln!(f, "{:>w$} | {line}", start.line, w = gutter - 1)?;
            let end = loc.source.line_col(loc.span.end);
            let width = if end.line == start.line {
                end.column.saturating_sub(start.column).max(1)
            } else {
                line.chars().count().saturating_sub(start.column - 1).max(1)
            };
            let indent: String = line
                .chars()
                .take(start.column - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{pad}| {indent}{}", "^".repeat(width))?;
            match &self.label {
                Some(label) => writeln!(f, " {label}")?,
                None => writeln!(f)?,
            }
        }
        let pad = " ".repeat(gutter);
        for note in &self.notes {
            writeln!(f, "{pad}= note: {note}")?;
        }
        for hint in &self.hints {
            writeln!(f, "{pad}= hint: {hint}")?;
        }
        Ok(())
    }
}

/// The best near miss for `word` among `candidates`, for "did you mean" hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|&(d, c)| d <= (c.chars().count() / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::source::Source;

    #[test]
    fn renders_position_line_and_marker() {
        let src = Source::new("a.b9", "Artifact (IID \"x\")\n  (VmImage [] NoVmScript)\n");
        let d = Diagnostic::error("unknown constructor `VmImage`")
            .at(&src, Span::new(22, 29))
            .with_label("expected an ArtifactAssembly")
            .with_hint("did you mean `VmImages`?");
        let text = d.to_string();
        assert!(text.contains("--> a.b9:2:4"), "{text}");
        assert!(text.contains("2 |   (VmImage [] NoVmScript)"), "{text}");
        assert!(
            text.contains("|    ^^^^^^^ expected an ArtifactAssembly"),
            "{text}"
        );
        assert!(text.contains("= hint: did you mean `VmImages`?"), "{text}");
    }

    #[test]
    fn near_misses() {
        let names = ["VmImages", "CloudInit", "VmImagesWithFixup"];
        assert_eq!(did_you_mean("VmImage", names), Some("VmImages"));
        assert_eq!(did_you_mean("cloudinit", names), Some("CloudInit"));
        assert_eq!(did_you_mean("Banana", names), None);
    }
}
