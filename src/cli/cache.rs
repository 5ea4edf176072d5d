//! `b9 cache list|clean`: the step cache of guest steps.

use std::io::Write;

use clap::Subcommand;

use crate::cli::{fail, Failure};

/// The `cache` commands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the entries of the step cache, least recently used first.
    List,
    /// Remove every entry of the step cache (entries in use by another b9 are kept).
    Clean,
}

/// Runs a `cache` command.
pub fn run(command: &CacheCommand, out: &mut impl Write) -> Result<(), Failure> {
    match command {
        CacheCommand::List => write!(out, "{}", b9::step_cache::list()?).map_err(fail),
        CacheCommand::Clean => {
            let n = b9::step_cache::clean()?;
            writeln!(
                out,
                "{n} step cache entr{} removed",
                if n == 1 { "y" } else { "ies" }
            )
            .map_err(fail)
        }
    }
}
