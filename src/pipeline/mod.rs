//! Builds: identity (build id and date, SPEC §5.2, §5.3), logging (§5.5),
//! the pipeline from instances to outputs (§4), generated files (§3.5) and
//! atomic outputs.

pub mod error;
pub mod guest;
pub mod id;
pub mod images;
pub mod log;
pub mod output;
pub mod postfix;
pub mod run;
pub mod script;
pub mod sources;
pub mod workdir;
