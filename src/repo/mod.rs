//! The shared-image repository: versions of named disk images with their
//! `.b9si` metadata, kept in a local cache (docs/COMPATIBILITY.md#repository).
//!
//! Layout (compatible with the original b9): below the cache root
//! ([`cache_root`], default `~/.b9/repo-cache`) the local images live in
//! `local-repo/b9_shared_images/`, each version as `<name>_<buildid>.<ext>`
//! plus `<name>_<buildid>.b9si`. See [`LocalRepo`] for how several b9
//! processes share one cache safely. Remote repositories are not handled here.

mod local;
pub mod remote;
mod shared_image;
pub mod ssh;

use std::fmt;
use std::path::{Path, PathBuf};

pub use local::{LocalRepo, IMAGES_DIR, LOCK_FILE};
pub use shared_image::{is_safe_component, SharedImage, INFO_EXTENSION};

use crate::config::SystemPath;

/// What went wrong in a repository operation.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file system operation failed.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What b9 was doing, e.g. "cannot read".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `.b9si` file does not hold a shared image.
    #[error("{}:{line}:{column}: not a valid shared image description: {message}", path.display())]
    Corrupt {
        /// The `.b9si` file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// No version of the named image is in the cache.
    #[error("Nothing found for shared image `{0}` in the local cache (pull it from a remote repository first)")]
    NotFound(String),
    /// A revision limit below 1 (docs/COMPATIBILITY.md#revision-limit) or a negative `clean-local` limit.
    #[error("invalid max_cached_shared_images `{0}`: {1}")]
    InvalidLimit(i64, &'static str),
    /// A name or build id that cannot be part of a file name.
    #[error("invalid shared image {what} {value:?}: it must be non-empty and contain no `/`")]
    InvalidName {
        /// "name" or "build id".
        what: &'static str,
        /// The rejected value.
        value: String,
    },
}

impl RepoError {
    /// An [`RepoError::Io`] for `path`.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> RepoError {
        RepoError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A problem found while scanning the cache that does not stop the operation
/// (e.g. a broken `.b9si`, which is skipped and left on disk).
#[derive(Debug)]
pub struct RepoWarning {
    /// The file concerned.
    pub path: PathBuf,
    /// What is wrong (for a broken `.b9si`, the full [`RepoError`] text).
    pub message: String,
}

impl fmt::Display for RepoWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipping `{}`: {}", self.path.display(), self.message)
    }
}

/// The cache root: the configured `repository_cache` resolved against
/// `b9_dir` (`~/.b9`), or `<b9_dir>/repo-cache` when unset (the original's
/// `defaultRepositoryCache`).
pub fn cache_root(repository_cache: Option<&SystemPath>, b9_dir: &Path) -> PathBuf {
    match repository_cache {
        Some(sp) => sp.resolve(b9_dir),
        None => SystemPath::InB9UserDir("repo-cache".into()).resolve(b9_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cache_root() {
        assert_eq!(
            cache_root(None, Path::new("/h/.b9")),
            PathBuf::from("/h/.b9/repo-cache")
        );
        let configured = SystemPath::Path("/var/cache/b9".into());
        assert_eq!(
            cache_root(Some(&configured), Path::new("/h/.b9")),
            PathBuf::from("/var/cache/b9")
        );
    }
}
