//! Shared images: the local cache (`list`, `clean-local`) and remote
//! repositories over SSH (`push`, `pull`, `clean-remote`). Each function
//! returns what it found or did as values; [`Listing`] prints as `b9 list`
//! does. Transfers show a progress bar on stderr when it is a terminal.

use std::fmt;
use std::path::PathBuf;

use super::error::Error;
use super::image::ImageFormat;
use super::session::Session;
use crate::config::{LogLevel, RemoteRepo};
use crate::events::{Direction, Events};
use crate::interrupt::{self, CancelToken};
use crate::lang::syntax::ImageType;
use crate::progress::Transfer;
use crate::repo::{self, remote, LocalRepo};

/// One version of a shared image (a `.b9si` file and its image).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedImage {
    /// Its name (`SharedImageName`).
    pub name: String,
    /// When it was built, e.g. `2023-04-19-14:31:45`.
    pub date: String,
    /// The build id of the build that shared it.
    pub build_id: String,
    /// The format of its image file.
    pub format: ImageFormat,
}

impl From<repo::SharedImage> for SharedImage {
    fn from(img: repo::SharedImage) -> SharedImage {
        SharedImage {
            name: img.name,
            date: img.date,
            build_id: img.build_id,
            format: match img.image_type {
                ImageType::Raw => ImageFormat::Raw,
                ImageType::QCow2 => ImageFormat::Qcow2,
                ImageType::Vmdk => ImageFormat::Vmdk,
            },
        }
    }
}

fn public(images: Vec<repo::SharedImage>) -> Vec<SharedImage> {
    images.into_iter().map(SharedImage::from).collect()
}

/// Where a [`Listing`] comes from.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The local cache, its images directory.
    Local(PathBuf),
    /// The cached metadata of the remote repository of this id.
    Remote(String),
}

/// The shared images of the local cache or of a remote repository. Its
/// `Display` is what `b9 list` prints: a heading, then the original's table
/// (columns `Name`, `Date`, `ID`).
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct Listing {
    /// Where the images are.
    pub source: Source,
    /// The versions, ordered by name, date and build id.
    pub images: Vec<SharedImage>,
    /// Entries skipped because they are unreadable or incomplete.
    pub warnings: Vec<String>,
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Local(dir) => writeln!(f, "Local shared images in {}:", dir.display())?,
            Source::Remote(id) => writeln!(
                f,
                "Shared images of remote repository `{id}` (as of the last pull):"
            )?,
        }
        f.write_str(&table(&self.images))
    }
}

/// The table as the original's `prettyPrintSharedImages` (a `boxes` table):
/// columns left-aligned, separated by one space, every line padded to the
/// column widths. An empty list gives `NO SHARED IMAGES` surrounded by the
/// original's blank lines.
fn table(images: &[SharedImage]) -> String {
    if images.is_empty() {
        return "\n\nNO SHARED IMAGES\n".into();
    }
    let cols: [(&str, Vec<&str>); 3] = [
        ("Name", images.iter().map(|i| i.name.as_str()).collect()),
        ("Date", images.iter().map(|i| i.date.as_str()).collect()),
        ("ID", images.iter().map(|i| i.build_id.as_str()).collect()),
    ];
    let widths: Vec<usize> = cols
        .iter()
        .map(|(t, cells)| {
            cells
                .iter()
                .map(|c| c.chars().count())
                .chain([t.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in 0..=images.len() {
        let cells = cols.iter().zip(&widths).map(|((title, cells), w)| {
            let c = if row == 0 { title } else { &cells[row - 1] };
            format!("{c:<w$}")
        });
        out.push_str(&cells.collect::<Vec<_>>().join(" "));
        out.push('\n');
    }
    out
}

fn open(session: &Session) -> Result<LocalRepo, Error> {
    LocalRepo::open(&session.cache_root()).map_err(Error::failed)
}

/// `b9 list`: the versions in the local cache.
pub fn list(session: &Session) -> Result<Listing, Error> {
    let repo = open(session)?;
    let (images, warnings) = repo.list().map_err(Error::failed)?;
    Ok(Listing {
        source: Source::Local(repo.images_dir()),
        images: public(images),
        warnings: warnings.iter().map(ToString::to_string).collect(),
    })
}

/// `b9 list -r ID`: the cached metadata of the remote `id` (see
/// [`pull_metadata`]).
pub fn list_remote(session: &Session, id: &str) -> Listing {
    let dir = remote::metadata_dir(&session.cache_root(), id);
    Listing {
        source: Source::Remote(id.to_string()),
        images: public(remote::read_metadata(&dir)),
        warnings: Vec::new(),
    }
}

/// `b9 clean-local`: keeps the newest `max_cached_shared_images` versions
/// of every name (none when unset, as the original); returns the versions
/// removed.
pub fn clean_local(session: &Session) -> Result<Vec<SharedImage>, Error> {
    let repo = open(session)?;
    let removed = repo
        .clean(session.config.max_cached_shared_images)
        .map_err(Error::failed)?;
    Ok(public(removed))
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
            .ok_or_else(|| not_configured(id)),
        None => Ok(config.repos.clone()),
    }
}

/// The error for a selected repository that is not configured.
fn not_configured(id: &str) -> Error {
    Error::failed(format!(
        "selected remote repo `{id}` is not configured (add a [{id}-repo] section or use `b9 add-repo`)"
    ))
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

/// A version uploaded by [`push`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The id of the repository it went to.
    pub repository: String,
    /// The version.
    pub image: SharedImage,
}

/// `b9 push NAME`: uploads the newest cached version of `name` to the
/// selected repository (`repository` of the configuration); returns it.
pub fn push(session: &Session, name: &str, options: &TransferOptions) -> Result<Pushed, Error> {
    let Some(id) = &session.config.repository else {
        return Err(Error::failed(
            "No repository specified! Use '-r' to select one of the configured repositories",
        ));
    };
    let repo = session.config.repo(id).ok_or_else(|| not_configured(id))?;
    let local = open(session)?;
    let _watch = interrupt::watch(&options.cancel);
    let image = transfer(session, options, Direction::Push, name, |progress| {
        remote::push(&local, repo, &session.b9_dir, name, progress)
    })?;
    Ok(Pushed {
        repository: id.clone(),
        image,
    })
}

/// `b9 pull`: fetches the metadata of the selected repositories (all
/// configured ones when none is selected) into the local cache, for
/// [`list_remote`] and for `From` images; returns what each holds.
pub fn pull_metadata(session: &Session, options: &TransferOptions) -> Result<Vec<Listing>, Error> {
    let repos = selected(session)?;
    let cache = session.cache_root();
    let _watch = interrupt::watch(&options.cancel);
    repos
        .iter()
        .map(|repo| {
            let images =
                remote::pull_metadata(&cache, repo, &session.b9_dir).map_err(Error::failed)?;
            Ok(Listing {
                source: Source::Remote(repo.id.clone()),
                images: public(images),
                warnings: Vec::new(),
            })
        })
        .collect()
}

/// `b9 pull NAME`: pulls the metadata of the selected repositories and the
/// newest version of `name` among them into the local cache; returns it.
pub fn pull(
    session: &Session,
    name: &str,
    options: &TransferOptions,
) -> Result<SharedImage, Error> {
    let repos = selected(session)?;
    let cache = session.cache_root();
    let local = open(session)?;
    let max = session.config.max_cached_shared_images;
    let _watch = interrupt::watch(&options.cancel);
    transfer(session, options, Direction::Pull, name, |progress| {
        remote::pull_image(&local, &cache, &repos, &session.b9_dir, name, max, progress)
    })
}

/// Runs one image transfer (a push or a pull) with a progress bar and
/// transfer events.
fn transfer<E: fmt::Display>(
    session: &Session,
    options: &TransferOptions,
    direction: Direction,
    name: &str,
    run: impl FnOnce(&mut dyn FnMut(u64, u64)) -> Result<repo::SharedImage, E>,
) -> Result<SharedImage, Error> {
    let verb = if direction == Direction::Push {
        "pushing"
    } else {
        "pulling"
    };
    let mut bar = Transfer::new(format!("{verb} {name}"), show_progress(session));
    let mut report = options.events.transfer(direction, None, name);
    let image = run(&mut |done, total| {
        bar.update(done, total);
        report(done, total);
    })
    .map_err(Error::failed)?;
    drop(bar);
    Ok(image.into())
}

/// `b9 clean-remote`: forgets the cached metadata of the selected remotes
/// (nothing on the servers changes); returns their ids.
pub fn clean_remote(session: &Session) -> Result<Vec<String>, Error> {
    selected(session)?
        .into_iter()
        .map(|repo| {
            remote::clear_metadata(&session.cache_root(), &repo.id).map_err(Error::failed)?;
            Ok(repo.id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_prints_the_original_table() {
        let img = |n: &str, d: &str, b: &str| SharedImage {
            name: n.into(),
            date: d.into(),
            build_id: b.into(),
            format: ImageFormat::Raw,
        };
        let listing = Listing {
            source: Source::Remote("r".into()),
            images: vec![
                img("fedora", "2023-04-19-14:31:45", "0123ABCD"),
                img("a", "2023-04-20-00:00:00", "1"),
            ],
            warnings: Vec::new(),
        };
        assert_eq!(
            listing.to_string(),
            "Shared images of remote repository `r` (as of the last pull):\n\
             Name   Date                ID      \n\
             fedora 2023-04-19-14:31:45 0123ABCD\n\
             a      2023-04-20-00:00:00 1       \n"
        );
        let empty = Listing {
            source: Source::Local("/c/images".into()),
            images: Vec::new(),
            warnings: Vec::new(),
        };
        assert_eq!(
            empty.to_string(),
            "Local shared images in /c/images:\n\n\nNO SHARED IMAGES\n"
        );
    }
}
