//! The Erlang term printer: the original's layout, byte for byte.

use std::fmt::Write as _;

use super::ErlTerm;

/// Erlang's reserved words: an atom spelled like one is printed quoted, so
/// `file:consult` reads the output back (the original printed them bare).
const RESERVED_WORDS: [&str; 29] = [
    "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
    "catch", "cond", "div", "else", "end", "fun", "if", "let", "maybe", "not", "of", "or",
    "orelse", "receive", "rem", "try", "when", "xor",
];

/// Line length of the original's pretty printer (HughesPJ default style).
const LINE_LENGTH: isize = 100;

/// Ribbon length: `round(100 / 1.5)` characters of non-indentation text per
/// line (HughesPJ computes it exactly like this).
const RIBBON_LENGTH: isize = 67;

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
        escape(out, c, '"');
    }
}

/// Atom and char escaping of the original: `'` and `\` escaped, chars 0–31
/// and from 127 on as `\x{h}`.
fn escape_atom_char(out: &mut String, c: char) {
    escape(out, c, '\'');
}

/// `c` inside a literal closed by `quote`: the quote and `\` escaped,
/// chars 0–31 and from 127 on as `\x{h}`.
fn escape(out: &mut String, c: char, quote: char) {
    match c {
        c if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
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
