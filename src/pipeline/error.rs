//! Why an artifact failed: the disk, media, repository, appliance and VM
//! errors with the path or context they happened in, and the pipeline's
//! own refusals. Displayed as b9 reports them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::content::error::ContentError;
use crate::disk::DiskError;
use crate::lock::LockError;
use crate::media::MediaError;
use crate::repo::RepoError;
use crate::vm::launch::LaunchError;
use crate::vm::run::RunError;

/// Why a build step failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was done (`create`, `write`, `move`...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An output could not be moved into place.
    #[error("cannot move {} into place: {source}", path.display())]
    IntoPlace {
        /// The destination.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An output or the build directory is taken by another b9, or its
    /// lock file failed.
    #[error("{}", .error.describe(.lock, .what))]
    Lock {
        /// The lock's error.
        error: LockError,
        /// The lock file.
        lock: PathBuf,
        /// What it protects.
        what: PathBuf,
    },
    /// Something b9 did not make is where an output goes.
    #[error("{}{what} exists and was not made by b9 (or was changed since); remove it or choose another output path", path.display())]
    NotReplaceable {
        /// The destination.
        path: PathBuf,
        /// What it is, when not a directory (` (a symbolic link)`...).
        what: &'static str,
    },
    /// The build directory exists and is not b9's.
    #[error("{} exists and was not made by b9; remove it or choose another build directory (-b)", .0.display())]
    ForeignBuildDir(PathBuf),
    /// A directory output could not be listed for its marker.
    #[error("cannot list {} (or a name is not UTF-8)", .0.display())]
    Unlisted(PathBuf),
    /// Generated files.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Images.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Installation media.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The shared-image cache.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// `From` names an image the cache does not hold.
    #[error("{0} (shared images come from `b9 pull` or a `Share` build)")]
    NoSharedImage(#[source] RepoError),
    /// The appliance could not be prepared.
    #[error(transparent)]
    Appliance(#[from] Arc<LaunchError>),
    /// A step cache entry could not be restored.
    #[error("step cache: {0}")]
    StepCache(#[from] crate::stepcache::CacheError),
    /// The appliance run failed.
    #[error("{source}\n(console log: {})", console_log.display())]
    Vm {
        /// The run's error.
        source: RunError,
        /// The run's console log.
        console_log: PathBuf,
    },
    /// A script without an image mounted at `/`.
    #[error("a VmScript needs an image mounted at `/` (MountPoint \"/\")")]
    NoRoot,
    /// A command of the script failed.
    #[error("the script failed: command {number} `{line}`{who} exited with status {status}\nlast output:\n{tail}")]
    ScriptFailed {
        /// The command's number (from 1).
        number: usize,
        /// The command line.
        line: String,
        /// ` as USER`, ` in DIR`, or nothing.
        who: String,
        /// Its exit status.
        status: i32,
        /// The last lines of its output.
        tail: String,
    },
    /// The agent stopped before the last command.
    #[error("the agent ran {ran} of {of} commands")]
    Incomplete {
        /// Commands run.
        ran: usize,
        /// Commands asked.
        of: usize,
    },
    /// The agent reported a disk b9 did not attach.
    #[error("the agent resized an unknown disk {0}")]
    UnknownDisk(String),
    /// The agent reported a file system larger than its scratch disk.
    #[error("the agent reports a {size}-byte file system on a {len}-byte scratch disk")]
    ScratchTooSmall {
        /// The file system's size.
        size: u64,
        /// The scratch disk's size.
        len: u64,
    },
    /// The post-fix script failed.
    #[error("the post-fix script {} exited with status {code}", path.display())]
    PostFixStatus {
        /// The script.
        path: PathBuf,
        /// Its exit status.
        code: i32,
    },
    /// The post-fix script ran out of time.
    #[error("the post-fix script was killed after the timeout of {0:?}")]
    PostFixTimeout(Duration),
    /// Waiting for the post-fix script failed.
    #[error("waiting for the post-fix script: {0}")]
    PostFixWait(#[source] std::io::Error),
}

impl BuildError {
    /// A failed file-system operation `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BuildError::Io { op, path, source }
    }
}
