//! The step cache of guest steps (`b9 cache list|clean`).

use std::io::Write;

use super::error::Error;
use crate::stepcache::{format_date, prune, StepCache};

/// The step cache in its default directory (`$XDG_CACHE_HOME/b9/steps`).
fn open() -> Result<StepCache, Error> {
    crate::stepcache::default_dir()
        .map(|dir| StepCache::new(dir, 0))
        .ok_or_else(|| {
            Error::failed("cannot find the step cache: neither $XDG_CACHE_HOME nor $HOME is set")
        })
}

/// `b9 cache list`: the entries, least recently used first, and the total.
pub fn list(out: &mut dyn Write) -> Result<(), Error> {
    let cache = open()?;
    let entries = prune::list(&cache);
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    writeln!(out, "Step cache in {}:", cache.dir().display()).map_err(Error::failed)?;
    for e in &entries {
        writeln!(
            out,
            "{}  {:<20}  run {}  used {}  {} MiB{}",
            &e.key.as_str()[..16],
            e.label,
            format_date(e.created),
            format_date(e.used),
            e.bytes.div_ceil(1 << 20),
            layer_note(e)
        )
        .map_err(Error::failed)?;
    }
    writeln!(
        out,
        "{} entr{}, {} MiB",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        total.div_ceil(1 << 20)
    )
    .map_err(Error::failed)
}

/// `b9 cache clean`: removes every entry (those in use by another b9 are
/// kept); returns how many were removed.
pub fn clean() -> Result<usize, Error> {
    Ok(prune::clean(&open()?))
}

/// What `b9 cache list` adds for a layer: the commands it holds and the
/// layer it is an overlay of.
fn layer_note(e: &prune::EntryInfo) -> String {
    let Some(n) = e.commands else {
        return String::new();
    };
    let plural = if n == 1 { "" } else { "s" };
    match &e.backing {
        Some(below) => format!(
            "  layer after {n} command{plural}, on {}",
            &below.as_str()[..16]
        ),
        None => format!("  layer after {n} command{plural}"),
    }
}
