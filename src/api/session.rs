//! A session: the configuration of one run with the values computed once
//! from it (build id, start time, directories, time limits, VM settings).

use std::path::{Path, PathBuf};

use super::config::Config;
use super::diagnostic::Diagnostic;
use super::error::Error;
use crate::config::{self, Accel};
use crate::eval::check::Dirs;
use crate::eval::expand::BuildVars;
use crate::pipeline::id::{build_date, build_id, config_hash};
use crate::timeouts::Timeouts;
use crate::vm::settings::{self as vm_settings, HypervisorSettings, KernelPaths, VmSettings};

/// The run's identity and where its paths are resolved: what checking,
/// showing and building build files, and the shared-image and VM commands,
/// need.
///
/// ```
/// let session = b9::Session::new(b9::Config::default())?;
/// assert!(session.build_dir().ends_with(format!("BUILD-{}", session.build_id())));
/// # Ok::<(), b9::Error>(())
/// ```
#[derive(Debug)]
pub struct Session {
    /// The configuration with the overrides applied.
    pub(crate) config: config::B9Config,
    /// Notices and warnings about the configuration.
    notices: Vec<String>,
    warnings: Vec<Diagnostic>,
    /// The build id of this run.
    pub(crate) build_id: String,
    /// `~/.b9` (or `.b9` in the working directory without `$HOME`).
    pub(crate) b9_dir: PathBuf,
    /// The start of the build in UNIX seconds.
    pub(crate) started: u64,
    /// Where relative paths are resolved.
    pub(crate) dirs: Dirs,
    /// The time limits of this run.
    pub(crate) timeouts: Timeouts,
    /// The VM settings of this run.
    pub(crate) vm: VmSettings,
}

impl Session {
    /// A session for `config` in the process's working directory: fixes
    /// the build id and the start time (`SOURCE_DATE_EPOCH` when set),
    /// resolves the project root against the working directory, and trusts
    /// the configuration's `trusted_image_dirs` for the rest of the process,
    /// besides those of earlier sessions (docs/IMAGES.md).
    pub fn new(config: Config) -> Result<Session, Error> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::invalid(format!("cannot read the working directory: {e}")))?;
        Session::in_dir(config, cwd)
    }

    /// A session as [`Session::new`] makes, whose working directory is
    /// `dir` instead of the process's: relative paths of build files, in
    /// build files (their sources and outputs) and a relative
    /// `build_dir_root` resolve there, and post-fix scripts run there,
    /// so one program can build several projects without changing
    /// directory. A relative `dir` is taken from the process's working
    /// directory.
    ///
    /// ```
    /// let dir = std::env::temp_dir();
    /// let session = b9::Session::in_dir(b9::Config::default(), &dir)?;
    /// assert_eq!(session.project_root(), dir.as_path());
    /// # Ok::<(), b9::Error>(())
    /// ```
    pub fn in_dir(config: Config, dir: impl AsRef<Path>) -> Result<Session, Error> {
        let b9_dir = config::default_b9_dir().unwrap_or_else(|| PathBuf::from(".b9"));
        let mut warnings = config.warnings().to_vec();
        let notices = config.notices().to_vec();
        let config = config.config;
        crate::disk::gate::trust_dirs(&config.trusted_image_dirs);
        let cwd = std::path::absolute(dir.as_ref()).map_err(|e| {
            Error::invalid(format!(
                "cannot resolve the directory {}: {e}",
                dir.as_ref().display()
            ))
        })?;
        let project_root = match &config.build_dir_root {
            Some(root) => absolute(&cwd, root),
            None => cwd.clone(),
        };
        let build_id = build_id(config_hash(&config.to_ini()), config.unique_build_dirs);
        let (timeouts, timeout_warning) =
            Timeouts::new(config.default_timeout_seconds, config.timeout_factor);
        warnings.extend(timeout_warning.map(Diagnostic::warning));
        let started = start_time()?;
        let mut protected = vec![
            (
                "the shared-image cache".to_string(),
                crate::repo::cache_root(config.repository_cache.as_ref(), &b9_dir),
            ),
            ("the b9 directory".to_string(), b9_dir.clone()),
        ];
        if let Some(home) = b9_dir.parent() {
            protected.push(("the home directory".to_string(), home.to_path_buf()));
        }
        let vm = vm_settings_of(&config, timeouts);
        Ok(Session {
            vm,
            config,
            notices,
            warnings,
            build_id,
            b9_dir,
            started,
            dirs: Dirs {
                cwd,
                project_root,
                protected,
            },
            timeouts,
        })
    }

    /// Starts logging to stderr (and the configured log file) at the
    /// configured verbosity, for the whole process. Call it at most once.
    pub fn init_logging(&self) -> Result<(), Error> {
        crate::pipeline::log::init(self.config.verbosity, self.config.log_file.as_deref())
            .map_err(Error::input_one)
    }

    /// Notices for the user (a default configuration file was created).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Warnings about the configuration.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The build id of this run.
    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    /// The start of the run in UNIX seconds: `SOURCE_DATE_EPOCH` when set
    /// (reproducible builds), else the time the session was made.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// The project root (`${projectRoot}`): the build-root override, else
    /// the working directory.
    pub fn project_root(&self) -> &Path {
        &self.dirs.project_root
    }

    /// `<projectRoot>/BUILD-<buildId>`.
    pub fn build_dir(&self) -> PathBuf {
        self.dirs
            .project_root
            .join(format!("BUILD-{}", self.build_id))
    }

    /// The shared-image cache root (`repository_cache`, default `~/.b9/repo-cache`).
    pub fn cache_root(&self) -> PathBuf {
        crate::repo::cache_root(self.config.repository_cache.as_ref(), &self.b9_dir)
    }

    /// The built-in variables for a run with these positional arguments.
    pub(crate) fn vars(&self, args: &[String]) -> BuildVars {
        BuildVars {
            args: args.to_vec(),
            project_root: self.dirs.project_root.display().to_string(),
            build_dir: self.build_dir().display().to_string(),
            build_date: build_date(self.started),
            build_id: self.build_id.clone(),
        }
    }
}

/// The VM settings `config` asks for.
fn vm_settings_of(config: &config::B9Config, timeouts: Timeouts) -> VmSettings {
    VmSettings {
        hypervisor: match config.vm.backend {
            config::Backend::Qemu => HypervisorSettings::Qemu {
                binary: config
                    .vm
                    .qemu_binary
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64")),
            },
            config::Backend::Libvirt => HypervisorSettings::Libvirt {
                connection: config.libvirt.connection.clone(),
                hosts: config.libvirt.hosts.clone(),
                pool: config.libvirt.pool.clone(),
                vms_per_host: config.libvirt.vms_per_host,
            },
        },
        accel: match config.vm.accel {
            Accel::Auto => None,
            Accel::Kvm => Some(crate::vm::backend::Accelerator::Kvm),
            Accel::Tcg => Some(crate::vm::backend::Accelerator::Tcg),
        },
        memory_mb: config.vm.memory_mb,
        cpus: config.vm.cpus,
        kernel: config.vm.resolve_paths().map(|p| KernelPaths {
            kernel: p.kernel,
            modules_dir: p.modules_dir,
        }),
        network: config.libvirt.network.clone(),
        cache_dir: vm_settings::cache_dir(),
        timeouts,
    }
}

/// The `SOURCE_DATE_EPOCH` environment variable (reproducible builds), if set.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The start of a run in UNIX seconds: `SOURCE_DATE_EPOCH` when set, else now.
pub fn start_time() -> Result<u64, Error> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
            Error::invalid(format!(
                "{SOURCE_DATE_EPOCH}={v:?} is not a number of seconds since 1970-01-01"
            ))
        }),
        _ => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())),
    }
}

/// `p` made absolute against `base` and canonicalised when it exists.
fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = base.join(p);
    joined
        .canonicalize()
        .unwrap_or_else(|_| crate::eval::check::normalize(&joined))
}
