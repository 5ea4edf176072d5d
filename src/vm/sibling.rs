//! b9's companion programs (`b9-libvirt`, and `b9` itself when the library
//! runs inside another executable) are installed next to `b9`.

use std::path::{Path, PathBuf};

/// Why a companion program was not found.
#[derive(Debug, thiserror::Error)]
pub enum SiblingError {
    /// The running executable is unknown.
    #[error("cannot find b9's own executable: {0}")]
    OwnExecutable(#[source] std::io::Error),
    /// The program is not installed next to `b9`.
    #[error("b9 needs the program {name} installed next to it (looked for {tried})")]
    Missing {
        /// The program.
        name: String,
        /// The paths looked at, comma-separated.
        tried: String,
    },
}

/// Where the program `name` is: next to the running executable, or, for
/// cargo's test executables in `target/*/deps`, one directory up.
pub fn program(name: &str) -> Result<PathBuf, SiblingError> {
    let exe = std::env::current_exe().map_err(SiblingError::OwnExecutable)?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut tried = vec![dir.join(name)];
    if dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(up) = dir.parent() {
            tried.push(up.join(name));
        }
    }
    match tried.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(SiblingError::Missing {
            name: name.to_string(),
            tried: tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
