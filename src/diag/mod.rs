//! Diagnostics: an error or warning that names file, line and column, shows the
//! source line with a marker, and carries notes and hints.
//!
//! Every front-end module (language, evaluation, checks, configuration) reports
//! through [`Diagnostic`], so `b9 check` can print all problems of a run in one
//! consistent format.

pub mod source;

use std::fmt;

use std::path::Path;

use source::{LineCol, Source, SourceRef, Span};

/// How bad a diagnostic is.
#[non_exhaustive]
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

/// How many characters of a source line an excerpt shows at most; longer
/// lines are cut to a window around the marked column.
const EXCERPT_CHARS: usize = 120;

/// How many characters of a message, label, note or hint are shown at most
/// (they may quote user input of any length).
const TEXT_CHARS: usize = 1000;

const ELLIPSIS: char = '…';

/// `text` cut to `max` characters, with an ellipsis when something was cut.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((end, _)) => format!("{}{ELLIPSIS}", &text[..end]).into(),
    }
}

/// The part of a source line an excerpt shows, and where the marker goes in it.
struct Excerpt {
    /// The shown text (with ellipses where the line was cut).
    text: String,
    /// Characters before the marker.
    indent: String,
    /// The marker's length in characters.
    width: usize,
}

/// A window of at most [`EXCERPT_CHARS`] characters of `line` around the
/// marker at 1-based character `column`, `width` characters wide.
fn excerpt(line: &str, column: usize, width: usize) -> Excerpt {
    let chars = line.chars().count();
    let marked = column.saturating_sub(1).min(chars);
    let (first, last) = if chars <= EXCERPT_CHARS {
        (0, chars)
    } else {
        let first = marked
            .saturating_sub(EXCERPT_CHARS / 3)
            .min(chars - EXCERPT_CHARS);
        (first, first + EXCERPT_CHARS)
    };
    let mut text = String::new();
    let mut indent = String::new();
    if first > 0 {
        text.push(ELLIPSIS);
        indent.push(' ');
    }
    for (i, c) in line.chars().enumerate().skip(first).take(last - first) {
        text.push(c);
        if i < marked {
            indent.push(if c == '\t' { '\t' } else { ' ' });
        }
    }
    if last < chars {
        text.push(ELLIPSIS);
    }
    Excerpt {
        text,
        indent,
        width: width.min(last.saturating_sub(marked)).max(1),
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{kind}: {}", clip(&self.message, TEXT_CHARS))?;
        let mut gutter = 1;
        if let Some(loc) = &self.location {
            let start = loc.line_col();
            gutter = start.line.to_string().len() + 1;
            let pad = " ".repeat(gutter);
            writeln!(f, "{pad}--> {}:{start}", loc.source.name().display())?;
            writeln!(f, "{pad}|")?;
            let line = loc.source.line_text(start.line);
            let end = loc.source.line_col(loc.span.end);
            let width = if end.line == start.line {
                end.column.saturating_sub(start.column)
            } else {
                usize::MAX
            };
            let shown = excerpt(line, start.column, width);
            writeln!(f, "{:>w$} | {}", start.line, shown.text, w = gutter - 1)?;
            write!(f, "{pad}| {}{}", shown.indent, "^".repeat(shown.width))?;
            match &self.label {
                Some(label) => writeln!(f, " {}", clip(label, TEXT_CHARS))?,
                None => writeln!(f)?,
            }
        }
        let pad = " ".repeat(gutter);
        for note in &self.notes {
            writeln!(f, "{pad}= note: {}", clip(note, TEXT_CHARS))?;
        }
        for hint in &self.hints {
            writeln!(f, "{pad}= hint: {}", clip(hint, TEXT_CHARS))?;
        }
        Ok(())
    }
}

/// Remembers which problems were reported, so a problem repeated by many
/// instances (an `Each` over a million values) is kept once: the same
/// message at the same place of the same text.
#[derive(Default)]
pub struct Seen(std::collections::HashSet<(usize, usize, String)>);

impl Seen {
    /// True the first time `d` is shown to this set.
    pub fn first(&mut self, d: &Diagnostic) -> bool {
        // The source's address stands for its name: texts are shared, never copied.
        let (text, at) = d.location.as_ref().map_or((0, 0), |l| {
            (std::sync::Arc::as_ptr(&l.source) as usize, l.span.start)
        });
        self.0.insert((text, at, d.message.clone()))
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

/// Reads the text file `path`, called `what` in messages ("build file").
/// Bytes that are not UTF-8 are an error at the line and column of the
/// first of them.
// The error is one `Diagnostic`, as callers report it; not on a hot path.
#[allow(clippy::result_large_err)]
pub fn read_source(path: &Path, what: &str) -> Result<SourceRef, Diagnostic> {
    read_source_in(Path::new(""), path, what)
}

/// [`read_source`] of `path` taken from the directory `dir` when it is
/// relative; the source and the messages name `path` as given.
#[allow(clippy::result_large_err)]
pub fn read_source_in(dir: &Path, path: &Path, what: &str) -> Result<SourceRef, Diagnostic> {
    let bytes = std::fs::read(dir.join(path))
        .map_err(|e| Diagnostic::error(format!("cannot read {what} {}: {e}", path.display())))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(path, text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let byte = e.as_bytes()[at];
            // The valid prefix is unchanged by the lossy conversion, so `at`
            // is where the replacement character stands.
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let source = Source::new(path, text);
            Err(
                Diagnostic::error(format!("{what} {} is not valid UTF-8", path.display()))
                    .at(
                        &source,
                        Span::new(at, at + char::REPLACEMENT_CHARACTER.len_utf8()),
                    )
                    .with_label(format!("byte 0x{byte:02x} is not UTF-8 here"))
                    .with_hint("save the file as UTF-8"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn long_lines_show_a_window_around_the_marker() {
        let long = "x".repeat(1_000_000);
        let text = format!("Artifact (IID \"{long}\") (CloudInit [] 3)");
        let src = Source::new("a.b9", text.clone());
        let at = text.find('3').unwrap();
        let d = Diagnostic::error("expected `String`")
            .at(&src, Span::new(at, at + 1))
            .with_note(long.clone());
        let shown = d.to_string();
        assert!(
            shown.len() < 2 * (EXCERPT_CHARS + TEXT_CHARS) + 200,
            "{}",
            shown.len()
        );
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[3].starts_with("1 | …xxx"), "{}", lines[3]);
        assert!(lines[3].ends_with("(CloudInit [] 3)"), "{}", lines[3]);
        let column = lines[4].find('^').unwrap();
        assert_eq!(lines[3].chars().nth(column), Some('3'), "{shown}");
        assert!(lines[5].ends_with("x…"));
        // A span reaching far beyond the window is marked to the window's end.
        let d = Diagnostic::error("bad string").at(&src, Span::new(15, text.len()));
        let shown = d.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[3].ends_with("xx…"), "{}", lines[3]);
        assert_eq!(lines[4].matches('^').count(), EXCERPT_CHARS - 15, "{shown}");
    }

    #[test]
    fn near_misses() {
        let names = ["VmImages", "CloudInit", "VmImagesWithFixup"];
        assert_eq!(did_you_mean("VmImage", names), Some("VmImages"));
        assert_eq!(did_you_mean("cloudinit", names), Some("CloudInit"));
        assert_eq!(did_you_mean("Banana", names), None);
    }

    #[test]
    fn invalid_utf8_is_located_at_its_first_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.b9");
        std::fs::write(&path, b"Artifact\n  (IID \"\xc3\xa9\xff\") EmptyArtifact\n").unwrap();
        let e = read_source(&path, "build file").unwrap_err();
        assert_eq!(e.position(), Some(format!("{}:2:10", path.display())));
        let shown = e.to_string();
        assert!(shown.contains("is not valid UTF-8"), "{shown}");
        assert!(shown.contains("byte 0xff is not UTF-8 here"), "{shown}");
        let e = read_source(dir.path(), "build file").unwrap_err();
        assert!(
            e.message.contains("cannot read build file"),
            "{}",
            e.message
        );
    }
}
