//! YAML values (SPEC §3.1, §3.2): parsing, the merge rules and rendering.
//!
//! Values are [`serde_norway::Value`]s; mappings keep insertion order, so keys
//! come out in source order (SPEC Part A: first occurrence, deterministic).
//!
//! # Reading
//!
//! Parsing uses serde_norway's libyaml-based event reader with our own value
//! builder instead of `Value`'s `Deserialize` impl, for two reasons:
//!
//! * Duplicate keys in one mapping: serde_norway rejects them; the original
//!   (aeson) keeps the last value. We keep the **last value at the position of
//!   the first occurrence**.
//! * Plain (unquoted, untagged) scalars `y Y yes Yes YES on On ON` read as
//!   `true` and `n N no No NO off Off OFF` as `false`, as the original's
//!   `Data.Yaml` reader does (serde_norway follows YAML 1.2, where they are
//!   strings). This applies to values, not to mapping keys (aeson keys are
//!   always text). Quoted scalars stay strings. `true`/`false`/`null`/`~` and
//!   numbers resolve as serde_norway does (YAML 1.2 core schema); integers that
//!   do not fit 64 bits become floats.
//!
//! Anchors and aliases are resolved; `<<` merge keys are not applied (they stay
//! ordinary keys). Tagged nodes (`!foo x`) stay [`Value::Tagged`].
//!
//! # Writing
//!
//! [`render`] is a small emitter in libyaml's block style (what the original's
//! `Data.Yaml.encode` produces), written by hand so the output is deterministic
//! and always reads back as the same value: `parse(&render(v)) == Ok(v)` for every
//! value without nested tags.

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_norway::value::{Tag, TaggedValue};
use serde_norway::{Mapping, Number};
use std::fmt;
use std::fmt::Write as _;

pub use serde_norway::Value;

/// The header line of a cloud-config document (SPEC §3.2).
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config\n";

/// How deeply serde_norway lets sequences and mappings nest; deeper input
/// fails with its "recursion limit exceeded", which [`YamlError`] rewords.
const MAX_DEPTH: usize = 128;

/// Keys longer than this (in bytes) are written as explicit `? key` entries:
/// libyaml reads implicit keys of at most 1024 characters.
const MAX_IMPLICIT_KEY: usize = 1000;

/// A YAML syntax error: message and 1-based line/column in the parsed text (when known).
#[derive(Clone, Debug, PartialEq)]
pub struct YamlError {
    /// What went wrong, without the position.
    pub message: String,
    /// 1-based line of the error, when known.
    pub line: Option<usize>,
    /// 1-based column of the error, when known.
    pub column: Option<usize>,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: {}", self.message),
            (Some(line), None) => write!(f, "{line}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for YamlError {}

impl YamlError {
    fn from_serde(err: &serde_norway::Error) -> Self {
        let mut message = err.to_string();
        let (line, column) = match err.location() {
            Some(loc) => {
                let at = format!(" at line {} column {}", loc.line(), loc.column());
                if let Some(i) = message.find(&at) {
                    message.replace_range(i..i + at.len(), "");
                }
                (Some(loc.line()), Some(loc.column()))
            }
            None => (None, None),
        };
        if message == "recursion limit exceeded" {
            message = format!("nested too deeply (more than {MAX_DEPTH} levels)");
        }
        YamlError {
            message,
            line,
            column,
        }
    }
}

/// Parses one YAML document. Empty text (or only comments) gives `Null`.
///
/// Duplicate keys: the last value wins, at the first key's position. See the
/// module documentation for how plain scalars resolve.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    // serde_norway is not expected to panic on any input; this is a safety net
    // so that a bug there cannot take the whole build down.
    let result = std::panic::catch_unwind(|| {
        let de = serde_norway::Deserializer::from_str(text);
        Loader {
            input: text,
            key: false,
        }
        .deserialize(de)
    });
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(YamlError::from_serde(&e)),
        Err(_) => Err(YamlError {
            message: "internal error in the YAML reader".to_string(),
            line: None,
            column: None,
        }),
    }
}

/// Parses a cloud-config document: a leading `#cloud-config\n` (exactly those
/// 14 characters) is stripped first (SPEC §3.2).
///
/// Since that line is a YAML comment, the text is parsed whole, which gives the
/// same value and keeps error positions relative to `text` as given.
pub fn parse_cloud_config(text: &str) -> Result<Value, YamlError> {
    parse(text)
}

/// Merges two YAML values (SPEC §3.1), rules checked in this order:
///
/// 1. mapping + mapping: union of keys; keys in both are merged recursively;
///    `a`'s keys in `a`'s order, then `b`-only keys in `b`'s order;
/// 2. sequence + sequence: concatenation;
/// 3. sequence + other: `b` appended;
/// 4. other + sequence: `a` prepended;
/// 5. string + string: string concatenation;
/// 6. anything else (also tagged values): the two-element sequence `[a, b]`.
pub fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Mapping(mut ma), Value::Mapping(mb)) => {
            for (k, vb) in mb {
                match ma.get_mut(&k) {
                    Some(va) => {
                        let old = std::mem::take(va);
                        *va = merge(old, vb);
                    }
                    None => {
                        ma.insert(k, vb);
                    }
                }
            }
            Value::Mapping(ma)
        }
        (Value::Sequence(mut sa), Value::Sequence(sb)) => {
            sa.extend(sb);
            Value::Sequence(sa)
        }
        (Value::Sequence(mut sa), b) => {
            sa.push(b);
            Value::Sequence(sa)
        }
        (a, Value::Sequence(sb)) => {
            let mut s = Vec::with_capacity(sb.len() + 1);
            s.push(a);
            s.extend(sb);
            Value::Sequence(s)
        }
        (Value::String(mut sa), Value::String(sb)) => {
            sa.push_str(&sb);
            Value::String(sa)
        }
        (a, b) => Value::Sequence(vec![a, b]),
    }
}

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
/// the YAML text and one more newline (SPEC §3.2).
pub fn render_cloud_config(v: &Value) -> String {
    let body = render(v);
    let mut out = String::with_capacity(body.len() + CLOUD_CONFIG_HEADER.len() + 2);
    out.push_str(CLOUD_CONFIG_HEADER);
    out.push('\n');
    out.push_str(&body);
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------
// Reading

/// Builds a [`Value`] from serde_norway's event deserializer (see the module
/// documentation for how it differs from `Value`'s own `Deserialize`).
#[derive(Clone, Copy)]
struct Loader<'de> {
    /// The whole input, to tell plain scalars from quoted ones.
    input: &'de str,
    /// Whether the node being read is a mapping key.
    key: bool,
}

impl<'de> Loader<'de> {
    fn value(self) -> Self {
        Loader { key: false, ..self }
    }

    /// Whether `s`, a slice borrowed from the input, was written as a plain
    /// scalar without a tag (not quoted, no `!tag` before it).
    fn is_plain_untagged(self, s: &str) -> bool {
        let base = self.input.as_ptr() as usize;
        let start = (s.as_ptr() as usize).wrapping_sub(base);
        let end = start.wrapping_add(s.len());
        if start > self.input.len() || end > self.input.len() {
            return false;
        }
        let (Some(before), Some(after)) = (self.input.get(..start), self.input.get(end..)) else {
            return false;
        };
        let prev = before.chars().next_back();
        if matches!(prev, Some('\'' | '"')) && after.starts_with(prev.unwrap_or(' ')) {
            return false;
        }
        // Look back over anchors for a tag (`!!str yes`, `!t &a yes`).
        let mut rest = before;
        loop {
            rest = rest.trim_end_matches([' ', '\t', '\r', '\n']);
            let tok_start = rest
                .rfind(|c: char| c.is_whitespace() || "[]{},".contains(c))
                .map_or(0, |i| i + 1);
            let tok = rest.get(tok_start..).unwrap_or("");
            if tok.starts_with('!') {
                return false;
            }
            if tok.starts_with('&') && tok.len() > 1 {
                rest = rest.get(..tok_start).unwrap_or("");
                continue;
            }
            return true;
        }
    }
}

/// The `Data.Yaml` boolean words other than `true`/`false` (which serde_norway
/// resolves itself), in the casings it accepts.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

impl<'de> DeserializeSeed<'de> for Loader<'de> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Loader<'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        Ok(match i64::try_from(i) {
            Ok(i) => Value::Number(i.into()),
            Err(_) => Value::Number((i as f64).into()),
        })
    }

    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        Ok(match u64::try_from(u) {
            Ok(u) => Value::Number(u.into()),
            Err(_) => Value::Number((u as f64).into()),
        })
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Value, E> {
        if !self.key {
            if let Some(b) = yaml11_bool(s) {
                if self.is_plain_untagged(s) {
                    return Ok(Value::Bool(b));
                }
            }
        }
        Ok(Value::String(s.to_owned()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.value())? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Mapping::new();
        let key_loader = Loader { key: true, ..self };
        while let Some(k) = map.next_key_seed(key_loader)? {
            let v = map.next_value_seed(self.value())?;
            // An existing key keeps its position and takes the new value.
            m.insert(k, v);
        }
        Ok(Value::Mapping(m))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        let value = contents.newtype_variant_seed(self)?;
        let tag = if tag.is_empty() { "!".to_string() } else { tag };
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

// ---------------------------------------------------------------------------
// Writing

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

#[cfg(test)]
mod tests {
    use super::*;

    fn y(text: &str) -> Value {
        parse(text).unwrap()
    }

    fn s(text: &str) -> Value {
        Value::String(text.to_string())
    }

    fn roundtrip(v: &Value) {
        let text = render(v);
        assert_eq!(parse(&text).as_ref(), Ok(v), "rendered:\n{text}");
    }

    // --- parse ---

    #[test]
    fn deep_nesting_is_a_located_error() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        for deep in [
            "[".repeat(100_000),
            "{a: ".repeat(100_000),
            "- ".repeat(100_000),
        ] {
            let e = parse(&deep).unwrap_err();
            assert_eq!(e.message, "nested too deeply (more than 128 levels)");
            assert_eq!(e.line, Some(1));
        }
    }

    #[test]
    fn empty_text_is_null() {
        assert_eq!(y(""), Value::Null);
        assert_eq!(y("# just a comment\n"), Value::Null);
    }

    #[test]
    fn keys_in_source_order() {
        let v = y("zeta: 1\nalpha: 2\nmid: 3\n");
        let keys: Vec<&str> = v
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
        assert_eq!(render(&v), "zeta: 1\nalpha: 2\nmid: 3\n");
    }

    #[test]
    fn duplicate_keys_last_value_first_position() {
        let v = y("a: 1\nb: 2\na: 3\n");
        assert_eq!(render(&v), "a: 3\nb: 2\n");
        let v = y("{x: {p: 1}, x: {q: 2}}");
        assert_eq!(v, y("x: {q: 2}"));
    }

    #[test]
    fn yaml11_booleans_like_data_yaml() {
        let v = y(
            "a: yes\nb: No\nc: ON\nd: off\ne: y\nf: 'yes'\ng: \"no\"\nh: !!str on\ni: [yes, n]\n",
        );
        assert_eq!(v["a"], Value::Bool(true));
        assert_eq!(v["b"], Value::Bool(false));
        assert_eq!(v["c"], Value::Bool(true));
        assert_eq!(v["d"], Value::Bool(false));
        assert_eq!(v["e"], Value::Bool(true));
        assert_eq!(v["f"], s("yes"));
        assert_eq!(v["g"], s("no"));
        assert_eq!(v["h"], s("on"));
        assert_eq!(v["i"], y("[true, false]"));
        // Keys stay text, as aeson keys do.
        let v = y("yes: 1\n");
        assert_eq!(v.as_mapping().unwrap().keys().next(), Some(&s("yes")));
        // Through an alias too.
        let v = y("a: &x yes\nb: *x\n");
        assert_eq!(v["b"], Value::Bool(true));
    }

    #[test]
    fn scalars_resolve() {
        assert_eq!(y("1"), Value::Number(1.into()));
        assert_eq!(y("-5"), Value::Number((-5).into()));
        assert_eq!(y("1.5"), Value::Number(1.5.into()));
        assert_eq!(y("true"), Value::Bool(true));
        assert_eq!(y("~"), Value::Null);
        assert_eq!(y("'1'"), s("1"));
        assert_eq!(
            y("123456789012345678901234"),
            Value::Number(1.2345678901234568e23.into())
        );
    }

    #[test]
    fn tagged_values_are_kept() {
        let v = y("a: !foo bar\n");
        match &v["a"] {
            Value::Tagged(t) => {
                assert_eq!(t.tag, "foo");
                assert_eq!(t.value, s("bar"));
            }
            other => panic!("not tagged: {other:?}"),
        }
        assert_eq!(render(&v), "a: !foo bar\n");
        roundtrip(&y("a: !foo\n  x: 1\nb: !seq\n  - 1\n  - 2\nc:\n- !t yes\n"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!((err.line, err.column), (Some(3), Some(2)), "{err:?}");
        assert_eq!(
            err.message,
            "did not find expected ',' or ']', while parsing a flow sequence at line 2 column 4"
        );
        let err = parse("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!((err.line, err.column), (Some(2), Some(4)), "{err:?}");
        assert_eq!(
            err.message,
            "mapping values are not allowed in this context"
        );
        assert_eq!(
            err.to_string(),
            "2:4: mapping values are not allowed in this context"
        );
        let err = parse("a:\n\t- b\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err:?}");
    }

    #[test]
    fn more_than_one_document_is_an_error() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    // --- cloud-config (§3.2) ---

    #[test]
    fn cloud_config_header_is_stripped() {
        let v = parse_cloud_config("#cloud-config\nruncmd: [ls]\n").unwrap();
        assert_eq!(v, y("runcmd: [ls]"));
        assert_eq!(parse_cloud_config("runcmd: [ls]").unwrap(), v);
        let err = parse_cloud_config("#cloud-config\na: [\n").unwrap_err();
        assert!(err.line.unwrap() >= 2, "{err:?}");
    }

    #[test]
    fn cloud_config_render_exact() {
        let v = y("runcmd:\n- ls\n- echo hi\nhostname: box\n");
        assert_eq!(
            render_cloud_config(&v),
            "#cloud-config\n\nruncmd:\n- ls\n- echo hi\nhostname: box\n\n"
        );
        assert_eq!(parse_cloud_config(&render_cloud_config(&v)).unwrap(), v);
    }

    #[test]
    fn cloud_config_documents_merge_lists() {
        let a = parse_cloud_config(
            "#cloud-config\nwrite_files:\n- path: /etc/a\n  content: aaa\nruncmd:\n- echo a\n",
        )
        .unwrap();
        let b = parse_cloud_config(
            "#cloud-config\nruncmd:\n- echo b\nwrite_files:\n- path: /etc/b\n  content: bbb\n",
        )
        .unwrap();
        let m = merge(a, b);
        assert_eq!(
            render_cloud_config(&m),
            "#cloud-config\n\nwrite_files:\n- path: /etc/a\n  content: aaa\n- path: /etc/b\n  \
             content: bbb\nruncmd:\n- echo a\n- echo b\n\n"
        );
    }

    // --- merge (§3.1) ---

    #[test]
    fn merge_objects() {
        let m = merge(y("{k1: 1, k: 2}"), y("{k2: 3, k: 4}"));
        assert_eq!(m, y("{k1: 1, k: [2, 4], k2: 3}"));
        assert_eq!(render(&m), "k1: 1\nk:\n- 2\n- 4\nk2: 3\n");
        // Recursive.
        let m = merge(y("a: {x: [1]}"), y("a: {x: [2], y: 3}"));
        assert_eq!(m, y("a: {x: [1, 2], y: 3}"));
    }

    #[test]
    fn merge_strings_concatenate() {
        assert_eq!(merge(s("Hello"), s("World")), s("HelloWorld"));
    }

    #[test]
    fn merge_arrays() {
        assert_eq!(merge(y("[1, 2]"), y("[3]")), y("[1, 2, 3]"));
        assert_eq!(merge(y("[1, 2]"), y("x")), y("[1, 2, x]"));
        assert_eq!(merge(y("x"), y("[1, 2]")), y("[x, 1, 2]"));
        assert_eq!(merge(y("[1]"), y("{a: 1}")), y("[1, {a: 1}]"));
        assert_eq!(merge(y("{a: 1}"), y("[1]")), y("[{a: 1}, 1]"));
    }

    #[test]
    fn merge_primitives_make_an_array() {
        assert_eq!(merge(y("1"), y("2")), y("[1, 2]"));
        assert_eq!(merge(y("true"), y("null")), y("[true, null]"));
        assert_eq!(merge(s("a"), y("1")), y("[a, 1]"));
        assert_eq!(merge(y("{a: 1}"), s("b")), y("[{a: 1}, b]"));
        assert_eq!(merge(y("!t a"), s("b")), y("[!t a, b]"));
        assert_eq!(merge(s("a"), y("!t b")), y("[a, !t b]"));
    }

    #[test]
    fn merge_non_string_keys_kept() {
        let m = merge(y("{1: a, true: b}"), y("{1: c, null: d}"));
        assert_eq!(m, y("{1: ac, true: b, null: d}"));
        assert_eq!(render(&m), "1: ac\ntrue: b\nnull: d\n");
    }

    // --- render ---

    #[test]
    fn render_block_layout() {
        let v =
            y("a:\n  b: 1\n  c: [x, z]\nd:\n- e: 1\n  f: 2\n- [1, 2]\n- []\n- {}\ng: {}\nh: []\n");
        assert_eq!(
            render(&v),
            "a:\n  b: 1\n  c:\n  - x\n  - z\nd:\n- e: 1\n  f: 2\n- - 1\n  - 2\n- []\n- {}\ng: {}\nh: []\n"
        );
        assert_eq!(render(&Value::Null), "null\n");
        assert_eq!(render(&s("x")), "x\n");
        assert_eq!(render(&y("[]")), "[]\n");
        assert_eq!(render(&y("{}")), "{}\n");
        assert_eq!(
            render(&y("[1, true, null, 2.5]")),
            "- 1\n- true\n- null\n- 2.5\n"
        );
    }

    #[test]
    fn render_quoting() {
        for (str, out) in [
            ("yes", "'yes'"),
            ("Off", "'Off'"),
            ("y", "'y'"),
            ("NULL", "'NULL'"),
            ("~", "'~'"),
            ("*", "'*'"),
            ("*x", "'*x'"),
            ("1", "'1'"),
            ("1.5", "'1.5'"),
            ("0x10", "'0x10'"),
            ("1e3", "'1e3'"),
            (".inf", "'.inf'"),
            ("-.5", "'-.5'"),
            ("2001-12-14", "'2001-12-14'"),
            ("", "''"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("- a", "'- a'"),
            ("-a", "-a"),
            ("[x]", "'[x]'"),
            ("{x}", "'{x}'"),
            ("&a", "'&a'"),
            ("!a", "'!a'"),
            ("|", "'|'"),
            (">", "'>'"),
            ("%x", "'%x'"),
            ("@x", "'@x'"),
            ("`x", "'`x'"),
            ("\"x\"", "'\"x\"'"),
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("---", "'---'"),
            ("...", "'...'"),
            ("a:", "'a:'"),
            ("a:b", "a:b"),
            ("a#b", "a#b"),
            ("hello world", "hello world"),
            ("tab\there", "\"tab\\there\""),
            ("bell\u{7}", "\"bell\\a\""),
            ("nel\u{85}", "\"nel\\N\""),
            ("cr\r", "\"cr\\r\""),
            ("q\"\\\u{1}", "\"q\\\"\\\\\\x01\""),
            ("ünïcödé ✓", "ünïcödé ✓"),
        ] {
            assert_eq!(render(&s(str)), format!("{out}\n"), "for {str:?}");
            roundtrip(&s(str));
        }
    }

    #[test]
    fn render_multiline_strings() {
        let v = y("a: \"line1\\nline2\\n\"\nb: \"x\\ny\"\nc: \"x\\n\\n\"\nd: \" x\\ny\"\n");
        assert_eq!(
            render(&v),
            "a: |\n  line1\n  line2\nb: |-\n  x\n  y\nc: |+\n  x\n\nd: |2-\n   x\n  y\n"
        );
        roundtrip(&v);
        // Keep-chomped at the end of the document: closed with `...`.
        let v = y("c: \"x\\n\\n\"");
        assert_eq!(render(&v), "c: |+\n  x\n\n...\n");
        assert_eq!(parse_cloud_config(&render_cloud_config(&v)).unwrap(), v);
        // Trailing spaces on a line: double quotes, as libyaml does.
        assert_eq!(render(&s("a \nb")), "\"a \\nb\"\n");
        // In a sequence and at the top.
        assert_eq!(render(&y("[\"a\\nb\"]")), "- |-\n  a\n  b\n");
        assert_eq!(render(&s("a\nb\n")), "|\n  a\n  b\n");
        // Keys with line breaks are double-quoted.
        assert_eq!(render(&y("\"a\\nb\": 1")), "\"a\\nb\": 1\n");
    }

    #[test]
    fn render_numbers() {
        for (v, out) in [
            (Value::Number(42.into()), "42"),
            (Value::Number((-7).into()), "-7"),
            (Value::Number(u64::MAX.into()), "18446744073709551615"),
            (Value::Number(1.0.into()), "1.0"),
            (Value::Number(0.1.into()), "0.1"),
            (Value::Number(1e20.into()), "1.0e+20"),
            (Value::Number(1.5e-7.into()), "1.5e-7"),
            (Value::Number(f64::INFINITY.into()), ".inf"),
            (Value::Number(f64::NEG_INFINITY.into()), "-.inf"),
            (Value::Number(f64::NAN.into()), ".nan"),
        ] {
            assert_eq!(render(&v), format!("{out}\n"));
            roundtrip(&v);
        }
    }

    #[test]
    fn render_complex_keys() {
        let mut m = Mapping::new();
        m.insert(y("[1, 2]"), s("list key"));
        m.insert(y("{a: 1}"), y("{b: 2, c: 3}"));
        m.insert(s(&"k".repeat(1500)), s("long"));
        m.insert(y("!t x"), s("tagged"));
        let v = Value::Mapping(m);
        roundtrip(&v);
        assert!(render(&v).starts_with("? - 1\n  - 2\n: list key\n? a: 1\n: b: 2\n  c: 3\n"));
    }

    #[test]
    fn render_is_deterministic() {
        let v = y("b: 1\na: [x, {c: 'yes', d: \"m\\nl\"}]\n");
        assert_eq!(render(&v), render(&v.clone()));
        roundtrip(&v);
    }

    // --- property: parse(render(v)) == v ---

    mod roundtrip_prop {
        use super::*;
        use proptest::prelude::*;

        fn nasty_string() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9 :#\\-'\"\n\t\r{}\\[\\],&*!|>%@`~?.\\\\\u{85}\u{2028}\u{feff}\u{7f}\u{0}é✓]{0,12}",
                prop::sample::select(vec![
                    "", "yes", "No", "y", "n", "ON", "off", "true", "False", "null", "~", "1",
                    "-1", "1.5", "0x10", "0o7", "1e3", ".inf", "-.5", ".nan", "2001-12-14",
                    "- a", "a: b", "---", "...", "--- x", " #x", "|", "<<", "=", "\n", "\n\n",
                    " \n", "a\n", "a\n\n", "\na", "\ta\nb", "a\n\tb\n", "x\r\ny", "#cloud-config",
                ])
                .prop_map(str::to_string),
            ]
        }

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|i| Value::Number(i.into())),
                any::<u64>().prop_map(|u| Value::Number(u.into())),
                any::<f64>().prop_map(|f| Value::Number(f.into())),
                nasty_string().prop_map(Value::String),
                nasty_string().prop_map(Value::String),
                nasty_string().prop_map(Value::String),
            ]
        }

        fn key() -> impl Strategy<Value = Value> {
            prop_oneof![
                4 => nasty_string().prop_map(Value::String),
                1 => scalar(),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                4 => scalar(),
                1 => ("[a-zA-Z][a-zA-Z0-9]{0,4}", scalar()).prop_map(|(t, v)| {
                    Value::Tagged(Box::new(TaggedValue { tag: Tag::new(t), value: v }))
                }),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                let collection = prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Sequence),
                    prop::collection::vec((key(), inner), 0..6).prop_map(|kvs| {
                        let mut m = Mapping::new();
                        for (k, v) in kvs {
                            m.insert(k, v);
                        }
                        Value::Mapping(m)
                    }),
                ];
                prop_oneof![
                    4 => collection.clone(),
                    1 => ("[a-zA-Z][a-zA-Z0-9]{0,4}", collection).prop_map(|(t, v)| {
                        Value::Tagged(Box::new(TaggedValue { tag: Tag::new(t), value: v }))
                    }),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn render_reads_back(v in value()) {
                let text = render(&v);
                prop_assert_eq!(parse(&text), Ok(v.clone()), "rendered:\n{}", text);
                prop_assert_eq!(render(&v), text.clone());
                prop_assert_eq!(parse_cloud_config(&render_cloud_config(&v)), Ok(v), "rendered:\n{}", text);
            }

            #[test]
            fn parse_never_panics(text in "[a-z0-9 :#\\-'\"\n\t{}\\[\\],&*!|>%@?.]{0,40}") {
                let _ = parse(&text);
            }
        }
    }
}
