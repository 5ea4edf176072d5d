//! b9: builds VM disk images, cloud-init media and generated files from `.b9`
//! build files, compatible with the original Haskell b9.
//!
//! The data flow is `lang` (parse) -> `eval` (expand and check) -> `pipeline`;
//! see `docs/ARCHITECTURE.md`.

#![forbid(unsafe_code)]

pub mod bytes;
pub mod civil;
pub mod cli;
pub mod config;
pub mod content;
pub mod diag;
pub mod disk;
pub mod eval;
pub mod events;
pub mod interrupt;
pub mod lang;
pub mod lock;
pub mod media;
pub mod pipeline;
pub mod progress;
pub mod replace;
pub mod repo;
pub mod stale;
pub mod stepcache;
pub mod text;
pub mod timeouts;
pub mod vm;
pub mod wait;
