//! `b9 cache list|clean`: the step cache of guest steps; the step cache a
//! build uses; what `b9 show` says about each artifact's guest step.

use std::io::Write;
use std::path::Path;

use clap::Subcommand;

use crate::cli::session::Session;
use crate::cli::{fail, Failure};
use crate::eval::expand::Instance;
use crate::pipeline::cached::{self, KeyInputs, Verdict};
use crate::stepcache::{format_date, prune, StepCache};

/// The `cache` commands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the entries of the step cache, least recently used first.
    List,
    /// Remove every entry of the step cache (entries in use by another b9 are kept).
    Clean,
}

/// The step cache `[vm]` asks for: `None` with `step_cache: False` or
/// without a home directory.
pub fn step_cache(session: &Session) -> Option<StepCache> {
    let vm = &session.config.vm;
    if !vm.step_cache {
        return None;
    }
    let dir = crate::stepcache::default_dir()?;
    Some(StepCache::new(
        dir,
        u64::from(vm.step_cache_max_gb).saturating_mul(1 << 30),
    ))
}

/// Runs a `cache` command.
pub fn run(command: &CacheCommand, out: &mut impl Write) -> Result<(), Failure> {
    let cache = crate::stepcache::default_dir()
        .map(|dir| StepCache::new(dir, 0))
        .ok_or_else(|| {
            fail("cannot find the step cache: neither $XDG_CACHE_HOME nor $HOME is set")
        })?;
    match command {
        CacheCommand::List => {
            let entries = prune::list(&cache);
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            writeln!(out, "Step cache in {}:", cache.dir().display()).map_err(fail)?;
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
                .map_err(fail)?;
            }
            writeln!(
                out,
                "{} entr{}, {} MiB",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" },
                total.div_ceil(1 << 20)
            )
            .map_err(fail)
        }
        CacheCommand::Clean => {
            let n = prune::clean(&cache);
            writeln!(
                out,
                "{n} step cache entr{} removed",
                if n == 1 { "y" } else { "ies" }
            )
            .map_err(fail)
        }
    }
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

/// For `b9 show`: each `VmImages` artifact's instance id and whether its
/// guest step would come from the step cache.
pub fn show(session: &Session, instances: &[Instance]) -> Vec<(String, Verdict)> {
    let images = crate::cli::build::image_settings(session, false);
    // The instance directory exists only during a build.
    let sources = Path::new("");
    let inputs = KeyInputs {
        images: &images,
        vm: &session.vm,
        sources,
    };
    instances
        .iter()
        .filter(|i| cached::parts(i).is_some())
        .map(|i| {
            (
                i.id.value.clone(),
                cached::status(i, images.step_cache.as_ref(), &inputs),
            )
        })
        .collect()
}

/// The text lines of [`show`]'s verdicts.
pub fn render_show(steps: &[(String, Verdict)]) -> String {
    steps
        .iter()
        .map(|(id, verdict)| format!("step cache: {id}: {verdict}\n"))
        .collect()
}
