//! The untyped term tree of Haskell-literal syntax, and its parser.
//!
//! A term is a constructor application, a record, a list, a tuple or a literal.
//! Redundant parentheses are dropped; comments stay attached to the terms they
//! precede or follow, so the printer can put them back.

use crate::diag::source::Span;
use crate::lang::lexer::{Comment, Token, TokenKind, Tokens};

/// The constructor whose string argument needs no parentheses.
pub const YAML_OBJECT: &str = "YamlObject";

/// How deeply parentheses, brackets and braces may nest. Every pass over a
/// term tree (typed conversion, printing, evaluation, dropping) recurses once
/// per level, so this bound keeps all of them far from the stack's end; real
/// build files nest a few dozen levels at most.
pub const MAX_DEPTH: usize = 200;

/// A parsed value with its span and comments.
#[derive(Clone, Debug)]
pub struct Term {
    /// The value.
    pub kind: TermKind,
    /// From the first to the last token (including redundant parentheses).
    pub span: Span,
    /// Comments before the term.
    pub leading: Vec<Comment>,
    /// Comments after the term, on its last line.
    pub trailing: Vec<Comment>,
}

/// The shapes a term can take.
#[derive(Clone, Debug)]
pub enum TermKind {
    /// `Name arg ...` (also a nullary constructor such as `True`).
    Con {
        /// The constructor name.
        name: String,
        /// Where the name is.
        name_span: Span,
        /// The arguments.
        args: Vec<Term>,
    },
    /// `Name {field = value, ...}`.
    Record {
        /// The constructor name.
        name: String,
        /// Where the name is.
        name_span: Span,
        /// Field names with their spans and values.
        fields: Vec<(String, Span, Term)>,
        /// Comments before the closing `}`.
        closing: Vec<Comment>,
    },
    /// `[a, b]`.
    List {
        /// The elements.
        items: Vec<Term>,
        /// Comments before the closing `]`.
        closing: Vec<Comment>,
    },
    /// `(a, b)`.
    Tuple {
        /// The elements (two or more).
        items: Vec<Term>,
        /// Comments before the closing `)`.
        closing: Vec<Comment>,
    },
    /// A string literal.
    Str(String),
    /// A character literal.
    Char(char),
    /// An integer literal (sign included).
    Int(i128),
    /// A floating-point literal (sign included).
    Float(f64),
}

impl Term {
    /// A term without place or comments (for printing generated values).
    pub fn bare(kind: TermKind) -> Term {
        Term {
            kind,
            span: Span::default(),
            leading: Vec::new(),
            trailing: Vec::new(),
        }
    }

    /// `Name arg ...`: the constructor name and its arguments.
    pub fn as_con(&self) -> Option<(&str, &[Term])> {
        match &self.kind {
            TermKind::Con { name, args, .. } => Some((name.as_str(), args.as_slice())),
            _ => None,
        }
    }

    /// A constructor without arguments (`True`, `Raw`): its name.
    pub fn as_nullary(&self) -> Option<&str> {
        self.as_con()
            .and_then(|(name, args)| args.is_empty().then_some(name))
    }

    /// `con "text"` for the constructor `con`: the text.
    pub fn as_wrapped_str(&self, con: &str) -> Option<&str> {
        match self.as_con()? {
            (name, [arg]) if name == con => arg.as_str(),
            _ => None,
        }
    }

    /// A string literal's text.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            TermKind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer literal.
    pub fn as_integer(&self) -> Option<i128> {
        match self.kind {
            TermKind::Int(n) => Some(n),
            _ => None,
        }
    }

    /// An integer literal that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_integer().and_then(|n| i64::try_from(n).ok())
    }

    /// A list's elements.
    pub fn as_list(&self) -> Option<&[Term]> {
        match &self.kind {
            TermKind::List { items, .. } => Some(items),
            _ => None,
        }
    }

    /// How the term is named in "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            TermKind::Con { name, .. } | TermKind::Record { name, .. } => format!("`{name}`"),
            TermKind::List { .. } => "a list".into(),
            TermKind::Tuple { items, .. } => format!("a {}-tuple", items.len()),
            TermKind::Str(_) => "a string".into(),
            TermKind::Char(_) => "a character".into(),
            TermKind::Int(_) => "an integer".into(),
            TermKind::Float(_) => "a floating-point number".into(),
        }
    }
}

/// A syntax error.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
    /// What would have been valid there.
    pub hint: Option<String>,
}

/// A whole parsed text: one term plus the comments after it.
#[derive(Clone, Debug)]
pub struct Document {
    /// The term.
    pub term: Term,
    /// Comments after the term.
    pub trailing: Vec<Comment>,
}

/// Parses a text holding exactly one term. Reports every syntax error it can
/// find (it resynchronises at list commas), not only the first.
pub fn parse_document(text: &str) -> Result<Document, Vec<SyntaxError>> {
    let mut p = Parser {
        tokens: Tokens::new(text),
        errors: Vec::new(),
        depth: 0,
        too_deep: false,
    };
    let term = p.term();
    let mut doc = None;
    match term {
        Some(term) => {
            let tok = p.peek();
            if tok.kind == TokenKind::Eof {
                let trailing = tok.leading.clone();
                doc = Some(Document { term, trailing });
            } else {
                let span = tok.span;
                let found = tok.kind.describe();
                p.errors.push(SyntaxError {
                    message: format!("unexpected {found} after the end of the build term"),
                    span,
                    hint: Some(
                        "a file holds exactly one value; combine several generators with `Let [] [a, b]`"
                            .into(),
                    ),
                });
            }
        }
        None => p.sync_to_end(),
    }
    if let Some(e) = p.tokens.error() {
        // What the parser said after the bad token is noise.
        return Err(vec![SyntaxError {
            message: e.message.clone(),
            span: e.span,
            hint: None,
        }]);
    }
    match doc {
        Some(doc) if p.errors.is_empty() => Ok(doc),
        _ => Err(p.errors),
    }
}

struct Parser<'a> {
    tokens: Tokens<'a>,
    errors: Vec<SyntaxError>,
    /// Brackets open around the current position.
    depth: usize,
    /// Set when [`MAX_DEPTH`] was passed: the parse unwinds without more errors.
    too_deep: bool,
}

impl Parser<'_> {
    fn peek(&mut self) -> &Token {
        self.tokens.peek(0)
    }

    /// The kind of the token after the next one.
    fn peek_second(&mut self) -> &TokenKind {
        &self.tokens.peek(1).kind
    }

    fn bump(&mut self) -> Token {
        self.tokens.bump()
    }

    fn error(&mut self, message: String, span: Span, hint: Option<&str>) {
        self.errors.push(SyntaxError {
            message,
            span,
            hint: hint.map(str::to_string),
        });
    }

    fn expected(&mut self, what: &str) {
        let tok = self.peek();
        let (found, span) = (tok.kind.describe(), tok.span);
        self.error(format!("expected {what}, found {found}"), span, None);
    }

    /// Parses a bracketed term (`(`, `[` or `Name {`) one level deeper, or
    /// reports the nesting error at its opening token and gives up.
    fn nested(&mut self, parse: fn(&mut Self) -> Option<Term>) -> Option<Term> {
        if self.depth >= MAX_DEPTH {
            let span = self.peek().span;
            self.error(
                format!("nested too deeply (more than {MAX_DEPTH} levels)"),
                span,
                None,
            );
            self.too_deep = true;
            self.sync_to_end();
            return None;
        }
        self.depth += 1;
        let term = parse(self);
        self.depth -= 1;
        term
    }

    /// Skips to the end of input after an unrecoverable error.
    fn sync_to_end(&mut self) {
        while self.bump().kind != TokenKind::Eof {}
    }

    /// Skips to the next `,` or the closing bracket at this nesting depth.
    fn sync_in_list(&mut self, close: &TokenKind) {
        let mut depth = 0usize;
        loop {
            let kind = self.peek().kind.clone();
            match kind {
                TokenKind::Eof => return,
                TokenKind::LParen | TokenKind::LBracket | TokenKind::LBrace => depth += 1,
                TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace if depth > 0 => {
                    depth -= 1
                }
                ref k if depth == 0 && (k == close || *k == TokenKind::Comma) => return,
                TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => return,
                _ => {}
            }
            self.bump();
        }
    }

    /// A term: an application, or an atom.
    fn term(&mut self) -> Option<Term> {
        let tok = self.peek().clone();
        if let TokenKind::Ident(name) = &tok.kind {
            // A lower-case name is reported by `atom`.
            if !starts_lower(name) && *self.peek_second() != TokenKind::LBrace {
                self.bump();
                let mut args = Vec::new();
                let mut end = tok.span;
                let mut trailing = tok.trailing.clone();
                while starts_atom(&self.peek().kind) {
                    let mut arg = self.atom()?;
                    arg.leading.splice(0..0, std::mem::take(&mut trailing));
                    end = arg.span;
                    args.push(arg);
                }
                if let Some(last) = args.last_mut() {
                    trailing = std::mem::take(&mut last.trailing);
                }
                return Some(Term {
                    kind: TermKind::Con {
                        name: name.clone(),
                        name_span: tok.span,
                        args,
                    },
                    span: tok.span.join(end),
                    leading: tok.leading.clone(),
                    trailing,
                });
            }
        }
        if tok.kind == TokenKind::Minus {
            return self.negative();
        }
        self.atom()
    }

    fn negative(&mut self) -> Option<Term> {
        let minus = self.bump();
        let tok = self.bump();
        let kind = match tok.kind {
            TokenKind::Int(n) => TermKind::Int(-n),
            TokenKind::Float(x) => TermKind::Float(-x),
            other => {
                self.error(
                    format!("expected a number after `-`, found {}", other.describe()),
                    tok.span,
                    None,
                );
                return None;
            }
        };
        Some(Term {
            kind,
            span: minus.span.join(tok.span),
            leading: minus.leading,
            trailing: tok.trailing,
        })
    }

    /// An atom: literal, nullary constructor, record, list, tuple or parenthesised term.
    fn atom(&mut self) -> Option<Term> {
        let tok = self.peek().clone();
        let simple = match &tok.kind {
            TokenKind::Str(s) => Some(TermKind::Str(s.clone())),
            TokenKind::Char(c) => Some(TermKind::Char(*c)),
            TokenKind::Int(n) => Some(TermKind::Int(*n)),
            TokenKind::Float(x) => Some(TermKind::Float(*x)),
            TokenKind::Ident(name) if starts_lower(name) => {
                self.error(
                    format!("expected a constructor, found the name `{name}`"),
                    tok.span,
                    Some("constructors start with an upper-case letter, e.g. `Artifact`"),
                );
                self.bump();
                return None;
            }
            TokenKind::Ident(name) => {
                let next = self.peek_second();
                if *next == TokenKind::LBrace {
                    return self.nested(Parser::record);
                }
                if name == YAML_OBJECT && matches!(next, TokenKind::Str(_)) {
                    // The original's hand-written reader binds `YamlObject "..."`
                    // like one token: `AST YamlObject "a: 1"` is valid.
                    self.bump();
                    let arg = self.atom()?;
                    return Some(Term {
                        span: tok.span.join(arg.span),
                        kind: TermKind::Con {
                            name: name.clone(),
                            name_span: tok.span,
                            args: vec![Term {
                                leading: Vec::new(),
                                ..arg.clone()
                            }],
                        },
                        leading: tok.leading,
                        trailing: arg.trailing,
                    });
                }
                Some(TermKind::Con {
                    name: name.clone(),
                    name_span: tok.span,
                    args: Vec::new(),
                })
            }
            _ => None,
        };
        if let Some(kind) = simple {
            self.bump();
            return Some(Term {
                kind,
                span: tok.span,
                leading: tok.leading,
                trailing: tok.trailing,
            });
        }
        match tok.kind {
            TokenKind::LBracket => self.nested(Parser::list),
            TokenKind::LParen => self.nested(Parser::paren),
            _ => {
                self.expected("a value");
                None
            }
        }
    }

    /// Elements separated by commas up to `close`; the opening token is consumed.
    fn sequence(
        &mut self,
        open: &Token,
        close: TokenKind,
        what: &str,
    ) -> Option<(Vec<Term>, Token)> {
        let mut items = Vec::new();
        let mut carry: Vec<Comment> = open.trailing.clone();
        let mut ok = true;
        if self.peek().kind == close {
            let tok = self.bump();
            return Some((items, with_leading(tok, carry)));
        }
        loop {
            match self.term() {
                Some(mut item) => {
                    item.leading.splice(0..0, std::mem::take(&mut carry));
                    items.push(item);
                }
                None if self.too_deep => return None,
                None => {
                    ok = false;
                    self.sync_in_list(&close);
                }
            }
            let tok = self.peek().clone();
            if tok.kind == TokenKind::Comma {
                self.bump();
                if let Some(last) = items.last_mut() {
                    last.trailing.extend(tok.trailing);
                }
                carry = tok.leading;
                continue;
            }
            if tok.kind == close {
                let tok = self.bump();
                return ok.then_some((items, tok));
            }
            let found = tok.kind.describe();
            let hint = if starts_atom(&tok.kind) {
                Some("elements are separated by `,`")
            } else {
                None
            };
            self.error(
                format!(
                    "expected `,` or {} in {what}, found {found}",
                    close.describe()
                ),
                tok.span,
                hint,
            );
            if tok.kind == TokenKind::Eof || !starts_atom(&tok.kind) {
                self.sync_to_end();
                return None;
            }
            ok = false;
            self.sync_in_list(&close);
            let next = self.peek().kind.clone();
            if next == TokenKind::Comma {
                self.bump();
            } else {
                if next == close {
                    self.bump();
                }
                return None;
            }
        }
    }

    fn list(&mut self) -> Option<Term> {
        let open = self.bump();
        let (items, close) = self.sequence(&open, TokenKind::RBracket, "a list")?;
        Some(Term {
            kind: TermKind::List {
                items,
                closing: close.leading,
            },
            span: open.span.join(close.span),
            leading: open.leading,
            trailing: close.trailing,
        })
    }

    /// `( term )` or a tuple.
    fn paren(&mut self) -> Option<Term> {
        let open = self.bump();
        let (mut items, close) = self.sequence(&open, TokenKind::RParen, "parentheses")?;
        let span = open.span.join(close.span);
        if items.len() == 1 {
            let mut inner = items.remove(0);
            let mut leading = open.leading;
            leading.append(&mut inner.leading);
            inner.leading = leading;
            inner.trailing.extend(close.leading);
            inner.trailing.extend(close.trailing);
            inner.span = span;
            return Some(inner);
        }
        if items.is_empty() {
            self.error("`()` is not a value in a build file".into(), span, None);
            return None;
        }
        Some(Term {
            kind: TermKind::Tuple {
                items,
                closing: close.leading,
            },
            span,
            leading: open.leading,
            trailing: close.trailing,
        })
    }

    fn record(&mut self) -> Option<Term> {
        let name_tok = self.bump();
        let TokenKind::Ident(name) = name_tok.kind.clone() else {
            return None;
        };
        let open = self.bump();
        let mut fields = Vec::new();
        let mut carry = name_tok.trailing.clone();
        carry.extend(open.trailing.clone());
        loop {
            if self.peek().kind == TokenKind::RBrace && fields.is_empty() {
                break;
            }
            let TokenKind::Ident(field) = self.peek().kind.clone() else {
                self.expected("a field name");
                return None;
            };
            let field_tok = self.bump();
            if self.peek().kind != TokenKind::Equals {
                self.expected("`=` after the field name");
                return None;
            }
            self.bump();
            let mut value = self.term()?;
            value.leading.splice(0..0, std::mem::take(&mut carry));
            value.leading.splice(0..0, field_tok.leading);
            fields.push((field, field_tok.span, value));
            match self.peek().kind {
                TokenKind::Comma => {
                    let comma = self.bump();
                    if let Some((_, _, last)) = fields.last_mut() {
                        last.trailing.extend(comma.leading);
                        last.trailing.extend(comma.trailing);
                    }
                }
                TokenKind::RBrace => break,
                _ => {
                    self.expected("`,` or `}` in a record");
                    return None;
                }
            }
        }
        let close = self.bump();
        Some(Term {
            kind: TermKind::Record {
                name,
                name_span: name_tok.span,
                fields,
                closing: close.leading,
            },
            span: name_tok.span.join(close.span),
            leading: name_tok.leading,
            trailing: close.trailing,
        })
    }
}

fn with_leading(mut tok: Token, mut carry: Vec<Comment>) -> Token {
    carry.append(&mut tok.leading);
    tok.leading = carry;
    tok
}

fn starts_lower(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_lowercase() || c == '_')
}

fn starts_atom(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::Ident(_)
            | TokenKind::Str(_)
            | TokenKind::Char(_)
            | TokenKind::Int(_)
            | TokenKind::Float(_)
            | TokenKind::LParen
            | TokenKind::LBracket
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Term {
        match parse_document(text) {
            Ok(doc) => doc.term,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn applications_lists_tuples_records() {
        let t = parse("Let [(\"a\", \"b\")] [((Artifact (IID \"x\") EmptyArtifact))]");
        let TermKind::Con { name, args, .. } = &t.kind else {
            panic!()
        };
        assert_eq!(name, "Let");
        assert_eq!(args.len(), 2);
        let TermKind::List { items, .. } = &args[1].kind else {
            panic!()
        };
        let TermKind::Con { name, args, .. } = &items[0].kind else {
            panic!()
        };
        assert_eq!((name.as_str(), args.len()), ("Artifact", 2));
        let t = parse("AST (MkCloudConfigYaml {fromCloudConfigYaml = YamlObject \"a: 1\"})");
        let TermKind::Con { args, .. } = &t.kind else {
            panic!()
        };
        assert!(matches!(&args[0].kind, TermKind::Record { fields, .. } if fields.len() == 1));
        let t = parse("AST YamlObject \"a: 1\"");
        assert!(matches!(&t.kind, TermKind::Con { args, .. } if args.len() == 1));
        let t = parse("X (-1) (-1.5) [-2]");
        let TermKind::Con { args, .. } = &t.kind else {
            panic!()
        };
        assert!(matches!(args[0].kind, TermKind::Int(-1)));
        assert!(matches!(args[1].kind, TermKind::Float(x) if x == -1.5));
    }

    #[test]
    fn reports_several_list_errors() {
        let errs = parse_document("[A B (, C, D (]").unwrap_err();
        assert!(!errs.is_empty());
        let errs = parse_document("[\"a\" \"b\", \"c\" \"d\"]").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("expected `,` or `]`"));
        assert_eq!(errs[0].span.start, 5);
        assert_eq!(errs[1].span.start, 14);
    }

    #[test]
    fn trailing_garbage_and_lower_case() {
        let errs = parse_document("EmptyArtifact )").unwrap_err();
        assert!(errs[0].message.contains("after the end"));
        let errs = parse_document("Artifact (IID \"x\") foo").unwrap_err();
        assert!(errs[0].message.contains("found the name `foo`"));
        assert_eq!(errs[0].span.start, 19);
        let errs = parse_document("(Artifact").unwrap_err();
        assert!(errs[0].message.contains("expected `,` or `)`"), "{errs:?}");
    }

    #[test]
    fn comments_attach_to_terms() {
        let doc = parse_document(
            "-- top\nLet [] -- after list\n  [ A -- on a\n  , -- before b\n B\n  -- closing\n  ]\n-- eof\n",
        )
        .unwrap();
        assert_eq!(doc.term.leading[0].text, "-- top");
        assert_eq!(doc.trailing[0].text, "-- eof");
        let TermKind::Con { args, .. } = &doc.term.kind else {
            panic!()
        };
        assert_eq!(args[0].trailing[0].text, "-- after list");
        let TermKind::List { items, closing } = &args[1].kind else {
            panic!()
        };
        assert_eq!(items[0].trailing[0].text, "-- on a");
        assert_eq!(items[0].trailing[1].text, "-- before b");
        assert_eq!(closing[0].text, "-- closing");
    }
}
