//! Builds: identity (build id and date), logging, the pipeline from
//! instances to outputs ([`run`]), generated files, scripts lowered into
//! VM run requests ([`script`], [`guest`]), image artifacts, atomic outputs,
//! and why an artifact failed ([`error::BuildError`]).

pub mod cached;
pub mod error;
pub mod guest;
pub mod id;
pub mod layered;
pub mod log;
pub mod output;
pub mod postfix;
pub mod run;
pub mod script;
pub mod sources;
pub mod vm_images;
pub mod workdir;
