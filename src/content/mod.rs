//! Generated file contents (SPEC §1.6, §1.7, §3): YAML and Erlang terms with
//! their merge rules, templates, base64, downloads.

pub mod ast;
pub mod erlang;
pub mod error;
pub mod render;
pub mod url;
pub mod yaml;
