//! `${var}` templates (docs/COMPATIBILITY.md#templates): `$name`, `${name}`, `$$` for a literal `$`.
//!
//! A name starts with a lower-case letter or `_` and goes on with letters,
//! digits, `_` or `'`. Anything else after `$` is a syntax error. Substitution
//! is single-pass: substituted values are not scanned again.

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text (with `$$` already turned into `$`).
    Text(String),
    /// A variable reference, with the byte range of `$name`/`${name}` in the template.
    Var {
        /// The variable name.
        name: String,
        /// Byte offset of the `$`.
        start: usize,
        /// Byte offset one past the reference.
        end: usize,
    },
}

/// A template syntax error at a byte range of the template text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// Byte offset of the `$` that starts the bad placeholder.
    pub start: usize,
    /// One past the last byte of the bad placeholder.
    pub end: usize,
}

/// Splits a template into text and variable references.
pub fn parse(text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text.char_indices().peekable();
    while let Some((i, c)) = rest.next() {
        if c != '$' {
            literal.push(c);
            continue;
        }
        let (name, end) = match rest.peek().copied() {
            Some((_, '$')) => {
                rest.next();
                literal.push('$');
                continue;
            }
            Some((j, '{')) => {
                rest.next();
                let close = text[j + 1..].find('}').map(|k| j + 1 + k);
                let Some(close) = close else {
                    return Err(TemplateError {
                        message: "unterminated `${`: missing `}`".into(),
                        start: i,
                        end: text.len(),
                    });
                };
                let name = &text[j + 1..close];
                if !is_name(name) {
                    return Err(bad_name(name, i, close + 1));
                }
                while rest.peek().is_some_and(|&(k, _)| k <= close) {
                    rest.next();
                }
                (name.to_string(), close + 1)
            }
            Some((j, c)) if starts_name(c) => {
                let mut end = j;
                while let Some(&(k, c)) = rest.peek() {
                    if k == j || continues_name(c) {
                        end = k + c.len_utf8();
                        rest.next();
                    } else {
                        break;
                    }
                }
                (text[j..end].to_string(), end)
            }
            Some((j, c)) => {
                return Err(TemplateError {
                    message: format!(
                        "invalid placeholder `${c}`: a variable name starts with a lower-case letter or `_` (write `$$` for a literal `$`)"
                    ),
                    start: i,
                    end: j + c.len_utf8(),
                })
            }
            None => {
                return Err(TemplateError {
                    message: "a lone `$` at the end: write `$$` for a literal `$`".into(),
                    start: i,
                    end: i + 1,
                })
            }
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Var {
            name,
            start: i,
            end,
        });
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

fn bad_name(name: &str, start: usize, end: usize) -> TemplateError {
    let message = if name.is_empty() {
        "empty placeholder `${}`".to_string()
    } else {
        format!(
            "invalid variable name `{name}` in `${{{name}}}`: a name starts with a lower-case letter or `_` and holds only letters, digits, `_` and `'`"
        )
    };
    TemplateError {
        message,
        start,
        end,
    }
}

fn starts_name(c: char) -> bool {
    c.is_lowercase() || c == '_'
}

fn continues_name(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '\''
}

/// True if `name` can be referenced from a template.
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(starts_name) && chars.all(continues_name)
}

/// The variable references of a text read leniently, as `(name, start, end)`
/// byte ranges of `$name` / `${name}`: `$$` and anything after `$` that is
/// not a reference (`$(`, `${1}`, `${a:-b}`) are skipped instead of being
/// errors. For texts b9 does not substitute (`eval::unsubstituted`).
pub fn references(text: &str) -> Vec<(&str, usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(k) = text[i..].find('$') {
        let at = i + k;
        let after = &text[at + 1..];
        i = at + 1;
        if after.starts_with('$') {
            i += 1;
        } else if let Some(braced) = after.strip_prefix('{') {
            if let Some(close) = braced.find('}').filter(|&c| is_name(&braced[..c])) {
                found.push((&braced[..close], at, at + close + 3));
                i = at + close + 3;
            }
        } else if after.starts_with(starts_name) {
            let len = after
                .char_indices()
                .skip(1)
                .find(|&(_, c)| !continues_name(c))
                .map_or(after.len(), |(j, _)| j);
            found.push((&after[..len], at, at + 1 + len));
            i = at + 1 + len;
        }
    }
    found
}

/// Joins the pieces, looking each variable up with `lookup`; the first
/// unknown variable is returned as `Err` with its piece.
pub fn render<'p, 'v>(
    pieces: &'p [Piece],
    mut lookup: impl FnMut(&str) -> Option<&'v str>,
) -> Result<String, &'p Piece> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var { name, .. } => out.push_str(lookup(name).ok_or(piece)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str) -> Result<String, String> {
        let pieces = parse(t).map_err(|e| format!("{}@{}", e.message, e.start))?;
        render(&pieces, |n| match n {
            "host" => Some("web"),
            "a'b" => Some("q"),
            "x_1" => Some("$y"),
            _ => None,
        })
        .map_err(|p| format!("unbound {p:?}"))
    }

    #[test]
    fn forms_of_placeholders() {
        assert_eq!(expand("${host}.org").as_deref(), Ok("web.org"));
        assert_eq!(expand("$host.org").as_deref(), Ok("web.org"));
        assert_eq!(expand("$$host $$$host").as_deref(), Ok("$host $web"));
        assert_eq!(expand("$a'b!").as_deref(), Ok("q!"));
        assert_eq!(expand("${x_1}").as_deref(), Ok("$y"), "single pass");
        assert_eq!(expand("grüße $host").as_deref(), Ok("grüße web"));
    }

    #[test]
    fn lenient_references() {
        let refs = references("$host ${a'b}x $$host $(id) ${1} ${a:-b} $ $");
        assert_eq!(refs, vec![("host", 0, 5), ("a'b", 6, 12)]);
        assert_eq!(references("grüße $x_1."), vec![("x_1", 8, 12)]);
        assert_eq!(references("${host"), vec![]);
    }

    #[test]
    fn syntax_errors_with_offsets() {
        assert!(expand("ab ${Foo}").unwrap_err().ends_with("@3"));
        assert!(expand("ab $").unwrap_err().contains("lone `$`"));
        assert!(expand("${1}")
            .unwrap_err()
            .contains("invalid variable name"));
        assert!(expand("$-")
            .unwrap_err()
            .contains("invalid placeholder `$-`"));
        assert!(expand("${host").unwrap_err().contains("unterminated"));
        assert!(expand("${}").unwrap_err().contains("empty"));
        assert!(expand("$hots").unwrap_err().contains("unbound"));
    }
}
