//! Erlang terms as text (SPEC §3.3, §3.4): parser, printer and proplist merge.
//!
//! The supported subset is the one of the original b9 (`ErlTerms.hs`): strings,
//! floats, integers, atoms, chars, binaries (`<<>>` or `<<"string">>` only),
//! lists and tuples. No maps, pids, funs or records.
//!
//! # Parser
//!
//! [`parse`] reads one term followed by `.`. Differences from the original, all
//! of them making the parser more lenient or its errors clearer:
//!
//! * `%` comments (to the end of the line) are accepted wherever whitespace is,
//!   as in real Erlang files such as `sys.config`; they are dropped.
//! * Whitespace (and comments) between a top-level scalar and the final `.` is
//!   accepted (`ok .`); the original rejects it.
//! * Whitespace before the `>>` of a binary is accepted (`<<"a" >>`).
//! * After the final `.` only whitespace and comments may follow; the original
//!   silently ignores anything there.
//! * Integers must fit in an `i128` and floats must be finite; the original
//!   has unbounded integers and reads `1.0e999` as infinity.
//! * `.5` (no digit before the point) is an error with a hint; the original
//!   accepts it syntactically and then crashes converting it.
//! * Nesting of lists and tuples deeper than [`MAX_DEPTH`] is an error; the
//!   parser itself uses no recursion.
//!
//! Like the original, one trailing comma inside a list or tuple is accepted
//! (`[a,]` is `[a]`), unquoted atoms start with any lower-case letter and go
//! on with letters, digits, `@` and `_` (Unicode letters included, as Parsec's
//! `lower`/`alphaNum` do), and an unknown escape such as `\z` is an error.
//!
//! # Printer
//!
//! [`render`] prints exactly like the original (HughesPJ `sep` with the
//! default style); see [`render`] for the layout rule.
//!
//! # Merge
//!
//! [`merge`] is the `ErlangPropList` semigroup of SPEC §3.4.

use std::cmp::Ordering;
use std::fmt;
use std::fmt::Write as _;

/// Erlang's reserved words: an atom spelled like one is printed quoted, so
/// `file:consult` reads the output back (the original printed them bare).
const RESERVED_WORDS: [&str; 29] = [
    "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
    "catch", "cond", "div", "else", "end", "fun", "if", "let", "maybe", "not", "of", "or",
    "orelse", "receive", "rem", "try", "when", "xor",
];

/// Deepest nesting of lists and tuples that [`parse`] accepts.
pub const MAX_DEPTH: usize = 1000;

/// Line length of the original's pretty printer (HughesPJ default style).
const LINE_LENGTH: isize = 100;

/// Ribbon length: `round(100 / 1.5)` characters of non-indentation text per
/// line (HughesPJ computes it exactly like this).
const RIBBON_LENGTH: isize = 67;

/// An Erlang term (SPEC §3.3 subset).
#[derive(Clone, Debug, PartialEq)]
pub enum ErlTerm {
    /// A string `"..."` (a list of characters in Erlang).
    String(String),
    /// A float such as `1.5` or `1.0e-2`.
    Float(f64),
    /// An integer such as `42`, `-7` or `16#ff`.
    Integer(i128),
    /// An atom such as `ok` or `'Quoted atom'`.
    Atom(String),
    /// A character literal such as `$a`.
    Char(char),
    /// A binary `<<>>` or `<<"string">>`.
    Binary(String),
    /// A list `[a, b]`.
    List(Vec<ErlTerm>),
    /// A tuple `{a, b}`.
    Tuple(Vec<ErlTerm>),
}

/// A parse error: message, byte offset in the input, and 1-based line/column.
#[derive(Clone, Debug, PartialEq)]
pub struct ErlError {
    /// What went wrong and what was expected there.
    pub message: String,
    /// Byte offset of the problem in the input.
    pub offset: usize,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (counted in characters) of the problem.
    pub column: usize,
}

impl fmt::Display for ErlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ErlError {}

// ---------------------------------------------------------------------------
// Parser

/// Parses a whole Erlang term file: optional leading whitespace, one term,
/// `.`, optional trailing whitespace (`%` comments count as whitespace).
///
/// Never panics; the nesting of lists and tuples is limited to [`MAX_DEPTH`].
pub fn parse(text: &str) -> Result<ErlTerm, ErlError> {
    let mut p = Parser { src: text, pos: 0 };
    p.skip_ws();
    let term = p.term()?;
    p.skip_ws();
    if !p.eat('.') {
        return Err(p.expected_here("'.' after the term"));
    }
    p.skip_ws();
    if p.pos < p.src.len() {
        return Err(p.error_here(format!(
            "unexpected {} after the final '.'",
            p.describe_next()
        )));
    }
    Ok(term)
}

/// Which kind of sequence a parser stack frame is collecting.
#[derive(Clone, Copy)]
enum SeqKind {
    List,
    Tuple,
}

impl SeqKind {
    fn close(self) -> char {
        match self {
            SeqKind::List => ']',
            SeqKind::Tuple => '}',
        }
    }

    fn finish(self, items: Vec<ErlTerm>) -> ErlTerm {
        match self {
            SeqKind::List => ErlTerm::List(items),
            SeqKind::Tuple => ErlTerm::Tuple(items),
        }
    }
}

/// A list or tuple being parsed.
struct Frame {
    kind: SeqKind,
    items: Vec<ErlTerm>,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.rest().chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Skips whitespace and `%` comments.
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if c == '%' {
                match self.rest().find('\n') {
                    Some(n) => self.pos += n + 1,
                    None => self.pos = self.src.len(),
                }
            } else {
                break;
            }
        }
    }

    fn error_at(&self, offset: usize, message: String) -> ErlError {
        let offset = offset.min(self.src.len());
        let before = self.src.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
        ErlError {
            message,
            offset,
            line,
            column,
        }
    }

    fn error_here(&self, message: String) -> ErlError {
        self.error_at(self.pos, message)
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of input".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn expected_here(&self, what: &str) -> ErlError {
        self.error_here(format!("expected {what}, found {}", self.describe_next()))
    }

    /// Parses one term. Lists and tuples are handled with an explicit stack,
    /// so deeply nested input cannot overflow the call stack.
    fn term(&mut self) -> Result<ErlTerm, ErlError> {
        let mut stack: Vec<Frame> = Vec::new();
        'next_term: loop {
            // Parse a term start: either a complete scalar or an opening bracket.
            let mut value = match self.peek() {
                Some(open @ ('[' | '{')) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(self.error_here(format!(
                            "lists and tuples nested too deeply (more than {MAX_DEPTH} levels)"
                        )));
                    }
                    self.pos += 1;
                    let kind = if open == '[' {
                        SeqKind::List
                    } else {
                        SeqKind::Tuple
                    };
                    self.skip_ws();
                    if self.eat(kind.close()) {
                        kind.finish(Vec::new())
                    } else {
                        stack.push(Frame {
                            kind,
                            items: Vec::new(),
                        });
                        continue 'next_term;
                    }
                }
                _ => self.scalar(stack.last().map(|f| f.kind.close()))?,
            };
            // Attach the finished value to the enclosing sequences, closing
            // them as long as their closing bracket follows.
            loop {
                let Some(frame) = stack.last_mut() else {
                    return Ok(value);
                };
                frame.items.push(value);
                let close = frame.kind.close();
                self.skip_ws();
                if self.eat(',') {
                    self.skip_ws();
                    // The original accepts one trailing comma: `[a,]` = `[a]`.
                    if !self.eat(close) {
                        continue 'next_term;
                    }
                } else if !self.eat(close) {
                    return Err(self.expected_here(&format!("',' or '{close}'")));
                }
                let Some(frame) = stack.pop() else {
                    return Err(self.error_here("internal parser error".to_string()));
                };
                value = frame.kind.finish(frame.items);
            }
        }
    }

    /// Parses a term that is not a list or tuple. `close` is the closing
    /// bracket of the enclosing sequence, used for the error message.
    fn scalar(&mut self, close: Option<char>) -> Result<ErlTerm, ErlError> {
        let start = self.pos;
        match self.peek() {
            Some('\'') => {
                self.pos += 1;
                Ok(ErlTerm::Atom(self.quoted('\'', start, "atom")?))
            }
            Some(c) if c.is_lowercase() => {
                let mut name = String::new();
                name.push(c);
                self.pos += c.len_utf8();
                while let Some(c) = self.peek() {
                    if c.is_alphanumeric() || c == '@' || c == '_' {
                        name.push(c);
                        self.pos += c.len_utf8();
                    } else {
                        break;
                    }
                }
                Ok(ErlTerm::Atom(name))
            }
            Some('$') => {
                self.pos += 1;
                match self.peek() {
                    Some('\\') => Ok(ErlTerm::Char(self.escape()?)),
                    Some(c) => {
                        self.pos += c.len_utf8();
                        Ok(ErlTerm::Char(c))
                    }
                    None => Err(self.expected_here("a character after '$'")),
                }
            }
            Some('"') => {
                self.pos += 1;
                Ok(ErlTerm::String(self.quoted('"', start, "string")?))
            }
            Some('<') => self.binary(),
            Some('+' | '-' | '0'..='9') => self.number(),
            Some('.') if self.peek2().is_some_and(|c| c.is_ascii_digit()) => Err(self.error_here(
                "a float needs a digit before the '.' (write 0.5, not .5)".to_string(),
            )),
            _ => {
                let what = match close {
                    Some(c) => format!("an Erlang term or '{c}'"),
                    None => "an Erlang term (atom, number, char, string, binary, list or tuple)"
                        .to_string(),
                };
                Err(self.expected_here(&what))
            }
        }
    }

    /// Reads the rest of a quoted string or atom after the opening `quote`.
    fn quoted(&mut self, quote: char, start: usize, what: &str) -> Result<String, ErlError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        self.error_at(start, format!("unterminated {what}: no closing {quote}"))
                    )
                }
                Some('\\') => out.push(self.escape()?),
                Some(c) => {
                    self.pos += c.len_utf8();
                    if c == quote {
                        return Ok(out);
                    }
                    out.push(c);
                }
            }
        }
    }

    /// Reads an escape sequence starting at the backslash under the cursor.
    fn escape(&mut self) -> Result<char, ErlError> {
        let start = self.pos;
        self.pos += 1; // the backslash
        let Some(c) = self.bump() else {
            return Err(self.expected_here("an escape sequence after '\\'"));
        };
        let code: u32 = match c {
            '^' => match self.bump() {
                Some(l) if l.is_ascii_alphabetic() => u32::from(l.to_ascii_lowercase()) - 0x60,
                _ => {
                    return Err(self.error_at(
                        start,
                        "expected a letter after '\\^' (control character escape)".to_string(),
                    ))
                }
            },
            'x' => {
                if self.eat('{') {
                    let mut value: u32 = 0;
                    let mut digits = 0usize;
                    while let Some(d) = self.peek().and_then(|d| d.to_digit(16)) {
                        self.pos += 1;
                        digits += 1;
                        value = value.saturating_mul(16).saturating_add(d);
                    }
                    if digits == 0 {
                        return Err(self.expected_here("a hexadecimal digit after '\\x{'"));
                    }
                    if !self.eat('}') {
                        return Err(self.expected_here("'}' to end the '\\x{...}' escape"));
                    }
                    value
                } else {
                    let mut value = 0;
                    for _ in 0..2 {
                        match self.peek().and_then(|d| d.to_digit(16)) {
                            Some(d) => {
                                self.pos += 1;
                                value = value * 16 + d;
                            }
                            None => {
                                return Err(self.expected_here(
                                    "'{' or two hexadecimal digits after '\\x'",
                                ))
                            }
                        }
                    }
                    value
                }
            }
            '0'..='7' => {
                let mut value = u32::from(c) - u32::from('0');
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            self.pos += 1;
                            value = value * 8 + d;
                        }
                        None => break,
                    }
                }
                value
            }
            'b' => 0x08,
            'd' => 0x7f,
            'e' => 0x1b,
            'f' => 0x0c,
            'n' => 0x0a,
            'r' => 0x0d,
            's' => 0x20,
            't' => 0x09,
            'v' => 0x0b,
            '\\' | '"' | '\'' => u32::from(c),
            other => {
                return Err(self.error_at(
                    start,
                    format!(
                        "unknown escape sequence '\\{other}' (expected one of \
                         \\^X, \\xHH, \\x{{H...}}, \\OOO, \\b \\d \\e \\f \\n \\r \\s \\t \\v \\\\ \\\" \\')"
                    ),
                ))
            }
        };
        char::from_u32(code).ok_or_else(|| {
            self.error_at(
                start,
                format!("escape sequence denotes {code:#x}, which is not a Unicode scalar value"),
            )
        })
    }

    /// Parses `<<>>` or `<<"string">>` (whitespace allowed inside).
    fn binary(&mut self) -> Result<ErlTerm, ErlError> {
        if !self.rest().starts_with("<<") {
            return Err(self.expected_here("'<<' to start a binary"));
        }
        self.pos += 2;
        self.skip_ws();
        let text = if self.peek() == Some('"') {
            let start = self.pos;
            self.pos += 1;
            let s = self.quoted('"', start, "string")?;
            self.skip_ws();
            s
        } else {
            String::new()
        };
        if !self.rest().starts_with(">>") {
            return Err(self.expected_here(if text.is_empty() {
                "a string or '>>' in a binary (only <<>> and <<\"string\">> are supported)"
            } else {
                "'>>' to end the binary"
            }));
        }
        self.pos += 2;
        Ok(ErlTerm::Binary(text))
    }

    fn digits(&mut self) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.src.get(start..self.pos).unwrap_or("")
    }

    /// Parses a float `[+-]digits.digits[e[+-]digits]` or an integer
    /// `[+-]digits` / `[+-]R#digits`.
    fn number(&mut self) -> Result<ErlTerm, ErlError> {
        let start = self.pos;
        let negative = match self.peek() {
            Some('-') => {
                self.pos += 1;
                true
            }
            Some('+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        let int_start = self.pos;
        let int_digits = self.digits().len();
        if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
            if int_digits == 0 {
                return Err(self.error_at(
                    start,
                    "a float needs a digit before the '.' (write 0.5, not .5)".to_string(),
                ));
            }
            self.pos += 1;
            self.digits();
            if matches!(self.peek(), Some('e' | 'E')) {
                self.pos += 1;
                if matches!(self.peek(), Some('+' | '-')) {
                    self.pos += 1;
                }
                if self.digits().is_empty() {
                    return Err(self.expected_here("a digit in the float's exponent"));
                }
            }
            let literal = self.src.get(int_start..self.pos).unwrap_or("");
            let magnitude: f64 = literal
                .parse()
                .map_err(|_| self.error_at(start, format!("invalid float {literal:?}")))?;
            if !magnitude.is_finite() {
                return Err(self.error_at(
                    start,
                    format!("float {literal:?} is out of range (too large for a 64-bit float)"),
                ));
            }
            return Ok(ErlTerm::Float(if negative {
                -magnitude
            } else {
                magnitude
            }));
        }
        if int_digits == 0 {
            return Err(self.expected_here("a digit"));
        }
        let mut radix = 10;
        let digits_start = if self.peek() == Some('#') {
            let radix_text = self.src.get(int_start..self.pos).unwrap_or("");
            radix = match radix_text.parse::<u32>() {
                Ok(r) if (2..=36).contains(&r) && !radix_text.starts_with('0') => r,
                _ => {
                    return Err(self.error_at(
                        int_start,
                        format!("invalid radix {radix_text:?} (expected 2 to 36 before '#')"),
                    ))
                }
            };
            self.pos += 1;
            let digits_start = self.pos;
            while self.peek().is_some_and(|c| c.is_digit(radix)) {
                self.pos += 1;
            }
            if self.pos == digits_start {
                return Err(self.expected_here(&format!("a base-{radix} digit after '#'")));
            }
            digits_start
        } else {
            int_start
        };
        let digits = self.src.get(digits_start..self.pos).unwrap_or("");
        let out_of_range = || {
            self.error_at(
                start,
                "integer is out of range (must fit in 128 bits)".to_string(),
            )
        };
        let mut magnitude: u128 = 0;
        for d in digits.chars() {
            let d = u128::from(d.to_digit(radix).unwrap_or(0));
            magnitude = magnitude
                .checked_mul(u128::from(radix))
                .and_then(|m| m.checked_add(d))
                .ok_or_else(out_of_range)?;
        }
        let value = if negative {
            0i128
                .checked_sub_unsigned(magnitude)
                .ok_or_else(out_of_range)?
        } else {
            i128::try_from(magnitude).map_err(|_| out_of_range())?
        };
        Ok(ErlTerm::Integer(value))
    }
}

// ---------------------------------------------------------------------------
// Printer

/// Renders a term like the original's `renderErlTerm`: the term followed by
/// `.`, no trailing newline.
///
/// Lists and tuples are laid out like HughesPJ `sep` (line length 100, 1.5
/// ribbons per line, i.e. a ribbon of `round(100 / 1.5)` = 67 characters):
/// a list or tuple is printed on one line (`[a, b, c]`) when that line fits,
/// otherwise with one element per line, each continuation line indented to one
/// column after the opening bracket. "Fits" is HughesPJ's test on the whole
/// line as it would come out: the text already on the line (after its
/// indentation), the flat rendering, and whatever follows it up to the next
/// line break (`,`, closing brackets, the final `.`) must fit both within
/// 100 columns and within 67 characters of non-indentation text. The first
/// element of a broken list stays on the line of the opening bracket, so the
/// layout of a nested term depends on where it starts.
pub fn render(term: &ErlTerm) -> String {
    let mut out = String::new();
    layout(&mut out, term, 0, 0, 1);
    out.push('.');
    out
}

/// Writes `term` starting at absolute column `col` on a line indented by
/// `indent`; `trailing` is the length of the text that follows the term on
/// the same line.
fn layout(out: &mut String, term: &ErlTerm, indent: usize, col: usize, trailing: usize) {
    let (open, close, items) = match term {
        ErlTerm::List(items) => ('[', ']', items),
        ErlTerm::Tuple(items) => ('{', '}', items),
        scalar => {
            write_flat(out, scalar);
            return;
        }
    };
    let available = LINE_LENGTH
        .saturating_sub(indent as isize)
        .min(RIBBON_LENGTH)
        - (col.saturating_sub(indent) as isize)
        - (trailing as isize);
    // A list with one element has no choice of its own in HughesPJ; laying
    // it out "vertically" lets its element decide, with the same outcome.
    if items.is_empty() || flat_width_within(term, available) {
        write_flat(out, term);
        return;
    }
    out.push(open);
    let child_indent = col + 1;
    let last = items.len() - 1;
    for (i, item) in items.iter().enumerate() {
        let child_trailing = if i == last { trailing + 1 } else { 1 };
        if i == 0 {
            layout(out, item, indent, child_indent, child_trailing);
        } else {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', child_indent));
            layout(out, item, child_indent, child_indent, child_trailing);
        }
        out.push(if i == last { close } else { ',' });
    }
}

/// Whether the one-line rendering of `term` is at most `budget` characters.
/// Stops early once the budget is exceeded, so it costs O(budget).
fn flat_width_within(term: &ErlTerm, budget: isize) -> bool {
    fn width(term: &ErlTerm, budget: isize) -> Option<isize> {
        if budget < 0 {
            return None;
        }
        let w = match term {
            ErlTerm::List(items) | ErlTerm::Tuple(items) => {
                let mut used = 2;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        used += 2;
                    }
                    used += width(item, budget - used)?;
                }
                used
            }
            scalar => {
                let mut s = String::new();
                write_flat(&mut s, scalar);
                s.len() as isize
            }
        };
        (w <= budget).then_some(w)
    }
    width(term, budget).is_some()
}

/// Writes the one-line rendering of `term`.
fn write_flat(out: &mut String, term: &ErlTerm) {
    match term {
        ErlTerm::String(s) => {
            out.push('"');
            escape_string(out, s);
            out.push('"');
        }
        ErlTerm::Float(f) => out.push_str(&show_double(*f)),
        ErlTerm::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ErlTerm::Atom(a) => {
            let mut escaped = String::new();
            for c in a.chars() {
                escape_atom_char(&mut escaped, c);
            }
            let mut chars = escaped.chars();
            let plain = match chars.next() {
                Some(first) => {
                    first.is_ascii_lowercase()
                        && chars.all(|c| c.is_ascii_alphanumeric() || c == '@' || c == '_')
                }
                None => false,
            };
            if plain && !RESERVED_WORDS.contains(&a.as_str()) {
                out.push_str(&escaped);
            } else {
                out.push('\'');
                out.push_str(&escaped);
                out.push('\'');
            }
        }
        ErlTerm::Char(c) => {
            out.push('$');
            escape_atom_char(out, *c);
        }
        ErlTerm::Binary(s) if s.is_empty() => out.push_str("<<>>"),
        ErlTerm::Binary(s) => {
            out.push_str("<<\"");
            escape_string(out, s);
            out.push_str("\">>");
        }
        ErlTerm::List(items) | ErlTerm::Tuple(items) => {
            let (open, close) = if matches!(term, ErlTerm::List(_)) {
                ('[', ']')
            } else {
                ('{', '}')
            };
            out.push(open);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_flat(out, item);
            }
            out.push(close);
        }
    }
}

/// String escaping of the original: `"` and `\` escaped, chars 0–31 and
/// from 127 on as `\x{h}`.
fn escape_string(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 32 || (c as u32) >= 127 => {
                let _ = write!(out, "\\x{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Atom and char escaping of the original: `'` and `\` escaped, chars 0–31
/// and from 127 on as `\x{h}`.
fn escape_atom_char(out: &mut String, c: char) {
    match c {
        '\'' => out.push_str("\\'"),
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 32 || (c as u32) >= 127 => {
            let _ = write!(out, "\\x{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Formats a double like Haskell's `show`: plain decimal for
/// `0.1 <= |x| < 10^7` (`1.5`, `0.1`, `1234567.0`), otherwise scientific
/// with at least one digit after the point (`1.0e-2`, `1.0e7`), always with
/// the shortest digits that read back to the same value. Non-finite values
/// print as `Infinity`, `-Infinity` and `NaN` (they never come from [`parse`]
/// and cannot be read back).
fn show_double(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x.is_infinite() {
        return format!("{sign}Infinity");
    }
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Shortest round-trip digits, as `d.ddde<E>`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Haskell's `floatToDigits` exponent: x = 0.d1d2... * 10^e.
    let e = exponent.parse::<i32>().unwrap_or(0) + 1;
    let mut out = String::from(sign);
    if (0..=7).contains(&e) {
        let e = e as usize;
        match (digits.get(..e), digits.get(e..)) {
            (Some(int), Some(frac)) if !frac.is_empty() => {
                out.push_str(if int.is_empty() { "0" } else { int });
                out.push('.');
                out.push_str(frac);
            }
            _ => {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', e.saturating_sub(digits.len())));
                out.push_str(".0");
            }
        }
    } else {
        let (first, rest) = digits.split_at_checked(1).unwrap_or(("0", ""));
        out.push_str(first);
        out.push('.');
        out.push_str(if rest.is_empty() { "0" } else { rest });
        let _ = write!(out, "e{}", e - 1);
    }
    out
}

// ---------------------------------------------------------------------------
// Order and merge

impl ErlTerm {
    fn rank(&self) -> u8 {
        match self {
            ErlTerm::String(_) => 0,
            ErlTerm::Float(_) => 1,
            ErlTerm::Integer(_) => 2,
            ErlTerm::Atom(_) => 3,
            ErlTerm::Char(_) => 4,
            ErlTerm::Binary(_) => 5,
            ErlTerm::List(_) => 6,
            ErlTerm::Tuple(_) => 7,
        }
    }

    /// The structural order of SPEC §3.4 (the original's derived `Ord`):
    /// String < Float < Integer < Atom < Char < Binary < List < Tuple, then
    /// the contents (strings by code point, lists and tuples
    /// lexicographically). It is a total order: `-0.0` equals `0.0`, and NaN
    /// (which [`parse`] never produces) equals itself and sorts after every
    /// other float.
    pub fn structural_cmp(&self, other: &ErlTerm) -> Ordering {
        match (self, other) {
            (ErlTerm::String(a), ErlTerm::String(b))
            | (ErlTerm::Atom(a), ErlTerm::Atom(b))
            | (ErlTerm::Binary(a), ErlTerm::Binary(b)) => a.cmp(b),
            (ErlTerm::Float(a), ErlTerm::Float(b)) => match (a.is_nan(), b.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            },
            (ErlTerm::Integer(a), ErlTerm::Integer(b)) => a.cmp(b),
            (ErlTerm::Char(a), ErlTerm::Char(b)) => a.cmp(b),
            (ErlTerm::List(a), ErlTerm::List(b)) | (ErlTerm::Tuple(a), ErlTerm::Tuple(b)) => {
                for (x, y) in a.iter().zip(b) {
                    let o = x.structural_cmp(y);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Merges two terms like the original's `ErlangPropList` semigroup
/// (SPEC §3.4), used by `ASTMerge`:
///
/// * list + list: both are split into pairs (2-tuples) and non-pairs; the
///   pairs are sorted by key ([`ErlTerm::structural_cmp`], stable) and
///   merge-joined, pairs with equal keys becoming `{key, merge(v1, v2)}`
///   (duplicate keys within one side are matched one-to-one in sorted
///   order). The result is a's non-pairs, a-only pairs, merged pairs, b's
///   non-pairs, b-only pairs.
/// * list + other appends, other + list prepends, otherwise `[a, b]`.
pub fn merge(a: ErlTerm, b: ErlTerm) -> ErlTerm {
    match (a, b) {
        (ErlTerm::List(l1), ErlTerm::List(l2)) => ErlTerm::List(merge_lists(l1, l2)),
        (ErlTerm::List(mut l1), t2) => {
            l1.push(t2);
            ErlTerm::List(l1)
        }
        (t1, ErlTerm::List(l2)) => {
            let mut items = Vec::with_capacity(l2.len() + 1);
            items.push(t1);
            items.extend(l2);
            ErlTerm::List(items)
        }
        (t1, t2) => ErlTerm::List(vec![t1, t2]),
    }
}

/// Splits a list into its `{key, value}` pairs and the other elements.
fn split_pairs(items: Vec<ErlTerm>) -> (Vec<(ErlTerm, ErlTerm)>, Vec<ErlTerm>) {
    let mut pairs = Vec::new();
    let mut others = Vec::new();
    for item in items {
        match item {
            ErlTerm::Tuple(t) if t.len() == 2 => {
                let mut it = t.into_iter();
                if let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
            }
            other => others.push(other),
        }
    }
    pairs.sort_by(|x, y| x.0.structural_cmp(&y.0));
    (pairs, others)
}

fn merge_lists(l1: Vec<ErlTerm>, l2: Vec<ErlTerm>) -> Vec<ErlTerm> {
    let (p1, n1) = split_pairs(l1);
    let (p2, n2) = split_pairs(l2);
    let pair = |k, v| ErlTerm::Tuple(vec![k, v]);
    let mut only1 = Vec::new();
    let mut merged = Vec::new();
    let mut only2 = Vec::new();
    let mut it1 = p1.into_iter().peekable();
    let mut it2 = p2.into_iter().peekable();
    while let (Some(x), Some(y)) = (it1.peek(), it2.peek()) {
        match x.0.structural_cmp(&y.0) {
            Ordering::Less => only1.extend(it1.next().map(|(k, v)| pair(k, v))),
            Ordering::Greater => only2.extend(it2.next().map(|(k, v)| pair(k, v))),
            Ordering::Equal => {
                if let (Some((_, v1)), Some((k, v2))) = (it1.next(), it2.next()) {
                    merged.push(pair(k, merge(v1, v2)));
                }
            }
        }
    }
    only1.extend(it1.map(|(k, v)| pair(k, v)));
    only2.extend(it2.map(|(k, v)| pair(k, v)));
    let mut out = n1;
    out.extend(only1);
    out.extend(merged);
    out.extend(n2);
    out.extend(only2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_words_are_quoted() {
        assert_eq!(
            render(&ErlTerm::Tuple(vec![
                ErlTerm::Atom("end".into()),
                ErlTerm::Atom("ok".into())
            ])),
            "{'end', ok}."
        );
        assert_eq!(parse("'of'."), Ok(ErlTerm::Atom("of".into())));
    }
    use proptest::prelude::*;

    fn s(x: &str) -> ErlTerm {
        ErlTerm::String(x.to_string())
    }
    fn a(x: &str) -> ErlTerm {
        ErlTerm::Atom(x.to_string())
    }
    fn i(x: i128) -> ErlTerm {
        ErlTerm::Integer(x)
    }
    fn l(xs: Vec<ErlTerm>) -> ErlTerm {
        ErlTerm::List(xs)
    }
    fn t(xs: Vec<ErlTerm>) -> ErlTerm {
        ErlTerm::Tuple(xs)
    }
    fn p(text: &str) -> ErlTerm {
        match parse(text) {
            Ok(term) => term,
            Err(e) => panic!("parse of {text:?} failed: {e}"),
        }
    }
    fn err(text: &str) -> ErlError {
        match parse(text) {
            Ok(term) => panic!("parse of {text:?} unexpectedly gave {term:?}"),
            Err(e) => e,
        }
    }

    // ---- parser ---------------------------------------------------------

    #[test]
    fn parses_strings_with_every_escape() {
        assert_eq!(p("\"\"."), s(""));
        assert_eq!(p("\"hello world\"."), s("hello world"));
        assert_eq!(p("\"multi\nline\"."), s("multi\nline"));
        assert_eq!(p(r#""\^a\^A\^z\^Z\^c"."#), s("\x01\x01\x1a\x1a\x03"));
        assert_eq!(p(r#""\x{41}\x{1F600}\x{0000000061}"."#), s("A\u{1F600}a"));
        assert_eq!(p(r#""\x41\x4a\x4A"."#), s("AJJ"));
        assert_eq!(p(r#""\101\0\7\779"."#), s("A\0\x07?9"));
        assert_eq!(
            p(r#""\b\d\e\f\n\r\s\t\v\\\"\'"."#),
            s("\x08\x7f\x1b\x0c\n\r \t\x0b\\\"'")
        );
        assert_eq!(
            p("\"caf\u{e9} % not a comment\"."),
            s("caf\u{e9} % not a comment")
        );
    }

    #[test]
    fn parses_integers() {
        assert_eq!(p("42."), i(42));
        assert_eq!(p("-42."), i(-42));
        assert_eq!(p("+42."), i(42));
        assert_eq!(p("007."), i(7));
        assert_eq!(p("16#ff."), i(255));
        assert_eq!(p("16#FF."), i(255));
        assert_eq!(p("-16#fF."), i(-255));
        assert_eq!(p("2#1010."), i(10));
        assert_eq!(p("8#777."), i(511));
        assert_eq!(p("36#zz."), i(35 * 36 + 35));
        assert_eq!(p("10#99."), i(99));
        assert_eq!(p("170141183460469231731687303715884105727."), i(i128::MAX));
        assert_eq!(p("-170141183460469231731687303715884105728."), i(i128::MIN));
    }

    #[test]
    fn parses_floats() {
        assert_eq!(p("1.5."), ErlTerm::Float(1.5));
        assert_eq!(p("-1.5."), ErlTerm::Float(-1.5));
        assert_eq!(p("+0.25."), ErlTerm::Float(0.25));
        assert_eq!(p("1.5e3."), ErlTerm::Float(1500.0));
        assert_eq!(p("1.5E-3."), ErlTerm::Float(0.0015));
        assert_eq!(p("2.0e+2."), ErlTerm::Float(200.0));
        assert_eq!(p("0.1."), ErlTerm::Float(0.1));
        assert_eq!(p("[1.0e-2, 3]."), l(vec![ErlTerm::Float(0.01), i(3)]));
        // `5.` is the integer 5 followed by the final dot.
        assert_eq!(p("5."), i(5));
    }

    #[test]
    fn parses_chars() {
        assert_eq!(p("$a."), ErlTerm::Char('a'));
        assert_eq!(p("$ ."), ErlTerm::Char(' '));
        assert_eq!(p("$$."), ErlTerm::Char('$'));
        assert_eq!(p("$%."), ErlTerm::Char('%'));
        assert_eq!(p(r"$\n."), ErlTerm::Char('\n'));
        assert_eq!(p(r"$\'."), ErlTerm::Char('\''));
        assert_eq!(p(r"$\x{263a}."), ErlTerm::Char('\u{263a}'));
        assert_eq!(p("$\u{e9}."), ErlTerm::Char('\u{e9}'));
        assert_eq!(
            p("[$ , $,]."),
            l(vec![ErlTerm::Char(' '), ErlTerm::Char(',')])
        );
    }

    #[test]
    fn parses_atoms() {
        assert_eq!(p("ok."), a("ok"));
        assert_eq!(p("node@host_1."), a("node@host_1"));
        assert_eq!(p("aB9."), a("aB9"));
        assert_eq!(p("'Hello World'."), a("Hello World"));
        assert_eq!(p(r"'it\'s'."), a("it's"));
        assert_eq!(p(r"'a\\b\x{e9}'."), a("a\\b\u{e9}"));
        assert_eq!(p("''."), a(""));
        assert_eq!(p("'_'."), a("_"));
        assert_eq!(p("'\"'."), a("\""));
        // Parsec's `lower`/`alphaNum` accept Unicode letters, so do we.
        assert_eq!(p("caf\u{e9}."), a("caf\u{e9}"));
    }

    #[test]
    fn parses_binaries() {
        assert_eq!(p("<<>>."), ErlTerm::Binary(String::new()));
        assert_eq!(p("<< >>."), ErlTerm::Binary(String::new()));
        assert_eq!(p("<<\"abc\">>."), ErlTerm::Binary("abc".into()));
        assert_eq!(p("<< \"a\\nb\" >>."), ErlTerm::Binary("a\nb".into()));
        assert_eq!(p("<<\"\">>."), ErlTerm::Binary(String::new()));
    }

    #[test]
    fn parses_lists_and_tuples() {
        assert_eq!(p("[]."), l(vec![]));
        assert_eq!(p("[ ]."), l(vec![]));
        assert_eq!(p("{}."), t(vec![]));
        assert_eq!(p("[a,b]."), l(vec![a("a"), a("b")]));
        assert_eq!(p("[ a , b ]."), l(vec![a("a"), a("b")]));
        assert_eq!(p("{ok, 1}."), t(vec![a("ok"), i(1)]));
        // One trailing comma is accepted, as by the original.
        assert_eq!(p("[a,]."), l(vec![a("a")]));
        assert_eq!(p("{a, }."), t(vec![a("a")]));
        assert_eq!(
            p("[{kernel,[{inet_dist_listen_min,9100},{x,<<\"y\">>}]},{sasl,[]}]."),
            l(vec![
                t(vec![
                    a("kernel"),
                    l(vec![
                        t(vec![a("inet_dist_listen_min"), i(9100)]),
                        t(vec![a("x"), ErlTerm::Binary("y".into())]),
                    ]),
                ]),
                t(vec![a("sasl"), l(vec![])]),
            ])
        );
        assert_eq!(p("[[[]]]."), l(vec![l(vec![l(vec![])])]));
        assert_eq!(p("{[{}]}."), t(vec![l(vec![t(vec![])])]));
    }

    #[test]
    fn whitespace_and_comments() {
        assert_eq!(p(" \n\t ok."), a("ok"));
        assert_eq!(p("ok.\n\n"), a("ok"));
        // Lenient: the original rejects whitespace before a top-level '.'.
        assert_eq!(p("ok ."), a("ok"));
        assert_eq!(p("[a] .\n"), l(vec![a("a")]));
        assert_eq!(p("[\n  a\n  ,\n  b\n]."), l(vec![a("a"), a("b")]));
        let text =
            "%% sys.config\n[ % first\n  a, % the a\n  %% whole line\n  b\n] % done\n.\n% trailer";
        assert_eq!(p(text), l(vec![a("a"), a("b")]));
        assert_eq!(p("ok.%"), a("ok"));
    }

    #[test]
    fn errors_name_position_and_expectation() {
        let e = err("ok");
        assert_eq!((e.offset, e.line, e.column), (2, 1, 3));
        assert!(e.message.contains("expected '.'"), "{}", e.message);
        assert!(e.message.contains("end of input"), "{}", e.message);

        let e = err("[a b].");
        assert_eq!((e.offset, e.line, e.column), (3, 1, 4));
        assert!(e.message.contains("expected ',' or ']'"), "{}", e.message);

        let e = err("{a b}.");
        assert!(e.message.contains("',' or '}'"), "{}", e.message);

        let e = err("[a,\n  ,b].");
        assert_eq!((e.offset, e.line, e.column), (6, 2, 3));
        assert!(e.message.contains("an Erlang term or ']'"), "{}", e.message);

        let e = err("\"abc");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("unterminated string"), "{}", e.message);

        let e = err("'abc");
        assert!(e.message.contains("unterminated atom"), "{}", e.message);

        let e = err("ok. extra");
        assert_eq!((e.offset, e.line, e.column), (4, 1, 5));
        assert!(e.message.contains("after the final '.'"), "{}", e.message);

        let e = err("[\"\u{e9}\\z\"].");
        assert_eq!((e.offset, e.line, e.column), (4, 1, 4));
        assert!(e.message.contains("unknown escape"), "{}", e.message);

        for bad in [
            "\"\\^1\".",
            "\"\\x{}\".",
            "\"\\x{41\".",
            "\"\\xg0\".",
            "\"\\",
        ] {
            let e = err(bad);
            assert_eq!(e.line, 1, "{bad}");
        }
        let e = err("\"\\x{110000}\".");
        assert!(
            e.message.contains("not a Unicode scalar value"),
            "{}",
            e.message
        );
        let e = err("\"\\x{d800}\".");
        assert!(
            e.message.contains("not a Unicode scalar value"),
            "{}",
            e.message
        );

        let e = err("37#1.");
        assert!(e.message.contains("invalid radix"), "{}", e.message);
        let e = err("1#1.");
        assert!(e.message.contains("invalid radix"), "{}", e.message);
        let e = err("16#.");
        assert!(e.message.contains("base-16 digit"), "{}", e.message);
        let e = err("2#2.");
        assert!(e.message.contains("base-2 digit"), "{}", e.message);
        let e = err("1.5e.");
        assert!(e.message.contains("exponent"), "{}", e.message);
        let e = err(".5.");
        assert!(e.message.contains("0.5"), "{}", e.message);
        let e = err("[-.5].");
        assert!(e.message.contains("0.5"), "{}", e.message);
        let e = err("1.0e999.");
        assert!(e.message.contains("out of range"), "{}", e.message);
        let e = err("170141183460469231731687303715884105728.");
        assert!(e.message.contains("out of range"), "{}", e.message);
        let e = err("-.");
        assert!(e.message.contains("expected a digit"), "{}", e.message);

        let e = err("<<a>>.");
        assert!(e.message.contains("<<\"string\">>"), "{}", e.message);
        let e = err("<<\"a\".");
        assert!(e.message.contains("'>>'"), "{}", e.message);
        let e = err("<a.");
        assert!(e.message.contains("'<<'"), "{}", e.message);

        let e = err("$");
        assert!(e.message.contains("after '$'"), "{}", e.message);
        let e = err("");
        assert!(
            e.message.contains("expected an Erlang term"),
            "{}",
            e.message
        );
        let e = err("Var.");
        assert!(
            e.message.contains("expected an Erlang term"),
            "{}",
            e.message
        );
        let e = err("#{a => 1}.");
        assert_eq!(e.offset, 0);
        let e = err("[,].");
        assert_eq!(e.offset, 1);
        let e = err("[a,,].");
        assert_eq!(e.offset, 3);

        let e = err("[a,\n b\n");
        assert_eq!((e.line, e.column), (3, 1));
        assert!(e.to_string().starts_with("line 3, column 1: "), "{e}");
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}.", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let term = p(&ok);
        let rendered = render(&term);
        assert_eq!(rendered.len(), 2 * MAX_DEPTH + 1);
        assert_eq!(p(&rendered), term);

        let deep = MAX_DEPTH + 1;
        let too_deep = format!("{}{}.", "{".repeat(deep), "}".repeat(deep));
        let e = err(&too_deep);
        assert_eq!(e.offset, MAX_DEPTH);
        assert!(e.message.contains("nested too deeply"), "{}", e.message);

        // Far deeper unterminated input fails cleanly too.
        let e = err(&"[".repeat(1_000_000));
        assert_eq!(e.offset, MAX_DEPTH);
    }

    // ---- renderer -------------------------------------------------------

    #[test]
    fn renders_scalars() {
        assert_eq!(render(&ErlTerm::Binary(String::new())), "<<>>.");
        assert_eq!(render(&ErlTerm::Binary("a\"b".into())), "<<\"a\\\"b\">>.");
        assert_eq!(render(&ErlTerm::Char('a')), "$a.");
        assert_eq!(render(&ErlTerm::Char(' ')), "$ .");
        assert_eq!(render(&ErlTerm::Char('\'')), "$\\'.");
        assert_eq!(render(&ErlTerm::Char('"')), "$\".");
        assert_eq!(render(&ErlTerm::Char('\\')), "$\\\\.");
        assert_eq!(render(&ErlTerm::Char('\n')), "$\\x{a}.");
        assert_eq!(render(&ErlTerm::Char('\u{263a}')), "$\\x{263a}.");
        assert_eq!(render(&i(42)), "42.");
        assert_eq!(render(&i(-7)), "-7.");
        assert_eq!(render(&i(i128::MIN)), format!("{}.", i128::MIN));
    }

    #[test]
    fn renders_atoms() {
        assert_eq!(render(&a("ok")), "ok.");
        assert_eq!(render(&a("node@host_1X")), "node@host_1X.");
        assert_eq!(render(&a("Ok")), "'Ok'.");
        assert_eq!(render(&a("hello world")), "'hello world'.");
        assert_eq!(render(&a("it's")), "'it\\'s'.");
        assert_eq!(render(&a("a\\b")), "'a\\\\b'.");
        assert_eq!(render(&a("")), "''.");
        assert_eq!(render(&a("_")), "'_'.");
        assert_eq!(render(&a("9lives")), "'9lives'.");
        assert_eq!(render(&a("a-b")), "'a-b'.");
        assert_eq!(render(&a("tab\there")), "'tab\\x{9}here'.");
        assert_eq!(render(&a("caf\u{e9}")), "'caf\\x{e9}'.");
        assert_eq!(render(&a("\"")), "'\"'.");
    }

    #[test]
    fn renders_strings() {
        assert_eq!(render(&s("")), "\"\".");
        assert_eq!(render(&s("plain 'text' %")), "\"plain 'text' %\".");
        assert_eq!(
            render(&s("q\"b\\n\nt\tdel\x7f\u{e9}\u{1F600}\0")),
            "\"q\\\"b\\\\n\\x{a}t\\x{9}del\\x{7f}\\x{e9}\\x{1f600}\\x{0}\"."
        );
    }

    #[test]
    fn renders_floats_like_haskell_show() {
        let cases: [(f64, &str); 20] = [
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.01, "1.0e-2"),
            (0.001, "1.0e-3"),
            (1.23e-5, "1.23e-5"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.3, "0.3"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-2.5, "-2.5"),
            (123456.789, "123456.789"),
            (9999999.0, "9999999.0"),
            (1.0e7, "1.0e7"),
            (12345678.9, "1.23456789e7"),
            (1.0e22, "1.0e22"),
            (5.0e-324, "5.0e-324"),
            (f64::MAX, "1.7976931348623157e308"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(render(&ErlTerm::Float(x)), format!("{want}."), "{x:e}");
        }
        assert_eq!(render(&ErlTerm::Float(f64::NAN)), "NaN.");
    }

    #[test]
    fn renders_short_lists_and_tuples_on_one_line() {
        assert_eq!(render(&l(vec![])), "[].");
        assert_eq!(render(&t(vec![])), "{}.");
        assert_eq!(render(&l(vec![a("a"), i(1), s("x")])), "[a, 1, \"x\"].");
        assert_eq!(render(&t(vec![a("ok"), l(vec![t(vec![])])])), "{ok, [{}]}.");
    }

    fn items(n: usize) -> Vec<ErlTerm> {
        (1..=n).map(|k| a(&format!("item{k:02}"))).collect()
    }

    #[test]
    fn long_lists_break_one_element_per_line() {
        let want: String = (1..=12)
            .map(|k| format!("item{k:02}"))
            .collect::<Vec<_>>()
            .join(",\n ");
        assert_eq!(render(&l(items(12))), format!("[{want}]."));
        assert_eq!(render(&t(items(12))), format!("{{{want}}}."));

        // The first element stays on the bracket's line and breaks itself.
        let inner = want.replace('\n', "\n ");
        assert_eq!(
            render(&l(vec![l(items(12)), a("b")])),
            format!("[[{inner}],\n b].")
        );
    }

    #[test]
    fn ribbon_of_67_characters_decides_at_indent_0() {
        let fits = l(vec![a("a"), s(&"x".repeat(59))]);
        let rendered = render(&fits);
        assert_eq!(rendered.len(), 67);
        assert!(!rendered.contains('\n'));

        let too_long = l(vec![a("a"), s(&"x".repeat(60))]);
        assert_eq!(render(&too_long), format!("[a,\n \"{}\"].", "x".repeat(60)));
    }

    #[test]
    fn nested_proplist_aligns_after_the_bracket() {
        let term = p(
            "[{kernel, [{inet_dist_listen_min, 9100}, {inet_dist_listen_max, 9200}, \
                      {logger_level, info}]}].",
        );
        assert_eq!(
            render(&term),
            "[{kernel,\n  [{inet_dist_listen_min, 9100},\n   {inet_dist_listen_max, 9200},\n   \
             {logger_level, info}]}]."
        );
    }

    #[test]
    fn line_length_of_100_decides_at_deep_indentation() {
        // 40 single-element lists around [b, X, c]: X starts a line indented
        // by 41 columns, where only 100 - 41 = 59 columns are left (less than
        // the ribbon of 67). X is followed by ','.
        fn wrapped(x: ErlTerm) -> ErlTerm {
            let mut term = l(vec![a("b"), x, a("c")]);
            for _ in 0..40 {
                term = l(vec![term]);
            }
            term
        }
        let pad = " ".repeat(41);
        let close = format!("c{}.", "]".repeat(41));
        // flat X is 58 characters + ',' = 59: fits.
        let x = l(vec![s(&"s".repeat(25)), s(&"t".repeat(25))]);
        let flat_x = format!("[\"{}\", \"{}\"]", "s".repeat(25), "t".repeat(25));
        assert_eq!(flat_x.len(), 58);
        assert_eq!(
            render(&wrapped(x)),
            format!("{}b,\n{pad}{flat_x},\n{pad}{close}", "[".repeat(41))
        );
        // flat X is 59 characters + ',' = 60: breaks.
        let x = l(vec![s(&"s".repeat(25)), s(&"t".repeat(26))]);
        assert_eq!(
            render(&wrapped(x)),
            format!(
                "{}b,\n{pad}[\"{}\",\n{pad} \"{}\"],\n{pad}{close}",
                "[".repeat(41),
                "s".repeat(25),
                "t".repeat(26)
            )
        );
    }

    // ---- merge ----------------------------------------------------------

    fn m(x: &str, y: &str) -> String {
        render(&merge(p(x), p(y)))
    }

    #[test]
    fn merges_lists_and_primitives() {
        assert_eq!(m("[a].", "[123]."), "[a, 123].");
        assert_eq!(m("[a,b,c].", "{ok,value}."), "[a, b, c, {ok, value}].");
        assert_eq!(m("{ok,value}.", "[a,b]."), "[{ok, value}, a, b].");
        assert_eq!(m("a.", "b."), "[a, b].");
        assert_eq!(m("[].", "[]."), "[].");
        assert_eq!(m("\"x\".", "1."), "[\"x\", 1].");
    }

    #[test]
    fn merge_result_order() {
        assert_eq!(
            m(
                "[x, {b,1}, y, {a,1}, {c,1}, {t,1,2}].",
                "[z, {d,1}, {c,2}, w]."
            ),
            "[x, y, {t, 1, 2}, {a, 1}, {b, 1}, {c, [1, 2]}, z, w, {d, 1}]."
        );
        // Duplicate keys on one side are matched one-to-one in sorted order.
        assert_eq!(m("[{k,1},{k,2}].", "[{k,3}]."), "[{k, 2}, {k, [1, 3]}].");
        assert_eq!(
            m("[{k,1},{k,2}].", "[{k,3},{k,4}]."),
            "[{k, [1, 3]}, {k, [2, 4]}]."
        );
        // The merged pair takes the right-hand key; -0.0 and 0.0 are equal.
        assert_eq!(m("[{0.0,a}].", "[{-0.0,b}]."), "[{-0.0, [a, b]}].");
    }

    #[test]
    fn merge_sorts_keys_structurally() {
        let keys = [
            "{t}", "[l]", "<<>>", "$c", "b", "a", "2", "1", "2.0", "1.0", "\"s\"",
        ];
        let list = format!(
            "[{}].",
            keys.iter()
                .map(|k| format!("{{{k}, v}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(
            m(&list, "[]."),
            "[{\"s\", v},\n {1.0, v},\n {2.0, v},\n {1, v},\n {2, v},\n {a, v},\n {b, v},\n {$c, v},\n \
             {<<>>, v},\n {[l], v},\n {{t}, v}]."
        );
        assert_eq!(a("a").structural_cmp(&a("b")), Ordering::Less);
        assert_eq!(s("z").structural_cmp(&ErlTerm::Float(0.0)), Ordering::Less);
        assert_eq!(
            l(vec![i(1)]).structural_cmp(&l(vec![i(1), i(0)])),
            Ordering::Less
        );
        assert_eq!(
            t(vec![i(2)]).structural_cmp(&t(vec![i(1), i(0)])),
            Ordering::Greater
        );
        assert_eq!(
            ErlTerm::Float(f64::NAN).structural_cmp(&ErlTerm::Float(f64::INFINITY)),
            Ordering::Greater
        );
    }

    #[test]
    fn merges_sys_config_proplists() {
        let base = "%% base.config\n\
                    [{kernel, [{inet_dist_listen_min, 9000}, {logger_level, info}]},\n \
                    {sasl, [{errlog_type, error}]}].\n";
        let overlay = "[{kernel, [{inet_dist_listen_max, 9200}]}, {ssl, []}].";
        assert_eq!(
            m(base, overlay),
            "[{sasl, [{errlog_type, error}]},\n {kernel,\n  [{inet_dist_listen_min, 9000},\n   \
             {logger_level, info},\n   {inet_dist_listen_max, 9200}]},\n {ssl, []}]."
        );
        // Equal keys with scalar values become a list of both (SPEC §3.4).
        assert_eq!(
            m(
                "[{kernel, [{inet_dist_listen_min, 9000}]}].",
                "[{kernel, [{inet_dist_listen_min, 9100}]}]."
            ),
            "[{kernel, [{inet_dist_listen_min, [9000, 9100]}]}]."
        );
    }

    // ---- properties -----------------------------------------------------

    fn any_term() -> impl Strategy<Value = ErlTerm> {
        let leaf = prop_oneof![
            any::<String>().prop_map(ErlTerm::String),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(ErlTerm::Float),
            any::<i128>().prop_map(ErlTerm::Integer),
            any::<String>().prop_map(ErlTerm::Atom),
            "[a-z][a-zA-Z0-9@_]{0,8}".prop_map(ErlTerm::Atom),
            any::<char>().prop_map(ErlTerm::Char),
            any::<String>().prop_map(ErlTerm::Binary),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(ErlTerm::List),
                prop::collection::vec(inner, 0..8).prop_map(ErlTerm::Tuple),
            ]
        })
    }

    fn proplist(keys: &std::collections::BTreeSet<u8>, tag: i128) -> ErlTerm {
        l(keys
            .iter()
            .map(|k| t(vec![a(&format!("k{k}")), i(tag)]))
            .collect())
    }

    proptest! {
        #[test]
        fn parse_inverts_render(term in any_term()) {
            let text = render(&term);
            prop_assert_eq!(parse(&text), Ok(term), "rendered: {}", text);
        }

        #[test]
        fn merged_proplist_length(
            left in prop::collection::btree_set(0u8..20, 0..15),
            right in prop::collection::btree_set(0u8..20, 0..15),
        ) {
            let common = left.intersection(&right).count();
            let merged = merge(proplist(&left, 1), proplist(&right, 2));
            let ErlTerm::List(items) = merged else {
                return Err(TestCaseError::fail("merge of lists is not a list"));
            };
            prop_assert_eq!(items.len(), left.len() + right.len() - common);
        }

        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_term_like_input(
            text in "[\\[\\]{}a-zA-Z0-9$\"'\\\\., <>#%\n^xe+\\-_@]{0,60}"
        ) {
            if let Ok(term) = parse(&text) {
                prop_assert_eq!(parse(&render(&term)), Ok(term));
            }
        }
    }
}
