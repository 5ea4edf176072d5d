//! Finding the configuration file(s) (docs/COMPATIBILITY.md#config-files).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;

use super::{render_default, COMPAT_VERSION};

/// The result of [`locate`]: which files to load and where to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The files to load, in order; later files override keys of earlier ones.
    /// Never empty.
    pub files: Vec<PathBuf>,
    /// Paths given with several `-c` that do not exist (skipped).
    pub skipped: Vec<PathBuf>,
    /// Where `add-repo` writes: the first `-c` path as given (not the
    /// version-suffixed file actually read), else `<b9_dir>/b9.conf`.
    pub write_path: PathBuf,
    /// True when no config existed and `<b9_dir>/b9.conf` was just created
    /// from the defaults; the CLI then prints [`Located::notice`].
    pub created: bool,
}

impl Located {
    /// The two notice lines to print after creating the default config file
    /// (empty when nothing was created).
    pub fn notice(&self) -> Vec<String> {
        if !self.created {
            return Vec::new();
        }
        let path = self.write_path.display();
        vec![
            format!("No configuration file found; created the default configuration file {path}"),
            format!("Edit {path} to change the defaults (see the [global], [vm] and [libvirt] sections)."),
        ]
    }
}

/// `~/.b9` from `$HOME`; `None` when `$HOME` is unset or empty.
pub fn default_b9_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".b9"))
}

/// The candidate names for one path: `P.4.0.0`, `P.4.0`, `P.4`, `P`.
pub fn versioned_candidates(path: &Path) -> Vec<PathBuf> {
    let parts: Vec<&str> = COMPAT_VERSION.split('.').collect();
    let mut out = Vec::new();
    for n in (1..=parts.len()).rev() {
        let mut name = OsString::from(path.as_os_str());
        name.push(".");
        name.push(parts[..n].join("."));
        out.push(PathBuf::from(name));
    }
    out.push(path.to_path_buf());
    out
}

/// Finds the configuration to load (docs/COMPATIBILITY.md#config-files), for the `-c` paths given
/// (`config_args`, in order) and the b9 directory `b9_dir` (`~/.b9`).
///
/// * No `-c`: the first of `b9.conf.4.0.0`, `b9.conf.4.0`, `b9.conf.4`,
///   `b9.conf` in `b9_dir` that exists. If none exists, `b9_dir/b9.conf` is
///   created from [`render_default`] (the directory too) and
///   [`Located::created`] is set.
/// * One `-c P`: the first of `P.4.0.0`, `P.4.0`, `P.4`, `P` that exists.
/// * Several `-c`: the paths as given, without suffixes; **every one that
///   exists is loaded**, merged in the order given (later files override keys
///   of earlier ones); the others are listed in [`Located::skipped`].
///
/// With `-c` and no existing file the error is "Please provide a valid
/// config file path." with the paths tried as notes.
// The error is one `Diagnostic`, as the CLI prints it; it is not on a hot path.
#[allow(clippy::result_large_err)]
pub fn locate(config_args: &[PathBuf], b9_dir: &Path) -> Result<Located, Diagnostic> {
    match config_args {
        [] => {
            let default = b9_dir.join("b9.conf");
            if let Some(found) = versioned_candidates(&default)
                .into_iter()
                .find(|p| p.is_file())
            {
                return Ok(Located {
                    files: vec![found],
                    skipped: Vec::new(),
                    write_path: default,
                    created: false,
                });
            }
            create_default(b9_dir, &default)?;
            Ok(Located {
                files: vec![default.clone()],
                skipped: Vec::new(),
                write_path: default,
                created: true,
            })
        }
        [single] => {
            let tried = versioned_candidates(single);
            match tried.iter().find(|p| p.is_file()) {
                Some(found) => Ok(Located {
                    files: vec![found.clone()],
                    skipped: Vec::new(),
                    write_path: single.clone(),
                    created: false,
                }),
                None => Err(not_found(&tried)),
            }
        }
        [first, ..] => {
            let (files, skipped): (Vec<PathBuf>, Vec<PathBuf>) =
                config_args.iter().cloned().partition(|p| p.is_file());
            if files.is_empty() {
                return Err(not_found(config_args));
            }
            Ok(Located {
                files,
                skipped,
                write_path: first.clone(),
                created: false,
            })
        }
    }
}

fn not_found(tried: &[PathBuf]) -> Diagnostic {
    let reasons: Vec<(&PathBuf, String)> = tried.iter().map(|p| (p, why_not_loaded(p))).collect();
    // The original's words first; then what is wrong with a path that exists.
    let mut message = "Please provide a valid config file path.".to_string();
    if let Some((p, why)) = reasons.iter().find(|(_, why)| why != NOT_FOUND) {
        message = format!("{message} {} {why}", p.display());
    }
    let mut d = Diagnostic::error(message);
    for (p, why) in &reasons {
        d = d.with_note(format!("tried {}: {why}", p.display()));
    }
    d.with_hint("without `-c`, b9 uses ~/.b9/b9.conf and creates it with the defaults")
}

const NOT_FOUND: &str = "not found";

/// Why `path`, which is not a regular file, cannot be loaded.
fn why_not_loaded(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => "is a directory, not a configuration file".into(),
        Ok(_) => "is not a regular file".into(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NOT_FOUND.into(),
        Err(e) => format!("cannot be read: {e}"),
    }
}

#[allow(clippy::result_large_err)]
fn create_default(b9_dir: &Path, file: &Path) -> Result<(), Diagnostic> {
    std::fs::create_dir_all(b9_dir).map_err(|e| {
        Diagnostic::error(format!(
            "cannot create the directory {}: {e}",
            b9_dir.display()
        ))
    })?;
    // Written whole under a temporary name, then linked into place: a
    // concurrent b9 never reads a partly written file.
    let tmp = crate::disk::capability::staging_path(file);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(render_default().as_bytes()))
        .and_then(|()| std::fs::hard_link(&tmp, file));
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(()),
        // Created concurrently by another b9: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Diagnostic::error(format!(
            "cannot write the default configuration file {}: {e}",
            file.display()
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn touch(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn candidates_for_a_path() {
        let c = versioned_candidates(Path::new("/x/b9.conf"));
        let names: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "/x/b9.conf.4.0.0",
                "/x/b9.conf.4.0",
                "/x/b9.conf.4",
                "/x/b9.conf"
            ]
        );
    }

    #[test]
    fn no_c_prefers_the_most_specific_version() {
        let dir = tempfile::tempdir().unwrap();
        let b9 = dir.path();
        touch(&b9.join("b9.conf"), "");
        touch(&b9.join("b9.conf.4"), "");
        let l = locate(&[], b9).unwrap();
        assert_eq!(l.files, [b9.join("b9.conf.4")]);
        assert_eq!(l.write_path, b9.join("b9.conf"));
        assert!(!l.created);
        touch(&b9.join("b9.conf.4.0.0"), "");
        assert_eq!(locate(&[], b9).unwrap().files, [b9.join("b9.conf.4.0.0")]);
        touch(&b9.join("b9.conf.4.0"), "");
        assert_eq!(locate(&[], b9).unwrap().files, [b9.join("b9.conf.4.0.0")]);
    }

    #[test]
    fn no_c_and_no_file_creates_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let b9 = dir.path().join("home/.b9");
        let l = locate(&[], &b9).unwrap();
        assert!(l.created);
        assert_eq!(l.files, [b9.join("b9.conf")]);
        assert_eq!(
            std::fs::read_to_string(b9.join("b9.conf")).unwrap(),
            render_default()
        );
        assert_eq!(l.notice().len(), 2);
        assert!(l.notice()[0].contains("b9.conf"));
        // The second time it is found, not created.
        let again = locate(&[], &b9).unwrap();
        assert!(!again.created);
        assert!(again.notice().is_empty());
    }

    #[test]
    fn one_c_tries_version_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("my.conf");
        let err = locate(std::slice::from_ref(&p), dir.path()).unwrap_err();
        assert_eq!(err.message, "Please provide a valid config file path.");
        assert_eq!(err.notes.len(), 4);
        assert!(err.notes[0].contains("my.conf.4.0.0"), "{:?}", err.notes);
        touch(&p, "");
        assert_eq!(
            locate(std::slice::from_ref(&p), dir.path()).unwrap().files,
            std::slice::from_ref(&p)
        );
        let v = dir.path().join("my.conf.4.0");
        touch(&v, "");
        let l = locate(std::slice::from_ref(&p), dir.path()).unwrap();
        assert_eq!(l.files, [v]);
        assert_eq!(l.write_path, p);
        // Nothing was created in the b9 directory.
        assert!(!dir.path().join("b9.conf").exists());
    }

    #[test]
    fn several_c_load_every_existing_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.conf");
        let b = dir.path().join("b.conf");
        let c = dir.path().join("c.conf");
        touch(&c, "");
        touch(&a, "");
        // A versioned name is not tried with several -c.
        touch(&dir.path().join("b.conf.4.0.0"), "");
        let l = locate(&[c.clone(), b.clone(), a.clone()], dir.path()).unwrap();
        assert_eq!(l.files, [c.clone(), a]);
        assert_eq!(l.skipped, std::slice::from_ref(&b));
        assert_eq!(l.write_path, c);
        let missing = dir.path().join("none.conf");
        let err = locate(&[b, missing], dir.path()).unwrap_err();
        assert_eq!(err.message, "Please provide a valid config file path.");
        assert_eq!(err.notes.len(), 2);
    }
}
