//! The public API: what the crate root re-exports. Every module here is a
//! thin layer over the internal ones; the `b9` executable uses nothing else
//! (docs/ARCHITECTURE.md#public-api).

pub mod build;
pub mod cache;
pub mod config;
pub mod diagnostic;
pub mod error;
pub mod farm;
pub mod image;
pub mod plan;
pub mod reformat;
pub mod run;
pub mod session;
pub mod shared;
