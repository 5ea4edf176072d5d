//! `b9 build`: build every artifact of checked build files.

use b9::{BuildOptions, CancelToken, Plan, Session};

use crate::cli::Failure;

/// Builds the plan; a failed artifact fails the command with exit code
/// 1. `no_cache` runs every guest step (`--no-cache`); `cancel` stops it.
pub fn build(
    session: &Session,
    plan: &Plan,
    no_cache: bool,
    cancel: &CancelToken,
) -> Result<(), Failure> {
    let mut options = BuildOptions::new();
    options.no_cache = no_cache;
    options.cancel = cancel.clone();
    Ok(session.build(plan, &options)?)
}
