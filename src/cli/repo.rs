//! Shared-image commands on the local cache: `b9 list` and `b9 clean-local`.

use std::io::Write;

use crate::cli::session::Session;
use crate::cli::Failure;
use crate::diag::Diagnostic;
use crate::repo::{render_list, LocalRepo};

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure {
        diagnostics: vec![Diagnostic::error(e.to_string())],
        code: crate::cli::EXIT_BUILD,
    }
}

fn open(session: &Session) -> Result<LocalRepo, Failure> {
    LocalRepo::open(&session.cache_root()).map_err(fail)
}

/// `b9 list`: the versions in the local cache.
pub fn list(session: &Session, out: &mut impl Write) -> Result<(), Failure> {
    let repo = open(session)?;
    let (images, warnings) = repo.list().map_err(fail)?;
    for w in &warnings {
        tracing::warn!("{w}");
        eprintln!("warning: {w}");
    }
    let text = format!(
        "Local shared images in {}:\n{}",
        repo.images_dir().display(),
        render_list(&images)
    );
    out.write_all(text.as_bytes()).map_err(fail)
}

/// `b9 clean-local`: keep the newest `max_cached_shared_images` versions of
/// every name (none when unset, as the original).
pub fn clean_local(session: &Session, out: &mut impl Write) -> Result<(), Failure> {
    let repo = open(session)?;
    let removed = repo
        .clean(session.config.max_cached_shared_images)
        .map_err(fail)?;
    for img in &removed {
        writeln!(out, "removed {} {} ({})", img.name, img.build_id, img.date).map_err(fail)?;
    }
    writeln!(
        out,
        "{} cached image{} removed",
        removed.len(),
        if removed.len() == 1 { "" } else { "s" }
    )
    .map_err(fail)
}
