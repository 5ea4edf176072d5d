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
    /// Ctrl-C or SIGTERM stopped the operation.
    #[error("interrupted by Ctrl-C or SIGTERM")]
    Interrupted,
    /// A request that cannot be met (bad size, partition number out of range, ...).
    #[error("{0}")]
    Invalid(String),
}
