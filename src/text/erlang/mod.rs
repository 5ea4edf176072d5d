//! Erlang terms as text (docs/COMPATIBILITY.md#erlang-terms, #erlang-merge): parser, printer and proplist merge.
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
//! * Integers must fit in an `i128` and floats must be finite; the original
//!   has unbounded integers and reads `1.0e999` as infinity.
//! * `.5` (no digit before the point) is an error with a hint; the original
//!   accepts it syntactically and then crashes converting it.
//! * Nesting of lists and tuples deeper than [`MAX_DEPTH`] is an error; the
//!   parser itself uses no recursion.
//!
//! Like the original, anything after the final `.` is ignored
//! ([`parse_document`] says where it starts, so `b9 check` can warn), one
//! trailing comma inside a list or tuple is accepted
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
//! [`merge`] is the `ErlangPropList` semigroup of docs/COMPATIBILITY.md#erlang-merge.

mod merge;
mod parse;
mod print;
#[cfg(test)]
mod tests;

pub use merge::merge;
pub use parse::{parse, parse_document};
pub use print::render;

/// An Erlang term (the subset in docs/COMPATIBILITY.md#erlang-terms).
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
