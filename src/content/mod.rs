//! Generated file contents: renders a build file's content sources (YAML and
//! Erlang ASTs, templates, base64, downloads) to the bytes of one instance.
//! The text formats themselves live in [`crate::text`].

pub mod ast;
pub mod cloud_config;
pub mod cloud_keys;
pub mod error;
pub mod located;
pub mod render;
pub mod schema;
pub mod url;
