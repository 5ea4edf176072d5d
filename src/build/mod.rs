//! Build identity: the build id and build date of a run (SPEC §5.2, §5.3).
//! The build pipeline itself joins here in a later stage.

pub mod id;
