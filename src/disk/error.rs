//! Why a disk-image operation failed.

use std::path::PathBuf;

/// An error reading, writing or converting a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// An I/O error on a file.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot read", "cannot create", ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The image is not valid: a field has an impossible value.
    #[error("{}: invalid {format} image: {field}: {problem}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// `qcow2`, `vmdk`, `MBR`, `GPT`, ...
        format: &'static str,
        /// The header field or structure at fault.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The image is valid but uses something b9 does not support.
    #[error("{}: unsupported {format} image: {what}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The format.
        format: &'static str,
        /// What is not supported.
        what: String,
    },
    /// An image file (or a file an image names) that is not a regular file.
    #[error(
        "{}: {kind}, not a regular file (disk images and their backing and extent files must be regular files)",
        path.display()
    )]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is: "a named pipe (FIFO)", "a character device", ...
        kind: &'static str,
    },
    /// A file an image names resolves outside the image's directory.
    #[error(
        "{}: {what} {reference:?} resolves to {}, outside the image's directory {}: \
         images are untrusted input, so the files they name must lie in their own directory \
         (no absolute paths elsewhere, no `..` or symbolic links out of it)\n  \
         hint: if the image is trusted, add the directory to `{}` in [global] of b9.conf, \
         e.g. {}: [\"{}\"]",
        image.display(),
        resolved.display(),
        dir.display(),
        crate::disk::gate::TRUSTED_DIRS_KEY,
        crate::disk::gate::TRUSTED_DIRS_KEY,
        resolved.parent().unwrap_or(resolved).display()
    )]
    Escapes {
        /// The image.
        image: PathBuf,
        /// What it names: "backing file", "extent file", "external data file".
        what: &'static str,
        /// The name as recorded in the image.
        reference: PathBuf,
        /// Where it leads (canonical).
        resolved: PathBuf,
        /// The image's directory (canonical).
        dir: PathBuf,
    },
    /// Ctrl-C or SIGTERM stopped the operation.
    #[error("interrupted by Ctrl-C or SIGTERM")]
    Interrupted,
    /// A request that cannot be met (bad size, partition number out of range, ...).
    #[error("{0}")]
    Invalid(String),
}
