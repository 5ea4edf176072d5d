//! Lexer for the Haskell-literal syntax of `.b9` files (and of `b9.conf` values).
//!
//! Produces tokens with their spans; comments (`--` to end of line, nested
//! `{- -}`) are kept as trivia attached to tokens: a comment that starts on the
//! line where the previous token ends trails that token, any other comment leads
//! the next token.

use std::collections::VecDeque;

use crate::diag::source::Span;

/// The kinds of token.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// An identifier: a constructor (`Artifact`, `True`) or a record field name.
    Ident(String),
    /// A string literal, escapes resolved.
    Str(String),
    /// A character literal, escape resolved.
    Char(char),
    /// An integer literal (decimal, `0x`, `0o`).
    Int(i128),
    /// A floating-point literal.
    Float(f64),
    /// `-`
    Minus,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `=`
    Equals,
    /// End of input.
    Eof,
}

impl TokenKind {
    /// How the token is named in "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Ident(s) => format!("`{s}`"),
            TokenKind::Str(_) => "a string".into(),
            TokenKind::Char(_) => "a character".into(),
            TokenKind::Int(_) => "a number".into(),
            TokenKind::Float(_) => "a number".into(),
            TokenKind::Minus => "`-`".into(),
            TokenKind::LParen => "`(`".into(),
            TokenKind::RParen => "`)`".into(),
            TokenKind::LBracket => "`[`".into(),
            TokenKind::RBracket => "`]`".into(),
            TokenKind::LBrace => "`{`".into(),
            TokenKind::RBrace => "`}`".into(),
            TokenKind::Comma => "`,`".into(),
            TokenKind::Equals => "`=`".into(),
            TokenKind::Eof => "the end of the file".into(),
        }
    }
}

/// A comment kept for the printer, with its delimiters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// The comment text as written (`-- ...` or `{- ... -}`).
    pub text: String,
}

/// A token and the comments around it.
#[derive(Clone, Debug)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Where it is.
    pub span: Span,
    /// Comments on lines before it.
    pub leading: Vec<Comment>,
    /// Comments after it on the same line.
    pub trailing: Vec<Comment>,
}

/// A lexical error.
#[derive(Clone, Debug, PartialEq)]
pub struct LexError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// Splits `text` into tokens; the last token is always [`TokenKind::Eof`].
#[cfg(test)]
pub fn tokenize(text: &str) -> Result<Vec<Token>, LexError> {
    let mut tokens = Tokens::new(text);
    let mut out = Vec::new();
    loop {
        let tok = tokens.bump();
        let end = tok.kind == TokenKind::Eof;
        out.push(tok);
        if let Some(e) = tokens.error() {
            return Err(e.clone());
        }
        if end {
            return Ok(out);
        }
    }
}

/// Tokens made on demand, a few ahead of the reader, so a large text never
/// has all its tokens in memory at once. After the end, or after a lexical
/// error (see [`Tokens::error`]), every token is [`TokenKind::Eof`].
pub struct Tokens<'a> {
    lx: Lexer<'a>,
    /// The end was reached (or an error met): no more tokens will be made.
    done: bool,
    error: Option<LexError>,
}

impl<'a> Tokens<'a> {
    /// Tokens of `text`.
    pub fn new(text: &'a str) -> Tokens<'a> {
        Tokens {
            lx: Lexer {
                text,
                pos: 0,
                tokens: VecDeque::new(),
                pending: Vec::new(),
                newline_since_token: true,
            },
            done: false,
            error: None,
        }
    }

    /// The token `n` places ahead (0: the next one).
    pub fn peek(&mut self, n: usize) -> &Token {
        // A token is complete once the one after it exists: a comment on
        // its line may still trail it until then.
        while !self.done && self.lx.tokens.len() < n + 2 {
            match self.lx.step() {
                Ok(more) => self.done = !more,
                Err(e) => {
                    self.lx.tokens.clear();
                    self.lx.pos = e.span.start;
                    self.lx.push(TokenKind::Eof, e.span.start);
                    self.error = Some(e);
                    self.done = true;
                }
            }
        }
        let last = self.lx.tokens.len() - 1;
        &self.lx.tokens[n.min(last)]
    }

    /// The next token, consumed; the final `Eof` is never consumed.
    pub fn bump(&mut self) -> Token {
        let tok = self.peek(0).clone();
        if tok.kind != TokenKind::Eof {
            self.lx.tokens.pop_front();
        }
        tok
    }

    /// The lexical error met, if any.
    pub fn error(&self) -> Option<&LexError> {
        self.error.as_ref()
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    /// Made but not yet consumed, in order.
    tokens: VecDeque<Token>,
    pending: Vec<Comment>,
    newline_since_token: bool,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.text[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err<T>(&self, start: usize, message: impl Into<String>) -> Result<T, LexError> {
        Err(LexError {
            message: message.into(),
            span: Span::new(
                start,
                self.pos.max(start + 1).min(self.text.len().max(start)),
            ),
        })
    }

    fn comment(&mut self, start: usize) {
        let comment = Comment {
            text: self.text[start..self.pos].trim_end().to_string(),
        };
        match self.tokens.back_mut() {
            Some(prev) if !self.newline_since_token && self.pending.is_empty() => {
                prev.trailing.push(comment)
            }
            _ => self.pending.push(comment),
        }
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push_back(Token {
            kind,
            span: Span::new(start, self.pos),
            leading: std::mem::take(&mut self.pending),
            trailing: Vec::new(),
        });
        self.newline_since_token = false;
    }

    /// Makes the next token; false once `Eof` is made.
    fn step(&mut self) -> Result<bool, LexError> {
        let made = self.tokens.len();
        while let Some(c) = self.peek() {
            if self.tokens.len() > made {
                return Ok(true);
            }
            let start = self.pos;
            match c {
                '\n' => {
                    self.bump();
                    self.newline_since_token = true;
                }
                c if c.is_whitespace() => {
                    self.bump();
                }
                '-' if self.peek_at(1) == Some('-') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                    self.comment(start);
                }
                '{' if self.peek_at(1) == Some('-') => {
                    self.block_comment(start)?;
                    self.comment(start);
                }
                '(' | ')' | '[' | ']' | '{' | '}' | ',' | '=' | '-' => {
                    self.bump();
                    let kind = match c {
                        '(' => TokenKind::LParen,
                        ')' => TokenKind::RParen,
                        '[' => TokenKind::LBracket,
                        ']' => TokenKind::RBracket,
                        '{' => TokenKind::LBrace,
                        '}' => TokenKind::RBrace,
                        ',' => TokenKind::Comma,
                        '=' => TokenKind::Equals,
                        _ => TokenKind::Minus,
                    };
                    self.push(kind, start);
                }
                '"' => {
                    let s = self.string()?;
                    self.push(TokenKind::Str(s), start);
                }
                '\'' => {
                    let ch = self.char_literal()?;
                    self.push(TokenKind::Char(ch), start);
                }
                c if c.is_ascii_digit() => {
                    let kind = self.number()?;
                    self.push(kind, start);
                }
                c if c.is_alphabetic() || c == '_' => {
                    while self
                        .peek()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '\'')
                    {
                        self.bump();
                    }
                    let name = self.text[start..self.pos].to_string();
                    self.push(TokenKind::Ident(name), start);
                }
                other => {
                    self.bump();
                    return self.err(start, format!("unexpected character `{other}`"));
                }
            }
        }
        if self.tokens.len() > made {
            return Ok(true);
        }
        let end = self.text.len();
        self.pos = end;
        self.push(TokenKind::Eof, end);
        Ok(false)
    }

    fn block_comment(&mut self, start: usize) -> Result<(), LexError> {
        let mut depth = 0usize;
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some('{'), Some('-')) => {
                    self.pos += 2;
                    depth += 1;
                }
                (Some('-'), Some('}')) => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => {
                    self.bump();
                }
                (None, _) => {
                    self.pos = start + 2;
                    return self.err(start, "unterminated block comment: `{-` without `-}`");
                }
            }
        }
    }

    fn number(&mut self) -> Result<TokenKind, LexError> {
        let start = self.pos;
        let radix = match (self.peek(), self.peek_at(1)) {
            (Some('0'), Some('x' | 'X'))
                if self.peek_at(2).is_some_and(|c| c.is_ascii_hexdigit()) =>
            {
                16
            }
            (Some('0'), Some('o' | 'O')) if self.peek_at(2).is_some_and(|c| c.is_digit(8)) => 8,
            _ => 10,
        };
        if radix != 10 {
            self.pos += 2;
            let digits_start = self.pos;
            while self.peek().is_some_and(|c| c.is_digit(radix)) {
                self.bump();
            }
            return match i128::from_str_radix(&self.text[digits_start..self.pos], radix) {
                Ok(n) => Ok(TokenKind::Int(n)),
                Err(_) => self.err(start, "number too large"),
            };
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let mut float = false;
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            float = true;
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                float = true;
                self.pos += 1 + sign;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
            }
        }
        let text = &self.text[start..self.pos];
        if float {
            match text.parse::<f64>() {
                Ok(x) => Ok(TokenKind::Float(x)),
                Err(_) => self.err(start, "malformed number"),
            }
        } else {
            match text.parse::<i128>() {
                Ok(n) => Ok(TokenKind::Int(n)),
                Err(_) => self.err(start, "number too large"),
            }
        }
    }

    fn string(&mut self) -> Result<String, LexError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => {
                    self.pos = start + 1;
                    return self.err(start, "unterminated string literal: missing closing `\"`");
                }
                Some('"') => return Ok(out),
                Some('\\') => {
                    if self.peek().is_some_and(char::is_whitespace) {
                        self.string_gap()?;
                    } else if self.peek() == Some('&') {
                        self.bump();
                    } else {
                        out.push(self.escape()?);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn string_gap(&mut self) -> Result<(), LexError> {
        let start = self.pos - 1;
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        if self.bump() == Some('\\') {
            Ok(())
        } else {
            self.err(
                start,
                "unterminated string gap: whitespace after `\\` must end with `\\`",
            )
        }
    }

    fn char_literal(&mut self) -> Result<char, LexError> {
        let start = self.pos;
        self.bump();
        let c = match self.bump() {
            Some('\\') => self.escape()?,
            Some('\'') | Some('\n') | None => {
                return self.err(start, "empty or unterminated character literal")
            }
            Some(c) => c,
        };
        if self.bump() == Some('\'') {
            Ok(c)
        } else {
            self.err(start, "unterminated character literal: missing closing `'`")
        }
    }

    /// The character of an escape; `self.pos` is just after the backslash.
    fn escape(&mut self) -> Result<char, LexError> {
        let start = self.pos - 1;
        let Some(c) = self.bump() else {
            return self.err(start, "unterminated escape at end of file");
        };
        let simple = match c {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let numeric = |lx: &mut Self, radix: u32| -> Result<char, LexError> {
            let digits_start = lx.pos;
            while lx.peek().is_some_and(|c| c.is_digit(radix)) {
                lx.bump();
            }
            let digits = &lx.text[digits_start..lx.pos];
            u32::from_str_radix(digits, radix)
                .ok()
                .and_then(char::from_u32)
                .map_or_else(
                    || {
                        lx.err(
                            start,
                            format!("invalid numeric escape `\\{}`", &lx.text[start + 1..lx.pos]),
                        )
                    },
                    Ok,
                )
        };
        match c {
            d if d.is_ascii_digit() => {
                self.pos -= 1;
                numeric(self, 10)
            }
            'x' if self.peek().is_some_and(|c| c.is_ascii_hexdigit()) => numeric(self, 16),
            'o' if self.peek().is_some_and(|c| c.is_digit(8)) => numeric(self, 8),
            '^' => match self.bump() {
                Some(c @ '@'..='_') => Ok(char::from(c as u8 - b'@')),
                _ => self.err(
                    start,
                    "invalid control escape: `\\^` must be followed by one of @A-Z[\\]^_",
                ),
            },
            c if c.is_ascii_uppercase() => {
                let rest = &self.text[self.pos - 1..];
                // Longest match first: "SOH" must win over "SO".
                let found = ASCII_NAMES
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| rest.starts_with(*name))
                    .max_by_key(|(_, name)| name.len());
                match found {
                    Some((code, name)) => {
                        self.pos += name.len() - 1;
                        Ok(char::from(if *name == "DEL" { 127 } else { code as u8 }))
                    }
                    None => self.err(start, format!("unknown escape `\\{c}`")),
                }
            }
            other => self.err(start, format!("unknown escape `\\{other}` in a string")),
        }
    }
}

/// ASCII mnemonics of Haskell escapes, indexed by code (DEL handled apart).
const ASCII_NAMES: [&str; 34] = [
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR",
    "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC",
    "FS", "GS", "RS", "US", "SP", "DEL",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .map(|ts| ts.into_iter().map(|t| t.kind).collect())
            .unwrap_or_default()
    }

    fn string(text: &str) -> String {
        match kinds(text).first() {
            Some(TokenKind::Str(s)) => s.clone(),
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn haskell_string_escapes() {
        assert_eq!(string(r#""a\"b\\c\n\t\r""#), "a\"b\\c\n\t\r");
        assert_eq!(string(r#""\a\b\f\v\0""#), "\x07\x08\x0c\x0b\0");
        assert_eq!(string(r#""\123\x7F\o17\^A\^@""#), "{\x7f\x0f\x01\0");
        assert_eq!(string(r#""\NUL\SOH\SO\DEL\ESC\SP""#), "\0\x01\x0e\x7f\x1b ");
        assert_eq!(string(r#""\SOH""#), "\x01");
        assert_eq!(string(r#""\1234\&5""#), "\u{4d2}5");
        assert_eq!(string("\"ab\\  \n  \\cd\""), "abcd");
        assert_eq!(string("\"grüße\""), "grüße");
    }

    #[test]
    fn bad_escapes_and_unterminated_strings() {
        let e = tokenize(r#"  "\q""#).unwrap_err();
        assert!(e.message.contains("unknown escape `\\q`"), "{}", e.message);
        assert_eq!(e.span.start, 3);
        let e = tokenize("x \"abc\n").unwrap_err();
        assert!(e.message.contains("unterminated string"));
        assert_eq!(e.span.start, 2);
        assert!(tokenize("{- a {- b -} c").is_err());
        assert!(tokenize(r#""\x110000""#).is_err());
    }

    #[test]
    fn numbers_and_punctuation() {
        assert_eq!(
            kinds("(-1) 0x1F 0o17 1.5 1.0e-2 2e3 [a,b]"),
            vec![
                TokenKind::LParen,
                TokenKind::Minus,
                TokenKind::Int(1),
                TokenKind::RParen,
                TokenKind::Int(31),
                TokenKind::Int(15),
                TokenKind::Float(1.5),
                TokenKind::Float(0.01),
                TokenKind::Float(2000.0),
                TokenKind::LBracket,
                TokenKind::Ident("a".into()),
                TokenKind::Comma,
                TokenKind::Ident("b".into()),
                TokenKind::RBracket,
                TokenKind::Eof,
            ]
        );
        assert_eq!(
            kinds("'x' '\\n' '\\''"),
            vec![
                TokenKind::Char('x'),
                TokenKind::Char('\n'),
                TokenKind::Char('\''),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn comments_lead_or_trail() {
        let ts = tokenize("-- head\nA -- tail\n {- x {- nested -} -} B {- same -}\n-- end\n")
            .unwrap_or_default();
        assert_eq!(ts.len(), 3);
        assert_eq!(
            ts[0].leading,
            vec![Comment {
                text: "-- head".into()
            }]
        );
        assert_eq!(
            ts[0].trailing,
            vec![Comment {
                text: "-- tail".into()
            }]
        );
        assert_eq!(ts[1].leading[0].text, "{- x {- nested -} -}");
        assert_eq!(ts[1].trailing[0].text, "{- same -}");
        assert_eq!(ts[2].leading[0].text, "-- end");
    }
}
