//! Configuration: `b9.conf` read from files (the CLI's `-c` list, else
//! `~/.b9/b9.conf`, created with the defaults when missing) or from text,
//! and the overrides the global flags set.

use std::path::{Path, PathBuf};

use super::diagnostic::{wrap, Diagnostic};
use super::error::Error;
use crate::config::{self, B9Config, Loaded};

pub use crate::config::{Accel, Backend, LogLevel, Overrides};

/// A loaded configuration, with what loading it found worth saying.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) config: B9Config,
    notices: Vec<String>,
    warnings: Vec<Diagnostic>,
}

impl Default for Config {
    /// The built-in defaults, as if from an empty `b9.conf`.
    fn default() -> Config {
        Config::of(B9Config::default(), Vec::new())
    }
}

impl Config {
    fn of(config: B9Config, notices: Vec<String>) -> Config {
        Config {
            config,
            notices,
            warnings: Vec::new(),
        }
    }

    fn loaded(loaded: Loaded, notices: Vec<String>) -> Config {
        Config {
            config: loaded.config,
            notices,
            warnings: wrap(loaded.warnings),
        }
    }

    /// Reads `files` in order, later ones overriding keys of earlier ones;
    /// with no files, `~/.b9/b9.conf` (created from the defaults when no
    /// configuration exists, which [`notices`](Config::notices) tells).
    /// Version-suffixed files (`b9.conf.4.0.0`) are found as the CLI finds
    /// them (docs/COMPATIBILITY.md#config-files).
    pub fn load(files: &[PathBuf]) -> Result<Config, Error> {
        let b9_dir = b9_dir()?;
        let located = config::locate(files, &b9_dir).map_err(Error::input_one)?;
        let notices = located.notice();
        Ok(Config::loaded(
            config::load(&located).map_err(Error::input)?,
            notices,
        ))
    }

    /// Reads the configuration from files when there is one: the `-c`
    /// `files`, or an existing `~/.b9/b9.conf`; `None` otherwise (nothing
    /// is created). For commands that need no configuration.
    pub fn load_existing(files: &[PathBuf]) -> Result<Option<Config>, Error> {
        let Some(b9_dir) = config::default_b9_dir() else {
            return Ok(None);
        };
        if files.is_empty()
            && !config::versioned_candidates(&b9_dir.join("b9.conf"))
                .iter()
                .any(|p| p.is_file())
        {
            return Ok(None);
        }
        Config::load(files).map(Some)
    }

    /// Reads a configuration from text; `name` names it in diagnostics.
    ///
    /// ```
    /// let text = "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\n\
    ///             log_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\n\
    ///             unique_build_dirs: False\nverbosity: Nothing\n";
    /// let config = b9::Config::from_text("b9.conf", text)?;
    /// assert!(config.warnings().is_empty());
    ///
    /// // A missing key is an error that names its place and how to fix it.
    /// let Err(b9::Error::Invalid(problems)) = b9::Config::from_text("b9.conf", "[global]\n") else {
    ///     panic!("an incomplete [global] section was accepted");
    /// };
    /// assert_eq!(problems[0].span().map(|s| s.start), Some((1, 1)));
    /// assert!(problems[0].hints()[0].contains("build_dir_root"));
    /// # Ok::<(), b9::Error>(())
    /// ```
    pub fn from_text(name: impl Into<PathBuf>, text: &str) -> Result<Config, Error> {
        Ok(Config::loaded(
            config::parse_str(name, text).map_err(Error::input)?,
            Vec::new(),
        ))
    }

    /// Applies the overrides that are set (as the global flags do).
    pub fn with_overrides(mut self, overrides: &Overrides) -> Config {
        self.config.apply(overrides);
        self
    }

    /// Notices for the user (a default file was created).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Warnings about the configuration (unknown keys, unused sections).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The configuration in `b9.conf` syntax.
    pub fn to_ini(&self) -> String {
        self.config.to_ini()
    }
}

/// `~/.b9`, or an error naming `$HOME`.
pub(crate) fn b9_dir() -> Result<PathBuf, Error> {
    config::default_b9_dir().ok_or_else(|| {
        Error::Invalid(vec![Diagnostic(
            crate::diag::Diagnostic::error("cannot find the b9 directory: $HOME is not set")
                .with_hint("set HOME, or name a configuration file with -c"),
        )])
    })
}

/// Adds (or replaces) the remote repository `repo` in the configuration
/// file `b9 add-repo` writes (the first of `files`, else `~/.b9/b9.conf`),
/// keeping every other section and key; returns that file.
pub fn add_repo(files: &[PathBuf], repo: &NewRepo) -> Result<PathBuf, Error> {
    let key = std::fs::canonicalize(&repo.ssh_priv_key_file).map_err(|e| {
        Error::invalid(format!(
            "ssh private key {}: {e}",
            repo.ssh_priv_key_file.display()
        ))
    })?;
    let b9_dir = config::default_b9_dir()
        .ok_or_else(|| Error::invalid("cannot find the b9 directory: $HOME is not set"))?;
    let located = config::locate(files, &b9_dir).map_err(Error::input_one)?;
    let loaded = config::load(&located).map_err(Error::input)?;
    let mut updated = loaded.config.clone();
    updated.repos.retain(|r| r.id != repo.id);
    updated.repos.push(config::RemoteRepo {
        id: repo.id.clone(),
        remote_path: repo.remote_directory.clone(),
        ssh_priv_key_file: key,
        ssh_remote_host: repo.host.clone(),
        ssh_remote_port: repo.port,
        ssh_remote_user: repo.user.clone(),
    });
    let text = loaded.render_updated(&updated);
    write_atomically(&located.write_path, &text).map_err(Error::failed)?;
    Ok(located.write_path)
}

/// A remote repository for [`add_repo`].
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct NewRepo {
    /// Repository id (section `[<id>-repo]`).
    pub id: String,
    /// Directory on the server.
    pub remote_directory: String,
    /// Private key file (must exist; stored absolute).
    pub ssh_priv_key_file: PathBuf,
    /// Server host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
}

impl NewRepo {
    /// A repository `id` in `remote_directory` on `user@host:port`, reached
    /// with the key `ssh_priv_key_file`.
    pub fn new(
        id: impl Into<String>,
        remote_directory: impl Into<String>,
        ssh_priv_key_file: impl Into<PathBuf>,
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
    ) -> NewRepo {
        NewRepo {
            id: id.into(),
            remote_directory: remote_directory.into(),
            ssh_priv_key_file: ssh_priv_key_file.into(),
            host: host.into(),
            port,
            user: user.into(),
        }
    }
}

/// Writes a file through a temporary sibling and a rename, keeping its mode.
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.b9-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
