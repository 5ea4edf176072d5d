//! The canonical layout of build files (`b9 reformat`).
//!
//! A term that fits in [`WIDTH`] columns and holds no comments is printed on one
//! line. Otherwise: a constructor keeps the leading arguments that fit on its
//! line and puts each further argument on its own line, indented by two; lists,
//! tuples and records put one element per line with leading commas. Comments
//! are printed where they were attached: leading ones on their own lines before
//! the term, trailing ones after it on its last line.

use crate::lang::lexer::Comment;
use crate::lang::term::{Document, Term, TermKind, YAML_OBJECT};

/// The line width the layout aims for.
pub const WIDTH: usize = 80;

/// Prints a whole document in canonical layout, ending with a newline.
pub fn print_document(doc: &Document) -> String {
    let mut p = Printer::default();
    p.leading(&doc.term.leading, 0);
    p.body(&doc.term, 0);
    p.trailing(&doc.term.trailing);
    for c in &doc.trailing {
        p.newline(0);
        p.text(&c.text);
    }
    p.out.push('\n');
    p.out
}

/// Prints one term in canonical layout (no final newline).
pub fn print_term(term: &Term) -> String {
    print_document(&Document {
        term: term.clone(),
        trailing: Vec::new(),
    })
    .trim_end_matches('\n')
    .to_string()
}

#[derive(Default)]
struct Printer {
    out: String,
    col: usize,
}

impl Printer {
    fn text(&mut self, s: &str) {
        self.out.push_str(s);
        self.col += s.chars().count();
    }

    fn newline(&mut self, indent: usize) {
        // Keep lines free of trailing blanks.
        let trimmed = self.out.trim_end_matches(' ').len();
        self.out.truncate(trimmed);
        self.out.push('\n');
        self.out.push_str(&" ".repeat(indent));
        self.col = indent;
    }

    /// Leading comments, each on its own line at `indent`; the term follows on a new line.
    fn leading(&mut self, comments: &[Comment], indent: usize) {
        for c in comments {
            self.text(&c.text);
            self.newline(indent);
        }
    }

    /// Trailing comments after the term on its line.
    fn trailing(&mut self, comments: &[Comment]) {
        for c in comments {
            self.text(" ");
            self.text(&c.text);
        }
    }

    fn fits(&self, flat: &str) -> bool {
        self.col + flat.chars().count() <= WIDTH
    }

    /// The term without its own comments, starting at the current column.
    fn body(&mut self, term: &Term, col: usize) {
        if let Some(flat) = flat(term) {
            if self.fits(&flat) {
                self.text(&flat);
                return;
            }
        }
        match &term.kind {
            TermKind::Con { name, args, .. } => self.application(name, args, col),
            TermKind::List { items, closing } => self.sequence("[", "]", items, closing, col),
            TermKind::Tuple { items, closing } => self.sequence("(", ")", items, closing, col),
            TermKind::Record {
                name,
                fields,
                closing,
                ..
            } => self.record(name, fields, closing, col),
            _ => {
                let flat = flat(term).unwrap_or_default();
                self.text(&flat);
            }
        }
    }

    fn application(&mut self, name: &str, args: &[Term], col: usize) {
        self.text(name);
        let mut rest = args;
        while let Some((first, tail)) = rest.split_first() {
            match flat_arg(first) {
                Some(f) if first.leading.is_empty() && self.fits(&format!(" {f}")) => {
                    self.text(" ");
                    self.text(&f);
                    rest = tail;
                    if !first.trailing.is_empty() {
                        // A comment ends the line: the rest go below.
                        self.trailing(&first.trailing);
                        break;
                    }
                }
                _ => break,
            }
        }
        for arg in rest {
            self.newline(col + 2);
            self.leading(&arg.leading, col + 2);
            self.argument(arg, col + 2);
        }
    }

    /// A term in argument position, parenthesised when compound, with its
    /// trailing comments after it.
    fn argument(&mut self, term: &Term, col: usize) {
        if needs_parens(term) {
            self.text("(");
            self.body(term, col + 1);
            self.text(")");
        } else {
            self.body(term, col);
        }
        self.trailing(&term.trailing);
    }

    fn sequence(
        &mut self,
        open: &str,
        close: &str,
        items: &[Term],
        closing: &[Comment],
        col: usize,
    ) {
        if items.is_empty() {
            self.text(open);
            for c in closing {
                self.newline(col + 2);
                self.text(&c.text);
            }
            self.newline(col);
            self.text(close);
            return;
        }
        for (i, item) in items.iter().enumerate() {
            if i == 0 {
                self.text(open);
                self.text(" ");
                if let Some((first, rest)) = item.leading.split_first() {
                    // A comment right after the bracket stays there.
                    self.text(&first.text);
                    self.newline(col + 2);
                    self.leading(rest, col + 2);
                }
            } else {
                if !item.leading.is_empty() {
                    self.newline(col + 2);
                    for (j, c) in item.leading.iter().enumerate() {
                        if j > 0 {
                            self.newline(col + 2);
                        }
                        self.text(&c.text);
                    }
                }
                self.newline(col);
                self.text(", ");
            }
            self.body(item, col + 2);
            self.trailing(&item.trailing);
        }
        for c in closing {
            self.newline(col + 2);
            self.text(&c.text);
        }
        self.newline(col);
        self.text(close);
    }

    fn record(
        &mut self,
        name: &str,
        fields: &[(String, crate::diag::source::Span, Term)],
        closing: &[Comment],
        col: usize,
    ) {
        self.text(name);
        for (i, (field, _, value)) in fields.iter().enumerate() {
            if !value.leading.is_empty() {
                self.newline(col + 2);
                self.leading(&value.leading[..value.leading.len() - 1], col + 2);
                if let Some(last) = value.leading.last() {
                    self.text(&last.text);
                }
            }
            self.newline(col + 2);
            self.text(if i == 0 { "{ " } else { ", " });
            self.text(field);
            self.text(" =");
            match flat(value) {
                Some(f) if self.fits(&format!(" {f}")) => {
                    self.text(" ");
                    self.text(&f);
                }
                _ => {
                    self.newline(col + 6);
                    self.body(value, col + 6);
                }
            }
            self.trailing(&value.trailing);
        }
        for c in closing {
            self.newline(col + 4);
            self.text(&c.text);
        }
        self.newline(col + 2);
        self.text(if fields.is_empty() { "{}" } else { "}" });
    }
}

fn needs_parens(term: &Term) -> bool {
    match &term.kind {
        // Written bare, as the original prints it and as its reader wants it.
        TermKind::Con { name, args, .. } if name == YAML_OBJECT => {
            !matches!(args.as_slice(), [a] if matches!(a.kind, TermKind::Str(_)) && !has_comments(a))
        }
        TermKind::Con { args, .. } => !args.is_empty(),
        TermKind::Record { .. } => true,
        TermKind::Int(n) => *n < 0,
        TermKind::Float(x) => x.is_sign_negative(),
        _ => false,
    }
}

fn has_comments(term: &Term) -> bool {
    !term.leading.is_empty() || !term.trailing.is_empty()
}

/// The one-line form of a term, or `None` when comments inside force line breaks.
/// The term's own comments are printed by its caller and do not count.
fn flat(term: &Term) -> Option<String> {
    Some(match &term.kind {
        TermKind::Con { name, args, .. } => {
            let mut s = name.clone();
            for a in args {
                if has_comments(a) {
                    return None;
                }
                s.push(' ');
                s.push_str(&flat_arg(a)?);
            }
            s
        }
        TermKind::Record {
            name,
            fields,
            closing,
            ..
        } => {
            if !closing.is_empty() {
                return None;
            }
            let mut parts = Vec::new();
            for (f, _, v) in fields {
                if has_comments(v) {
                    return None;
                }
                parts.push(format!("{f} = {}", flat(v)?));
            }
            format!("{name} {{{}}}", parts.join(", "))
        }
        TermKind::List { items, closing } => format!("[{}]", flat_items(items, closing)?),
        TermKind::Tuple { items, closing } => format!("({})", flat_items(items, closing)?),
        TermKind::Str(s) => show_string(s),
        TermKind::Char(c) => show_char(*c),
        TermKind::Int(n) => n.to_string(),
        TermKind::Float(x) => show_double(*x),
    })
}

fn flat_items(items: &[Term], closing: &[Comment]) -> Option<String> {
    if !closing.is_empty() || items.iter().any(has_comments) {
        return None;
    }
    let parts: Option<Vec<String>> = items.iter().map(flat).collect();
    Some(parts?.join(", "))
}

fn flat_arg(term: &Term) -> Option<String> {
    let f = flat(term)?;
    Some(if needs_parens(term) {
        format!("({f})")
    } else {
        f
    })
}

/// A string literal as Haskell's `show` would write it, but with printable
/// non-ASCII characters kept as they are.
pub fn show_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            _ => {
                let numeric = escape_char(c, &mut out);
                if numeric && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                    out.push_str("\\&");
                }
            }
        }
    }
    out.push('"');
    out
}

/// A character literal as Haskell's `show` would write it.
pub fn show_char(c: char) -> String {
    let mut out = String::from("'");
    if c == '\'' {
        out.push_str("\\'");
    } else {
        escape_char(c, &mut out);
    }
    out.push('\'');
    out
}

/// Appends `c` escaped; true when a numeric escape was written.
fn escape_char(c: char, out: &mut String) -> bool {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() => {
            out.push_str(&format!("\\{}", u32::from(c)));
            return true;
        }
        c => out.push(c),
    }
    false
}

/// A floating-point literal that reads back to the same value.
pub fn show_double(x: f64) -> String {
    let s = format!("{:?}", x.abs());
    let s = if s.contains(['.', 'e', 'E']) || !x.is_finite() {
        s
    } else {
        format!("{s}.0")
    };
    if x.is_sign_negative() {
        format!("-{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::term::parse_document;

    fn reformat(text: &str) -> String {
        match parse_document(text) {
            Ok(doc) => print_document(&doc),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn short_terms_stay_on_one_line() {
        assert_eq!(
            reformat("Artifact  ( IID \"x\" )\n (CloudInit [CI_ISO,CI_DIR] \"out\")"),
            "Artifact (IID \"x\") (CloudInit [CI_ISO, CI_DIR] \"out\")\n"
        );
        assert_eq!(reformat("X (-1) [-2] (-1.5)"), "X (-1) [-2] (-1.5)\n");
    }

    #[test]
    fn long_terms_break_with_leading_commas() {
        let text = "Let [(\"domain\", \"example.org\"), (\"host\", \"web.${domain}\")] [Artifact (IID \"a-very-long-name\") (CloudInit [CI_ISO] \"out/${host}/with/a/long/path\"), EmptyArtifact]";
        let expected = "\
Let [(\"domain\", \"example.org\"), (\"host\", \"web.${domain}\")]
  [ Artifact (IID \"a-very-long-name\")
      (CloudInit [CI_ISO] \"out/${host}/with/a/long/path\")
  , EmptyArtifact
  ]
";
        assert_eq!(reformat(text), expected);
        assert_eq!(reformat(expected), expected);
    }

    #[test]
    fn comments_survive_and_are_stable() {
        let text = "-- head\nLet [] -- no bindings\n  [ {- first -} A\n  -- before b\n  , B (C {- inside -}) -- after b\n  -- closing\n  ]\n-- end\n";
        let once = reformat(text);
        for c in [
            "-- head",
            "-- no bindings",
            "{- first -}",
            "-- before b",
            "{- inside -}",
            "-- after b",
            "-- closing",
            "-- end",
        ] {
            assert!(once.contains(c), "{c} missing from:\n{once}");
        }
        assert_eq!(reformat(&once), once);
    }

    #[test]
    fn strings_are_escaped_to_read_back() {
        assert_eq!(
            show_string("a\"b\\c\nd\u{1}2é"),
            "\"a\\\"b\\\\c\\nd\\1\\&2é\""
        );
        assert_eq!(show_char('\''), "'\\''");
        assert_eq!(show_double(2.0), "2.0");
        assert_eq!(show_double(-0.01), "-0.01");
    }
}
