//! b9's companion programs (`b9-libvirt`, and `b9` itself when the library
//! runs inside another executable) are installed next to `b9`.

use std::path::{Path, PathBuf};

/// Where the program `name` is: next to the running executable, or, for
/// cargo's test executables in `target/*/deps`, one directory up.
pub fn program(name: &str) -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find b9's own executable: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut tried = vec![dir.join(name)];
    if dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(up) = dir.parent() {
            tried.push(up.join(name));
        }
    }
    match tried.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(format!(
            "b9 needs the program {name} installed next to it (looked for {})",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
