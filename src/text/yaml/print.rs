//! The YAML writer: libyaml's block style, deterministic, always read back
//! as the same value.

use serde_norway::value::Tag;
use serde_norway::Number;
use std::fmt::Write as _;

use super::{parse, Value, CLOUD_CONFIG_HEADER};

/// Keys longer than this (in bytes) are written as explicit `? key` entries:
/// libyaml reads implicit keys of at most 1024 characters.
const MAX_IMPLICIT_KEY: usize = 1000;

/// Renders `v` as one plain YAML document in block style; the text ends with a
/// newline and reads back (with [`parse`]) as `v`.
///
/// A document whose last scalar is a `|+` block (trailing empty lines kept) is
/// closed with `...` so that text appended after it cannot change the value.
pub fn render(v: &Value) -> String {
    let mut e = Emitter::default();
    e.node(v, Pos::Fresh(0));
    if e.open_ended {
        e.out.push_str("...\n");
    }
    e.out
}

/// Renders `v` as a cloud-config document: `"#cloud-config\n"`, an empty line,
/// the YAML text and one more newline (docs/COMPATIBILITY.md#cloud-config).
pub fn render_cloud_config(v: &Value) -> String {
    let body = render(v);
    let mut out = String::with_capacity(body.len() + CLOUD_CONFIG_HEADER.len() + 2);
    out.push_str(CLOUD_CONFIG_HEADER);
    out.push('\n');
    out.push_str(&body);
    out.push('\n');
    out
}

/// Where the emitter is when it starts a node.
#[derive(Clone, Copy)]
enum Pos {
    /// At the start of a line; the node goes at this column.
    Fresh(usize),
    /// Right after `key:` of a mapping whose keys are at this column.
    AfterKey(usize),
    /// Right after `- `, `? ` or `: `; the cursor is at this column.
    Inline(usize),
}

/// How a string scalar is written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

#[derive(Default)]
struct Emitter {
    out: String,
    /// The output ends with a `|+` block scalar.
    open_ended: bool,
}

fn is_collection(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => !m.is_empty(),
        Value::Sequence(s) => !s.is_empty(),
        _ => false,
    }
}

impl Emitter {
    fn spaces(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    fn node(&mut self, v: &Value, pos: Pos) {
        self.open_ended = false;
        match v {
            Value::Mapping(m) if !m.is_empty() => {
                let (col, first_inline) = match pos {
                    Pos::Fresh(c) => (c, false),
                    Pos::AfterKey(c) => {
                        self.out.push('\n');
                        (c + 2, false)
                    }
                    Pos::Inline(c) => (c, true),
                };
                for (i, (k, val)) in m.iter().enumerate() {
                    if i > 0 || !first_inline {
                        self.spaces(col);
                    }
                    self.entry(k, val, col);
                }
            }
            Value::Sequence(s) if !s.is_empty() => {
                let (col, first_inline) = match pos {
                    Pos::Fresh(c) => (c, false),
                    Pos::AfterKey(c) => {
                        // libyaml does not indent a sequence under a mapping key.
                        self.out.push('\n');
                        (c, false)
                    }
                    Pos::Inline(c) => (c, true),
                };
                for (i, item) in s.iter().enumerate() {
                    if i > 0 || !first_inline {
                        self.spaces(col);
                    }
                    self.out.push_str("- ");
                    self.node(item, Pos::Inline(col + 2));
                }
            }
            Value::Tagged(t) => {
                let (lead, coll_col, lit_col) = match pos {
                    Pos::Fresh(c) => {
                        self.spaces(c);
                        ("", c, c + 2)
                    }
                    Pos::AfterKey(c) => (" ", c + 2, c + 2),
                    Pos::Inline(c) => ("", c, c),
                };
                self.out.push_str(lead);
                self.out.push_str(&tag_text(&t.tag));
                if is_collection(&t.value) {
                    self.out.push('\n');
                    self.node(&t.value, Pos::Fresh(coll_col));
                } else {
                    self.out.push(' ');
                    self.scalar_line(&t.value, lit_col);
                }
            }
            _ => {
                let lit_col = match pos {
                    Pos::Fresh(c) => {
                        self.spaces(c);
                        c + 2
                    }
                    Pos::AfterKey(c) => {
                        self.out.push(' ');
                        c + 2
                    }
                    Pos::Inline(c) => c,
                };
                self.scalar_line(v, lit_col);
            }
        }
    }

    /// Writes a scalar (or empty collection) at the cursor, then a newline;
    /// a literal block's lines go at column `lit_col`.
    fn scalar_line(&mut self, v: &Value, lit_col: usize) {
        if let Value::String(s) = v {
            if string_style(s, true) == Style::Literal {
                self.literal(s, lit_col);
                return;
            }
        }
        self.inline_scalar(v);
        self.out.push('\n');
    }

    /// A scalar written on one line (never a block scalar).
    fn inline_scalar(&mut self, v: &Value) {
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.out.push_str(&number_text(n)),
            Value::String(s) => match string_style(s, false) {
                Style::Plain => self.out.push_str(s),
                Style::SingleQuoted => {
                    self.out.push('\'');
                    self.out.push_str(&s.replace('\'', "''"));
                    self.out.push('\'');
                }
                Style::DoubleQuoted | Style::Literal => double_quoted(&mut self.out, s),
            },
            Value::Sequence(_) => self.out.push_str("[]"),
            Value::Mapping(_) => self.out.push_str("{}"),
            Value::Tagged(t) => {
                // Only reached for a tagged value inside a tagged value, which
                // YAML cannot express; write the outer tag, then the inner one.
                self.out.push_str(&tag_text(&t.tag));
                self.out.push(' ');
                self.inline_scalar(&t.value);
            }
        }
    }

    /// A `|` block scalar: header, then each line at column `col`.
    fn literal(&mut self, s: &str, col: usize) {
        self.out.push('|');
        if s.starts_with([' ', '\t', '\n']) {
            self.out.push('2');
        }
        let body = match s.strip_suffix('\n') {
            None => {
                self.out.push('-');
                s
            }
            Some(body) => {
                if body.is_empty() || body.ends_with('\n') {
                    self.out.push('+');
                    self.open_ended = true;
                }
                body
            }
        };
        self.out.push('\n');
        for line in body.split('\n') {
            if !line.is_empty() {
                self.spaces(col);
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
    }

    /// One mapping entry whose key goes at column `col` (the cursor is there).
    fn entry(&mut self, k: &Value, v: &Value, col: usize) {
        if simple_key(k) {
            self.inline_scalar(k);
            self.out.push(':');
            self.node(v, Pos::AfterKey(col));
        } else {
            self.out.push_str("? ");
            self.node(k, Pos::Inline(col + 2));
            self.spaces(col);
            self.out.push_str(": ");
            self.node(v, Pos::Inline(col + 2));
        }
    }
}

/// Whether `k` can be written as an implicit `key:` (one short line).
fn simple_key(k: &Value) -> bool {
    match k {
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
        Value::String(s) => s.len() <= MAX_IMPLICIT_KEY,
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => false,
    }
}

/// `!tag`, with characters that cannot appear in a tag percent-encoded.
fn tag_text(tag: &Tag) -> String {
    let full = tag.to_string();
    let name = full.strip_prefix('!').unwrap_or(&full);
    if name == "!" {
        return "!".to_string();
    }
    let mut out = String::from("!");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || "-;/?:@&=+$._~*'()".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Numbers: integers as digits; floats always with a `.` (and a signed
/// exponent), so every YAML reader sees a float; `.inf`, `-.inf`, `.nan`.
fn number_text(n: &Number) -> String {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        if f.is_nan() {
            return ".nan".to_string();
        }
        if f.is_infinite() {
            return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
        }
        let s = format!("{f:?}");
        return match s.split_once('e') {
            Some((m, e)) => {
                let m = if m.contains('.') {
                    m.to_string()
                } else {
                    format!("{m}.0")
                };
                let e = if e.starts_with('-') {
                    e.to_string()
                } else {
                    format!("+{e}")
                };
                format!("{m}e{e}")
            }
            None if s.contains('.') => s,
            None => format!("{s}.0"),
        };
    }
    n.to_string()
}

/// Characters that only a double-quoted scalar can hold (as escapes): control
/// characters (tab included), DEL, C1 controls (NEL included), the Unicode line
/// and paragraph separators, the byte-order mark and the non-characters
/// U+FFFE/U+FFFF.
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}'
        | '\u{fffe}' | '\u{ffff}')
}

fn string_style(s: &str, allow_literal: bool) -> Style {
    if s.is_empty() {
        return Style::SingleQuoted;
    }
    if s.contains('\n') {
        return if allow_literal && literal_ok(s) {
            Style::Literal
        } else {
            Style::DoubleQuoted
        };
    }
    if s.chars().any(needs_escape) {
        Style::DoubleQuoted
    } else if plain_ok(s) {
        Style::Plain
    } else {
        Style::SingleQuoted
    }
}

/// A string with a line break can be a `|` block when every other character
/// is printable (tabs allowed inside lines) and no line ends in white space.
fn literal_ok(s: &str) -> bool {
    if s.ends_with([' ', '\t']) || s.contains(" \n") || s.contains("\t\n") {
        return false;
    }
    s.chars()
        .all(|c| c == '\n' || c == '\t' || !needs_escape(c))
}

/// Strings written quoted although they would be valid plain scalars, because
/// some YAML reader (the original's `Data.Yaml`, YAML 1.1 readers like
/// cloud-init's, or ours) reads them as something else.
const SPECIAL_STRINGS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~", "<<",
    "=",
];

/// Anything that might be read as a number, date or time by some YAML reader:
/// a sign, then a digit (or `.` and a digit), then only characters that occur
/// in numbers, dates and times; and `.inf`/`.nan` in any casing.
fn numeric_looking(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = t.to_ascii_lowercase();
    if lower == ".inf" || lower == ".nan" {
        return true;
    }
    let starts_numeric = t.starts_with(|c: char| c.is_ascii_digit())
        || (t.starts_with('.') && t[1..].starts_with(|c: char| c.is_ascii_digit()));
    starts_numeric
        && t.chars()
            .all(|c| c.is_ascii_hexdigit() || "_.:+-xXoOtTzZ ".contains(c))
}

/// Whether the one-line string `s` (without characters needing escapes) can be
/// written plain and reads back as the same string.
fn plain_ok(s: &str) -> bool {
    if s.starts_with([' ', '\t']) || s.ends_with([' ', '\t', ':']) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.contains(":\t") || s.contains("\t#") {
        return false;
    }
    let mut chars = s.chars();
    let first = chars.next().unwrap_or(' ');
    let second = chars.next();
    match first {
        ',' | '[' | ']' | '{' | '}' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => return false,
        '-' | '?' | ':' if second.is_none_or(|c| c == ' ') => return false,
        _ => {}
    }
    if SPECIAL_STRINGS.contains(&s) || numeric_looking(s) {
        return false;
    }
    // Final check with our own reader, which also catches document markers.
    matches!(parse(s), Ok(Value::String(ref r)) if r == s)
}

/// Writes `s` as a double-quoted scalar with YAML escapes.
fn double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if needs_escape(c) => {
                let code = u32::from(c);
                if code <= 0xff {
                    let _ = write!(out, "\\x{code:02X}");
                } else {
                    let _ = write!(out, "\\u{code:04X}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
