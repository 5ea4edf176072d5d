//! Why generating a file failed.

use std::path::PathBuf;

/// An error while rendering content or writing an instance's files.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A host file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A generated file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A text file is not UTF-8.
    #[error("{} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A template (a file or a path) is malformed or uses an undefined variable.
    #[error("{origin}:{line}:{column}: {message}")]
    Template {
        /// The file, or a description of the string.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A YAML text does not parse.
    #[error("invalid YAML in {origin}{}: {message}", at(*line, *column))]
    Yaml {
        /// The file, or `YamlObject literal`.
        origin: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// An Erlang term does not parse.
    #[error("invalid Erlang term in {origin} at line {line}, column {column}: {message}")]
    Erlang {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// `ASTMerge []`.
    #[error("`ASTMerge` must not be used with an empty list")]
    EmptyMerge,
    /// A generated output path leaves the instance directory.
    #[error("output path {path:?} must be a relative path inside the instance directory")]
    OutsideInstance {
        /// The path as written.
        path: String,
    },
    /// A download answered with an HTTP error status.
    #[error("download of {url} failed: HTTP status {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code (>= 400).
        status: u16,
    },
    /// A download failed (connection, timeout, too many redirects, ...).
    #[error("download of {url} failed: {message}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}
