//! What every build-file command needs: the configuration (file + flags), the
//! parsed build files, and the built-in variables of this run.

use std::path::{Path, PathBuf};

use crate::cli::args::{AccelArg, BuildFiles, GlobalArgs};
use crate::config::{self, Accel, LogLevel, Overrides};
use crate::diag::Diagnostic;
use crate::eval::check::Dirs;
use crate::eval::expand::BuildVars;
use crate::lang::{self, BuildFile};
use crate::pipeline::id::{build_date, build_id, config_hash};
use crate::timeouts::Timeouts;
use crate::vm::settings::{self as vm_settings, HypervisorSettings, KernelPaths, VmSettings};

/// The run's identity and where its paths are resolved.
pub struct Session {
    /// The configuration with the command-line overrides applied.
    pub config: config::B9Config,
    /// Notices about the configuration (a default file was created), for stderr.
    pub notices: Vec<String>,
    /// Warnings about the configuration (unknown keys, unused sections).
    pub warnings: Vec<Diagnostic>,
    /// The build id of this run.
    pub build_id: String,
    /// `~/.b9`.
    pub b9_dir: PathBuf,
    /// The start of the build in UNIX seconds: `SOURCE_DATE_EPOCH` when set
    /// (reproducible builds), else now.
    pub started: u64,
    /// Where relative paths are resolved.
    pub dirs: Dirs,
    /// The time limits of this run (computed once from the configuration).
    pub timeouts: Timeouts,
    /// The VM settings of this run (computed once from the configuration).
    pub vm: VmSettings,
}

/// The configuration overrides the global flags ask for (only those given).
pub fn overrides(g: &GlobalArgs) -> Overrides {
    Overrides {
        verbosity: if g.verbose {
            Some(LogLevel::Trace)
        } else if g.quiet {
            Some(LogLevel::Error)
        } else {
            None
        },
        log_file: g.log_file.clone(),
        build_dir_root: g.build_root.clone(),
        keep_temp_dirs: g.keep_build_dir,
        predictable_build_dir: g.predictable_build_dir,
        repository_cache: g.repo_cache.clone(),
        repository: g.repo.clone(),
        network: g.network.clone(),
        accel: g.accel.map(|a| match a {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        }),
        backend: None,
    }
}

/// Finds and loads the configuration, applies the flags, and fixes the build id.
pub fn open(g: &GlobalArgs) -> Result<Session, Vec<Diagnostic>> {
    let b9_dir = config::default_b9_dir().ok_or_else(|| {
        vec![
            Diagnostic::error("cannot find the b9 directory: $HOME is not set")
                .with_hint("set HOME, or name a configuration file with -c"),
        ]
    })?;
    let located = config::locate(&g.config, &b9_dir).map_err(|d| vec![d])?;
    let notices = located.notice();
    let loaded = config::load(&located)?;
    let mut config = loaded.config;
    config.apply(&overrides(g));
    crate::disk::gate::trust_dirs(&config.trusted_image_dirs);
    crate::pipeline::log::init(config.verbosity, config.log_file.as_deref())
        .map_err(|d| vec![d])?;
    let cwd = std::env::current_dir().map_err(|e| {
        vec![Diagnostic::error(format!(
            "cannot read the working directory: {e}"
        ))]
    })?;
    let project_root = match &config.build_dir_root {
        Some(root) => absolute(&cwd, root),
        None => cwd.clone(),
    };
    let build_id = build_id(config_hash(&config.to_ini()), config.unique_build_dirs);
    let (timeouts, timeout_warning) =
        Timeouts::new(config.default_timeout_seconds, config.timeout_factor);
    let mut warnings = loaded.warnings;
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

impl Session {
    /// The shared-image cache root (`repository_cache`, default `~/.b9/repo-cache`).
    pub fn cache_root(&self) -> PathBuf {
        crate::repo::cache_root(self.config.repository_cache.as_ref(), &self.b9_dir)
    }

    /// `<projectRoot>/BUILD-<buildId>`.
    pub fn build_dir(&self) -> PathBuf {
        self.dirs
            .project_root
            .join(format!("BUILD-{}", self.build_id))
    }

    /// The built-in variables for a run with these positional arguments.
    pub fn vars(&self, args: &[String]) -> BuildVars {
        BuildVars {
            args: args.to_vec(),
            project_root: self.dirs.project_root.display().to_string(),
            build_dir: self.build_dir().display().to_string(),
            build_date: build_date(self.started),
            build_id: self.build_id.clone(),
        }
    }
}

/// The `SOURCE_DATE_EPOCH` environment variable (reproducible builds), if set.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The start of this run in UNIX seconds: `SOURCE_DATE_EPOCH` when set, else now.
pub fn start_time() -> Result<u64, Vec<Diagnostic>> {
    Ok(source_date_epoch()?.unwrap_or_else(now))
}

fn source_date_epoch() -> Result<Option<u64>, Vec<Diagnostic>> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            vec![Diagnostic::error(format!(
                "{SOURCE_DATE_EPOCH}={v:?} is not a number of seconds since 1970-01-01"
            ))]
        }),
        _ => Ok(None),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `p` made absolute against `base` and canonicalised when it exists.
fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = base.join(p);
    joined
        .canonicalize()
        .unwrap_or_else(|_| crate::eval::check::normalize(&joined))
}

/// Parses every build file; the problems of all files are returned together.
pub fn parse_all(files: &BuildFiles) -> Result<Vec<BuildFile>, Vec<Diagnostic>> {
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for f in &files.files {
        match lang::parse_file(f) {
            Ok(file) => {
                tracing::debug!("parsed build file {}", f.display());
                parsed.push(file)
            }
            Err(mut d) => problems.append(&mut d),
        }
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}
