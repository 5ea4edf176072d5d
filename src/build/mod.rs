//! Builds: identity (build id and date, SPEC §5.2, §5.3) and logging (§5.5).

pub mod id;
pub mod log;
