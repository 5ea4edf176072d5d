//! Writing an instance's generated files into its directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::content::error::ContentError;
use crate::content::render::Renderer;
use crate::eval::expand::{Instance, WriterInput};

/// Writes every file of `inst` under `dir` (created if missing), in order, so
/// later writers of a path win; applies `SetPermissions` modes.
pub fn write_sources(
    inst: &Instance,
    dir: &Path,
    renderer: &Renderer<'_>,
) -> Result<(), ContentError> {
    fs::create_dir_all(dir).map_err(|source| ContentError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for w in &inst.writers {
        let target = inside(dir, &w.output.value)?;
        let bytes = match &w.input {
            WriterInput::File { path, expand } => {
                renderer.read(&renderer.cwd.join(&path.value), *expand)?
            }
            WriterInput::Content(c) => renderer.content(c)?,
        };
        let write_err = |source| ContentError::Write {
            path: target.clone(),
            source,
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(write_err)?;
        }
        fs::write(&target, &bytes).map_err(write_err)?;
        if let Some(mode) = &w.mode {
            let [o, g, a] = mode.value;
            let bits = (o as u32 & 7) << 6 | (g as u32 & 7) << 3 | (a as u32 & 7);
            fs::set_permissions(&target, fs::Permissions::from_mode(bits)).map_err(write_err)?;
        }
    }
    Ok(())
}

/// `dir/rel`, refusing absolute paths and paths that climb out of `dir`.
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, ContentError> {
    let outside = || ContentError::OutsideInstance {
        path: rel.to_string(),
    };
    let mut out = dir.to_path_buf();
    let mut depth = 0usize;
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            _ => return Err(outside()),
        }
    }
    if depth == 0 {
        return Err(outside());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_instance_directory() {
        let d = Path::new("/b/i");
        assert_eq!(
            inside(d, "etc/hosts").ok(),
            Some(PathBuf::from("/b/i/etc/hosts"))
        );
        assert_eq!(inside(d, "./a/../b").ok(), Some(PathBuf::from("/b/i/b")));
        assert!(inside(d, "../x").is_err());
        assert!(inside(d, "a/../../x").is_err());
        assert!(inside(d, "/etc/passwd").is_err());
        assert!(inside(d, "").is_err());
        assert!(inside(d, ".").is_err());
    }
}
