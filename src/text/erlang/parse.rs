//! The Erlang term parser (the rules and the differences from the original
//! are listed in [`super`]).

use std::fmt;

use super::ErlTerm;

/// Deepest nesting of lists and tuples that [`parse`] accepts.
pub const MAX_DEPTH: usize = 1000;

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

/// Text after the final `.` of a term file: the original b9 ignored it, so
/// b9 does too, and says where it starts (docs/COMPATIBILITY.md#erlang-terms).
#[derive(Clone, Debug, PartialEq)]
pub struct Trailing {
    /// Byte offset of its first character in the input.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (counted in characters).
    pub column: usize,
}

/// Parses a whole Erlang term file: optional leading whitespace, one term,
/// `.`; whatever follows the `.` besides whitespace and `%` comments is
/// ignored and returned as [`Trailing`].
///
/// Never panics; the nesting of lists and tuples is limited to [`MAX_DEPTH`].
pub fn parse_document(text: &str) -> Result<(ErlTerm, Option<Trailing>), ErlError> {
    let mut p = Parser { src: text, pos: 0 };
    p.skip_ws();
    let term = p.term()?;
    p.skip_ws();
    if !p.eat('.') {
        return Err(p.expected_here("'.' after the term"));
    }
    p.skip_ws();
    let trailing = (p.pos < p.src.len()).then(|| {
        let at = p.error_here(String::new());
        Trailing {
            offset: at.offset,
            line: at.line,
            column: at.column,
        }
    });
    Ok((term, trailing))
}

/// [`parse_document`] without the trailing text.
pub fn parse(text: &str) -> Result<ErlTerm, ErlError> {
    parse_document(text).map(|(term, _)| term)
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
