//! YAML values (docs/COMPATIBILITY.md#yaml-merge, #cloud-config): parsing, the merge rules and rendering.
//!
//! Values are [`serde_norway::Value`]s; mappings keep insertion order, so keys
//! come out in source order (first occurrence, deterministic: docs/COMPATIBILITY.md#differences).
//!
//! # Reading
//!
//! Parsing uses serde_norway's libyaml-based event reader with our own value
//! builder instead of `Value`'s `Deserialize` impl, for two reasons:
//!
//! * Duplicate keys in one mapping: serde_norway rejects them; the original
//!   (aeson) keeps the last value. We keep the **last value at the position of
//!   the first occurrence**.
//! * Plain (unquoted, untagged) scalars `y Y yes Yes YES on On ON` read as
//!   `true` and `n N no No NO off Off OFF` as `false`, as the original's
//!   `Data.Yaml` reader does (serde_norway follows YAML 1.2, where they are
//!   strings). This applies to values, not to mapping keys (aeson keys are
//!   always text). Quoted scalars stay strings. `true`/`false`/`null`/`~` and
//!   numbers resolve as serde_norway does (YAML 1.2 core schema); integers that
//!   do not fit 64 bits become floats.
//!
//! Anchors and aliases are resolved; `<<` merge keys are not applied (they stay
//! ordinary keys). Tagged nodes (`!foo x`) stay [`Value::Tagged`].
//!
//! # Writing
//!
//! [`render`] is a small emitter in libyaml's block style (what the original's
//! `Data.Yaml.encode` produces), written by hand so the output is deterministic
//! and always reads back as the same value: `parse(&render(v)) == Ok(v)` for every
//! value without nested tags.

pub mod locate;
mod merge;
mod parse;
mod print;
#[cfg(test)]
mod tests;

pub use merge::merge;
pub use parse::{parse, parse_cloud_config, YamlError};
pub use print::{render, render_cloud_config};
pub use serde_norway::Value;

/// The header line of a cloud-config document (docs/COMPATIBILITY.md#cloud-config).
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config\n";
