//! Where a build's relative paths are resolved, and lexical path
//! normalization; shared by the checks and the output rules.

use std::path::{Component, Path, PathBuf};

/// Where relative paths are resolved.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// The process working directory: source files, shares and outputs.
    pub cwd: PathBuf,
    /// `projectRoot`: `SourceImage` and `CopyOnWrite` images.
    pub project_root: PathBuf,
    /// Other directories no output may be or contain, with what they are
    /// (the shared-image cache, the home directory): `eval::outputs`.
    pub protected: Vec<(String, PathBuf)>,
}

/// Removes `.` and resolves `..` without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
