//! A reader and writer for INI documents with the semantics of Haskell's
//! `ConfigFile` package, as the original b9 uses it (docs/COMPATIBILITY.md#config-syntax).
//!
//! * `[section]` headers; section names are case-sensitive.
//! * `key: value` or `key = value`; the key is trimmed and lower-cased, the
//!   value is trimmed.
//! * A line that starts with whitespace continues the previous value: its text
//!   (trimmed) is appended after a newline.
//! * Lines whose first non-blank character is `#` or `;` are comments; blank
//!   lines are ignored. Neither ends a value that is being continued.
//! * Keys before the first header belong to `[DEFAULT]`; the keys of
//!   `[DEFAULT]` are inherited by every section.
//! * No interpolation; a key given twice in a section keeps the later value,
//!   and a section header given twice in one file starts the section afresh:
//!   the later section replaces the earlier one whole, as `ConfigFile` builds
//!   its map (the sections of *different* files merge key by key, see
//!   [`Ini::merge`]). Both are reported as warnings naming the two lines.
//!
//! Every key remembers its file, its 1-based line and the byte span of its
//! value, so errors can point at it. Sections keep the order of the file.

use crate::diag::source::{SourceRef, Span};
use crate::diag::Diagnostic;

/// The name of the section whose keys every other section inherits.
pub const DEFAULT_SECTION: &str = "DEFAULT";

/// One `key: value` pair.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The option name, lower-cased.
    pub key: String,
    /// The value: trimmed, continuation lines joined with `\n`.
    pub value: String,
    /// The file the entry was read from (`None` for generated entries).
    pub source: Option<SourceRef>,
    /// 1-based line of the key (0 for generated entries).
    pub line: usize,
    /// Where the key is in the file.
    pub key_span: Span,
    /// Where the value is in the file (from its first to its last byte,
    /// continuation lines included).
    pub span: Span,
    /// Pieces of the value: `(offset in value, offset in file)`, one per line.
    segments: Vec<(usize, usize)>,
}

impl Entry {
    /// An entry that was not read from a file.
    pub fn generated(key: impl Into<String>, value: impl Into<String>) -> Entry {
        Entry {
            key: key.into().to_lowercase(),
            value: value.into(),
            source: None,
            line: 0,
            key_span: Span::default(),
            span: Span::default(),
            segments: vec![(0, 0)],
        }
    }

    /// Maps a span relative to [`Entry::value`] to a span in the file.
    pub fn file_span(&self, rel: Span) -> Span {
        Span::new(self.file_offset(rel.start), self.file_offset(rel.end))
    }

    fn file_offset(&self, rel: usize) -> usize {
        let rel = rel.min(self.value.len());
        let mut best = (0, self.span.start);
        for &(v, f) in &self.segments {
            if v <= rel {
                best = (v, f);
            }
        }
        best.1 + (rel - best.0)
    }
}

/// One `[section]` with its entries (without the inherited `[DEFAULT]` keys).
#[derive(Clone, Debug)]
pub struct Section {
    /// The name between the brackets.
    pub name: String,
    /// The file of the first header of this section (`None` if generated).
    pub source: Option<SourceRef>,
    /// 1-based line of the first header (0 if generated).
    pub line: usize,
    /// Where the first header is.
    pub span: Span,
    /// The entries in file order; each key occurs once.
    pub entries: Vec<Entry>,
}

impl Section {
    fn new(name: &str) -> Section {
        Section {
            name: name.to_string(),
            source: None,
            line: 0,
            span: Span::default(),
            entries: Vec::new(),
        }
    }

    /// The entry for `key` (lower-cased before the lookup), without inheritance.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        let key = key.to_lowercase();
        self.entries.iter().find(|e| e.key == key)
    }

    fn insert(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.key == entry.key) {
            Some(old) => *old = entry,
            None => self.entries.push(entry),
        }
    }
}

/// A whole INI document.
#[derive(Clone, Debug, Default)]
pub struct Ini {
    /// The sections in file order, `[DEFAULT]` included if present.
    pub sections: Vec<Section>,
}

impl Ini {
    /// An empty document.
    pub fn new() -> Ini {
        Ini::default()
    }

    /// Parses the text of `source`: the document and warnings about
    /// repeated sections and keys. `Err` holds every malformed line.
    pub fn parse(source: &SourceRef) -> Result<(Ini, Vec<Diagnostic>), Vec<Diagnostic>> {
        let text = source.text();
        let mut ini = Ini::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        // The line of each section's header in this file (`[DEFAULT]`: of
        // its first key when it has no header).
        let mut headers: Vec<(String, usize)> = Vec::new();
        let mut current = DEFAULT_SECTION.to_string();
        // (section, index of the entry) that a continuation line extends.
        let mut last: Option<usize> = None;
        let mut offset = 0usize;
        for (index, raw_line) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let start = offset;
            offset += raw_line.len() + 1;
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let lead = line.len() - line.trim_start().len();
            if lead > 0 {
                match last {
                    Some(ei) => {
                        let sec = ini.section_mut_or_insert(&current);
                        let entry = &mut sec.entries[ei];
                        entry.value.push('\n');
                        entry.segments.push((entry.value.len(), start + lead));
                        entry.value.push_str(trimmed);
                        entry.span.end = start + lead + trimmed.len();
                    }
                    None => errors.push(
                        Diagnostic::error("continuation line without a key before it")
                            .at(source, Span::new(start + lead, start + lead + trimmed.len()))
                            .with_note("a line that starts with whitespace continues the value of the key above it")
                            .with_hint("remove the leading whitespace"),
                    ),
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let end = rest.trim_end();
                let span = Span::new(start, start + line.trim_end().len());
                let Some(name) = end.strip_suffix(']') else {
                    errors.push(
                        Diagnostic::error("section header without a closing `]`")
                            .at(source, span)
                            .with_hint("write a section header as `[name]`"),
                    );
                    last = None;
                    continue;
                };
                let name = name.trim();
                if name.is_empty() {
                    errors.push(Diagnostic::error("empty section name").at(source, span));
                    last = None;
                    continue;
                }
                current = name.to_string();
                let sec = ini.section_mut_or_insert(&current);
                match headers.iter().find(|(n, _)| *n == current) {
                    Some(&(_, first)) => {
                        warnings.push(
                            Diagnostic::warning(format!(
                                "section [{current}] appears twice in {} (lines {first} and {line_no}): the later one replaces the earlier one whole, as the original b9 reads it",
                                source.name().display()
                            ))
                            .at(source, span)
                            .with_hint("merge the two sections into one"),
                        );
                        sec.entries.clear();
                    }
                    None => headers.push((current.clone(), line_no)),
                }
                sec.source = Some(source.clone());
                sec.line = line_no;
                sec.span = span;
                last = None;
                continue;
            }
            let Some(sep) = line.find([':', '=']) else {
                errors.push(
                    Diagnostic::error(format!(
                        "expected `key: value` or `key = value`, found {trimmed:?}"
                    ))
                    .at(source, Span::new(start, start + line.trim_end().len()))
                    .with_hint("comment lines start with `#` or `;`"),
                );
                last = None;
                continue;
            };
            let key_raw = &line[..sep];
            let key = key_raw.trim();
            if key.is_empty() {
                errors.push(
                    Diagnostic::error("missing key name before the separator")
                        .at(source, Span::new(start + sep, start + sep + 1)),
                );
                last = None;
                continue;
            }
            let key_start = start + (key_raw.len() - key_raw.trim_start().len());
            let after = &line[sep + 1..];
            let value = after.trim();
            let value_start = start + sep + 1 + (after.len() - after.trim_start().len());
            let entry = Entry {
                key: key.to_lowercase(),
                value: value.to_string(),
                source: Some(source.clone()),
                line: line_no,
                key_span: Span::new(key_start, key_start + key.len()),
                span: Span::new(value_start, value_start + value.len()),
                segments: vec![(0, value_start)],
            };
            if current == DEFAULT_SECTION && headers.is_empty() {
                headers.push((current.clone(), line_no));
            }
            let sec = ini.section_mut_or_insert(&current);
            if let Some(old) = sec.entry(&entry.key) {
                warnings.push(
                    Diagnostic::warning(format!(
                        "key `{}` given twice in [{current}] of {} (lines {} and {line_no}): the later value is used",
                        entry.key,
                        source.name().display(),
                        old.line
                    ))
                    .at(source, entry.key_span)
                    .with_hint("remove one of the two"),
                );
            }
            sec.insert(entry);
            last = sec.entries.iter().position(|e| e.key == key.to_lowercase());
        }
        if errors.is_empty() {
            Ok((ini, warnings))
        } else {
            Err(errors)
        }
    }

    /// The section named `name` (exact), `[DEFAULT]` included.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// True if a section `name` exists.
    pub fn has_section(&self, name: &str) -> bool {
        self.section(name).is_some()
    }

    /// The names of the sections in file order, without `[DEFAULT]`.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| *n != DEFAULT_SECTION)
    }

    /// The entry for `key` in `section`, falling back to `[DEFAULT]`.
    /// `None` if the section does not exist.
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        let sec = self.section(section)?;
        sec.entry(key)
            .or_else(|| self.section(DEFAULT_SECTION).and_then(|d| d.entry(key)))
    }

    /// Sets `key` in `section` to a generated value, creating the section.
    pub fn set(&mut self, section: &str, key: &str, value: impl Into<String>) {
        self.section_mut_or_insert(section)
            .insert(Entry::generated(key, value));
    }

    fn section_mut_or_insert(&mut self, name: &str) -> &mut Section {
        let index = match self.sections.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.sections.push(Section::new(name));
                self.sections.len() - 1
            }
        };
        &mut self.sections[index]
    }

    /// Merges `other` over `self`: its sections are added, and its keys
    /// replace keys of the same name (like `ConfigFile`'s `merge`).
    pub fn merge(&mut self, other: Ini) {
        for sec in other.sections {
            let target = self.section_mut_or_insert(&sec.name);
            if target.source.is_none() {
                target.source = sec.source;
                target.line = sec.line;
                target.span = sec.span;
            }
            for entry in sec.entries {
                target.insert(entry);
            }
        }
    }

    /// Renders the document with sections and keys in alphabetical order
    /// (byte order, as the original's `Data.Map`), a blank line between
    /// sections. Multi-line values are written with indented continuation
    /// lines.
    pub fn render(&self) -> String {
        let mut sections: Vec<&Section> = self.sections.iter().collect();
        sections.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = String::new();
        for (i, sec) in sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push('[');
            out.push_str(&sec.name);
            out.push_str("]\n");
            let mut entries: Vec<&Entry> = sec.entries.iter().collect();
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            for e in entries {
                out.push_str(&e.key);
                out.push(':');
                if !e.value.is_empty() {
                    out.push(' ');
                    out.push_str(&e.value.replace('\n', "\n    "));
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::diag::source::Source;

    fn parse(text: &str) -> Ini {
        match Ini::parse(&Source::new("t.conf", text)) {
            Ok((ini, _)) => ini,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn errors(text: &str) -> Vec<Diagnostic> {
        match Ini::parse(&Source::new("t.conf", text)) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e,
        }
    }

    #[test]
    fn both_separators_and_spans() {
        let text = "[global]\nA_Key: one\nother = two words  \n";
        let ini = parse(text);
        let a = ini.get("global", "a_key").unwrap();
        assert_eq!(a.value, "one");
        assert_eq!(a.line, 2);
        assert_eq!(&text[a.span.start..a.span.end], "one");
        assert_eq!(&text[a.key_span.start..a.key_span.end], "A_Key");
        let b = ini.get("global", "OTHER").unwrap();
        assert_eq!(b.value, "two words");
        assert_eq!(b.line, 3);
        assert_eq!(&text[b.span.start..b.span.end], "two words");
    }

    #[test]
    fn first_separator_wins() {
        let ini = parse("[s]\nurl: qemu:///system\nx = a:b\n");
        assert_eq!(ini.get("s", "url").unwrap().value, "qemu:///system");
        assert_eq!(ini.get("s", "x").unwrap().value, "a:b");
    }

    #[test]
    fn continuation_lines_join_with_newline() {
        let text = "[s]\nk: first\n  second\n# comment in between\n\tthird\nj: x\n";
        let ini = parse(text);
        let k = ini.get("s", "k").unwrap();
        assert_eq!(k.value, "first\nsecond\nthird");
        assert_eq!(
            &text[k.span.start..k.span.end],
            "first\n  second\n# comment in between\n\tthird"
        );
        // "third" starts at value offset 13; it maps to its place in the file.
        let sp = k.file_span(Span::new(13, 18));
        assert_eq!(&text[sp.start..sp.end], "third");
        assert_eq!(ini.get("s", "j").unwrap().value, "x");
    }

    #[test]
    fn comments_and_blank_lines() {
        let ini = parse("# top\n; also\n\n[s]\n   # indented comment\nk: v # not a comment\n\r\n");
        assert_eq!(ini.get("s", "k").unwrap().value, "v # not a comment");
        assert_eq!(ini.section("s").unwrap().entries.len(), 1);
    }

    #[test]
    fn default_section_is_inherited() {
        let ini = parse("top: 1\n[a]\nown: 2\n[b]\nshared: no\n");
        assert_eq!(ini.get("a", "top").unwrap().value, "1");
        let ini = parse("[DEFAULT]\nshared: yes\n[a]\nown: 2\n[b]\nshared: no\n");
        assert_eq!(ini.get("a", "shared").unwrap().value, "yes");
        assert_eq!(ini.get("b", "shared").unwrap().value, "no");
        assert!(ini.get("missing", "shared").is_none());
        assert_eq!(ini.section_names().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn later_duplicates_win_with_warnings() {
        let text = "[a]\nk: 1\nm: 0\n[b]\n[a]\nk: 2\nl: 3\nL: 4\n";
        let (ini, warnings) = Ini::parse(&Source::new("t.conf", text)).unwrap();
        assert_eq!(ini.get("a", "k").unwrap().value, "2");
        assert_eq!(ini.get("a", "k").unwrap().line, 6);
        assert!(
            ini.get("a", "m").is_none(),
            "the later section replaces the earlier"
        );
        assert_eq!(ini.get("a", "l").unwrap().value, "4");
        assert_eq!(ini.section("a").unwrap().line, 5);
        assert_eq!(ini.section_names().collect::<Vec<_>>(), ["a", "b"]);
        let shown: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].contains("section [a] appears twice in t.conf (lines 1 and 5)"));
        assert!(shown[0].contains("--> t.conf:5:1"), "{}", shown[0]);
        assert!(shown[1].contains("key `l` given twice in [a] of t.conf (lines 7 and 8)"));
        assert!(shown[1].contains("--> t.conf:8:1"), "{}", shown[1]);
        let (_, warnings) = Ini::parse(&Source::new("t.conf", "k: 1\n[DEFAULT]\nj: 2\n")).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].message.contains("[DEFAULT] appears twice"));
    }

    #[test]
    fn section_names_are_case_sensitive_keys_are_not() {
        let ini = parse("[Global]\nKEY: 1\n");
        assert!(ini.get("global", "key").is_none());
        assert_eq!(ini.get("Global", "Key").unwrap().value, "1");
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line() {
        let errs = errors("  orphan\n[ok]\nno separator here\n[broken\n: v\n[]\n");
        let lines: Vec<usize> = errs
            .iter()
            .map(|d| d.location.as_ref().unwrap().line_col().line)
            .collect();
        assert_eq!(lines, [1, 3, 4, 5, 6]);
        assert!(errs[0].message.contains("continuation line"));
        assert!(
            errs[1].message.contains("expected `key: value`"),
            "{}",
            errs[1].message
        );
        assert!(errs[2].message.contains("closing `]`"));
        assert!(errs[3].message.contains("missing key"));
        assert!(errs[4].message.contains("empty section"));
    }

    #[test]
    fn render_sorts_sections_and_keys() {
        let mut ini = Ini::new();
        ini.set("vm", "b", "2");
        ini.set("vm", "a", "1");
        ini.set("global", "z", "multi\nline");
        ini.set("global", "e", "");
        assert_eq!(
            ini.render(),
            "[global]\ne:\nz: multi\n    line\n\n[vm]\na: 1\nb: 2\n"
        );
        let back = parse(&ini.render());
        assert_eq!(back.get("global", "z").unwrap().value, "multi\nline");
        assert_eq!(back.get("global", "e").unwrap().value, "");
    }

    #[test]
    fn merge_overrides_keys() {
        let mut a = parse("[s]\nk: 1\nl: 1\n");
        let b = parse("[s]\nk: 2\n[t]\nm: 3\n");
        a.merge(b);
        assert_eq!(a.get("s", "k").unwrap().value, "2");
        assert_eq!(a.get("s", "l").unwrap().value, "1");
        assert_eq!(a.get("t", "m").unwrap().value, "3");
    }
}
