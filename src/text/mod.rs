//! Text formats below the build language: YAML, Erlang terms and `${var}`
//! templates. Each is pure text work (parse, print, merge) and knows nothing
//! of the language's types, so the language and the content renderer can both
//! use it.

pub mod erlang;
pub mod template;
pub mod yaml;
