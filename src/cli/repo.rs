//! Shared-image commands: `list`, `clean-local`, and over SSH `push`,
//! `pull`, `clean-remote`.

use std::io::Write;

use crate::cli::session::Session;
use crate::cli::{fail, usage, Failure};
use crate::config::LogLevel;
use crate::config::RemoteRepo;
use crate::progress::Transfer;
use crate::repo::{remote, render_list, LocalRepo};

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

/// The repositories a command works on: the one selected with `-r` (or
/// `repository` in b9.conf), else every configured one.
fn selected(session: &Session) -> Result<Vec<RemoteRepo>, Failure> {
    let config = &session.config;
    match &config.repository {
        Some(id) => config
            .repo(id)
            .cloned()
            .map(|r| vec![r])
            .ok_or_else(|| fail(format!("selected remote repo `{id}` is not configured (add a [{id}-repo] section or use `b9 add-repo`)"))),
        None => Ok(config.repos.clone()),
    }
}

/// `b9 list -r ID`: the cached metadata of a remote (pull it first).
pub fn list_remote(session: &Session, id: &str, out: &mut impl Write) -> Result<(), Failure> {
    let dir = remote::metadata_dir(&session.cache_root(), id);
    let images = remote::read_metadata(&dir);
    let text = format!(
        "Shared images of remote repository `{id}` (as of the last pull):\n{}",
        render_list(&images)
    );
    out.write_all(text.as_bytes()).map_err(fail)
}

/// Whether transfers show a progress bar (on a terminal): not with `-q`
/// (or a configured verbosity of errors only or nothing).
fn show_progress(session: &Session) -> bool {
    !matches!(
        session.config.verbosity,
        Some(LogLevel::Error | LogLevel::Off)
    )
}

/// `b9 push NAME`: upload the newest cached version to the selected repository.
pub fn push(session: &Session, name: &str, out: &mut impl Write) -> Result<(), Failure> {
    let Some(id) = &session.config.repository else {
        return Err(fail(
            "No repository specified! Use '-r' to select one of the configured repositories",
        ));
    };
    let repos = selected(session)?;
    let local = open(session)?;
    for repo in &repos {
        let mut bar = Transfer::new(format!("pushing {name}"), show_progress(session));
        let img = remote::push(&local, repo, &session.b9_dir, name, &mut |done, total| {
            bar.update(done, total)
        })
        .map_err(fail)?;
        drop(bar);
        writeln!(out, "pushed {} {} to `{id}`", img.name, img.build_id).map_err(fail)?;
    }
    Ok(())
}

/// `b9 pull [NAME]`: pull the metadata of the selected repositories, and
/// with a name the newest version of it into the local cache.
pub fn pull(session: &Session, name: Option<&str>, out: &mut impl Write) -> Result<(), Failure> {
    let repos = selected(session)?;
    let cache = session.cache_root();
    match name {
        None => {
            for repo in &repos {
                let images = remote::pull_metadata(&cache, repo, &session.b9_dir).map_err(fail)?;
                writeln!(out, "`{}`: {} shared image versions", repo.id, images.len())
                    .map_err(fail)?;
            }
        }
        Some(name) => {
            let local = open(session)?;
            let max = session.config.max_cached_shared_images;
            let mut bar = Transfer::new(format!("pulling {name}"), show_progress(session));
            let img = remote::pull_image(
                &local,
                &cache,
                &repos,
                &session.b9_dir,
                name,
                max,
                &mut |done, total| bar.update(done, total),
            )
            .map_err(fail)?;
            drop(bar);
            writeln!(out, "pulled {} {} ({})", img.name, img.build_id, img.date).map_err(fail)?;
        }
    }
    Ok(())
}

/// `b9 clean-remote`: forget the cached metadata of the selected remotes
/// (nothing on the servers changes).
pub fn clean_remote(session: &Session, out: &mut impl Write) -> Result<(), Failure> {
    for repo in selected(session)? {
        remote::clear_metadata(&session.cache_root(), &repo.id).map_err(fail)?;
        writeln!(out, "cleared the metadata cache of `{}`", repo.id).map_err(fail)?;
    }
    Ok(())
}

/// What `b9 add-repo` records.
pub struct NewRepo<'a> {
    /// Repository id (section `[<id>-repo]`).
    pub id: &'a str,
    /// Directory on the server.
    pub remote_dir: &'a str,
    /// Private key file (must exist; stored absolute).
    pub key: &'a std::path::Path,
    /// Server.
    pub host: &'a str,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: &'a str,
}

/// `b9 add-repo`: adds or replaces a `[<id>-repo]` section in the
/// configuration file (the first `-c` path, else `~/.b9/b9.conf`), keeping
/// every other section and key as it was.
pub fn add_repo(
    global: &crate::cli::args::GlobalArgs,
    new: &NewRepo<'_>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let key = std::fs::canonicalize(new.key)
        .map_err(|e| usage(format!("ssh private key {}: {e}", new.key.display())))?;
    let b9_dir = crate::config::default_b9_dir()
        .ok_or_else(|| usage("cannot find the b9 directory: $HOME is not set"))?;
    let located =
        crate::config::locate(&global.config, &b9_dir).map_err(|d| Failure::from(vec![d]))?;
    let loaded = crate::config::load(&located).map_err(Failure::from)?;
    let mut config = loaded.config.clone();
    config.repos.retain(|r| r.id != new.id);
    config.repos.push(RemoteRepo {
        id: new.id.to_string(),
        remote_path: new.remote_dir.to_string(),
        ssh_priv_key_file: key,
        ssh_remote_host: new.host.to_string(),
        ssh_remote_port: new.port,
        ssh_remote_user: new.user.to_string(),
    });
    let text = loaded.render_updated(&config);
    crate::cli::reformat::write_atomically(&located.write_path, &text).map_err(fail)?;
    writeln!(
        out,
        "added repository `{}` to {}",
        new.id,
        located.write_path.display()
    )
    .map_err(fail)
}
