//! Shared images: the local cache (`list`, `clean-local`) and remote
//! repositories over SSH (`push`, `pull`, `clean-remote`). Each function
//! writes what the CLI prints to `out`; transfers show a progress bar on
//! stderr when it is a terminal.

use std::io::Write;

use super::error::Error;
use super::session::Session;
use crate::config::{LogLevel, RemoteRepo};
use crate::events::{Direction, Events};
use crate::interrupt::{self, CancelToken};
use crate::progress::Transfer;
use crate::repo::{remote, render_list, LocalRepo};

fn open(session: &Session) -> Result<LocalRepo, Error> {
    LocalRepo::open(&session.cache_root()).map_err(Error::failed)
}

fn write(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    out.write_all(text.as_bytes()).map_err(Error::failed)
}

/// `b9 list`: the versions in the local cache; warnings about unreadable
/// entries go to stderr.
pub fn list(session: &Session, out: &mut dyn Write) -> Result<(), Error> {
    let repo = open(session)?;
    let (images, warnings) = repo.list().map_err(Error::failed)?;
    for w in &warnings {
        tracing::warn!("{w}");
        eprintln!("warning: {w}");
    }
    write(
        out,
        &format!(
            "Local shared images in {}:\n{}",
            repo.images_dir().display(),
            render_list(&images)
        ),
    )
}

/// `b9 list -r ID`: the cached metadata of the remote `id` (pull it first).
pub fn list_remote(session: &Session, id: &str, out: &mut dyn Write) -> Result<(), Error> {
    let dir = remote::metadata_dir(&session.cache_root(), id);
    let images = remote::read_metadata(&dir);
    write(
        out,
        &format!(
            "Shared images of remote repository `{id}` (as of the last pull):\n{}",
            render_list(&images)
        ),
    )
}

/// `b9 clean-local`: keeps the newest `max_cached_shared_images` versions
/// of every name (none when unset, as the original).
pub fn clean_local(session: &Session, out: &mut dyn Write) -> Result<(), Error> {
    let repo = open(session)?;
    let removed = repo
        .clean(session.config.max_cached_shared_images)
        .map_err(Error::failed)?;
    for img in &removed {
        writeln!(out, "removed {} {} ({})", img.name, img.build_id, img.date)
            .map_err(Error::failed)?;
    }
    writeln!(
        out,
        "{} cached image{} removed",
        removed.len(),
        if removed.len() == 1 { "" } else { "s" }
    )
    .map_err(Error::failed)
}

/// The repositories a command works on: the one selected (`repository` or
/// its override), else every configured one.
fn selected(session: &Session) -> Result<Vec<RemoteRepo>, Error> {
    let config = &session.config;
    match &config.repository {
        Some(id) => config
            .repo(id)
            .cloned()
            .map(|r| vec![r])
            .ok_or_else(|| Error::failed(format!("selected remote repo `{id}` is not configured (add a [{id}-repo] section or use `b9 add-repo`)"))),
        None => Ok(config.repos.clone()),
    }
}

/// Whether transfers show a progress bar (on a terminal): not with a
/// verbosity of errors only or nothing.
fn show_progress(session: &Session) -> bool {
    !matches!(
        session.config.verbosity,
        Some(LogLevel::Error | LogLevel::Off)
    )
}

/// How a push or pull runs: what stops it, where its progress goes.
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct TransferOptions {
    /// Stops the transfer (it cleans up and fails with "interrupted").
    pub cancel: CancelToken,
    /// Receives [`Event::Transfer`](crate::Event::Transfer) progress.
    pub events: Events,
}

impl TransferOptions {
    /// Never cancelled, no events.
    pub fn new() -> TransferOptions {
        TransferOptions::default()
    }
}

/// `b9 push NAME`: uploads the newest cached version of `name` to the
/// selected repository.
pub fn push(
    session: &Session,
    name: &str,
    options: &TransferOptions,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let Some(id) = &session.config.repository else {
        return Err(Error::failed(
            "No repository specified! Use '-r' to select one of the configured repositories",
        ));
    };
    let repos = selected(session)?;
    let local = open(session)?;
    let _watch = interrupt::watch(&options.cancel);
    for repo in &repos {
        let mut bar = Transfer::new(format!("pushing {name}"), show_progress(session));
        let mut report = options.events.transfer(Direction::Push, name);
        let img = remote::push(&local, repo, &session.b9_dir, name, &mut |done, total| {
            bar.update(done, total);
            report(done, total);
        })
        .map_err(Error::failed)?;
        drop(bar);
        writeln!(out, "pushed {} {} to `{id}`", img.name, img.build_id).map_err(Error::failed)?;
    }
    Ok(())
}

/// `b9 pull [NAME]`: pulls the metadata of the selected repositories, and
/// with a name the newest version of it into the local cache.
pub fn pull(
    session: &Session,
    name: Option<&str>,
    options: &TransferOptions,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let repos = selected(session)?;
    let cache = session.cache_root();
    let _watch = interrupt::watch(&options.cancel);
    match name {
        None => {
            for repo in &repos {
                let images =
                    remote::pull_metadata(&cache, repo, &session.b9_dir).map_err(Error::failed)?;
                writeln!(out, "`{}`: {} shared image versions", repo.id, images.len())
                    .map_err(Error::failed)?;
            }
        }
        Some(name) => {
            let local = open(session)?;
            let max = session.config.max_cached_shared_images;
            let mut bar = Transfer::new(format!("pulling {name}"), show_progress(session));
            let mut report = options.events.transfer(Direction::Pull, name);
            let img = remote::pull_image(
                &local,
                &cache,
                &repos,
                &session.b9_dir,
                name,
                max,
                &mut |done, total| {
                    bar.update(done, total);
                    report(done, total);
                },
            )
            .map_err(Error::failed)?;
            drop(bar);
            writeln!(out, "pulled {} {} ({})", img.name, img.build_id, img.date)
                .map_err(Error::failed)?;
        }
    }
    Ok(())
}

/// `b9 clean-remote`: forgets the cached metadata of the selected remotes
/// (nothing on the servers changes).
pub fn clean_remote(session: &Session, out: &mut dyn Write) -> Result<(), Error> {
    for repo in selected(session)? {
        remote::clear_metadata(&session.cache_root(), &repo.id).map_err(Error::failed)?;
        writeln!(out, "cleared the metadata cache of `{}`", repo.id).map_err(Error::failed)?;
    }
    Ok(())
}
