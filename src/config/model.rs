//! The typed configuration: `[global]`, `[vm]`, `[libvirt]`, the remote
//! repositories, and the CLI flags laid over them.

use std::path::PathBuf;

use super::literal::{LogLevel, SystemPath};

/// How the VM that runs build scripts is started.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The embedded QEMU backend (no root needed).
    #[default]
    Qemu,
    /// A libvirt domain (the `[libvirt]` section).
    Libvirt,
}

impl Backend {
    /// The name in `b9.conf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::Libvirt => "libvirt",
        }
    }
}

/// The CPU virtualisation QEMU uses.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Accel {
    /// KVM when `/dev/kvm` is usable, TCG otherwise.
    #[default]
    Auto,
    /// Always KVM (fails without it).
    Kvm,
    /// Always TCG (software emulation).
    Tcg,
}

impl Accel {
    /// The name in `b9.conf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// `[vm]`: the guest that runs the build scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// `backend`: `qemu` (default) or `libvirt`.
    pub backend: Backend,
    /// `accel`: `auto` (default), `kvm` or `tcg`.
    pub accel: Accel,
    /// `kernel`: the guest kernel; `None` = `/boot/vmlinuz-<running release>`.
    pub kernel: Option<PathBuf>,
    /// `modules_dir`: the kernel modules; `None` = `/lib/modules/<running release>`.
    pub modules_dir: Option<PathBuf>,
    /// `memory_mb`: guest memory in MiB (default 1024).
    pub memory_mb: u32,
    /// `cpus`: guest CPUs (default 2).
    pub cpus: u32,
    /// `qemu_binary`: `None` = `qemu-system-x86_64` from `PATH`.
    pub qemu_binary: Option<PathBuf>,
    /// `step_cache`: take unchanged guest steps from the step cache (default `True`).
    pub step_cache: bool,
    /// `step_cache_max_gb`: the step cache's size limit in GiB (default 20).
    pub step_cache_max_gb: u32,
}

impl Default for VmConfig {
    fn default() -> VmConfig {
        VmConfig {
            backend: Backend::Qemu,
            accel: Accel::Auto,
            kernel: None,
            modules_dir: None,
            memory_mb: 1024,
            cpus: 2,
            qemu_binary: None,
            step_cache: true,
            step_cache_max_gb: 20,
        }
    }
}

/// `[libvirt]`: used when `[vm] backend` is `libvirt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LibvirtConfig {
    /// `connection`: the libvirt URI (default `qemu:///system`).
    pub connection: String,
    /// `network`: the libvirt network; `None` = no network interface.
    pub network: Option<String>,
    /// `hosts`: a farm's connection URIs (whitespace-separated); when
    /// any, `connection` is unused.
    pub hosts: Vec<String>,
    /// `pool`: the storage pool on each remote host (default `b9`).
    pub pool: String,
    /// `vms_per_host`: build VMs at once per host (default 1).
    pub vms_per_host: u32,
}

impl Default for LibvirtConfig {
    fn default() -> LibvirtConfig {
        LibvirtConfig {
            connection: "qemu:///system".into(),
            network: None,
            hosts: Vec::new(),
            pool: "b9".into(),
            vms_per_host: 1,
        }
    }
}

/// `[cloud-init]`: how cloud-configs are checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudInitConfig {
    /// `schema`: cloud-init's `schema-cloud-config-v1.json`; `None` = the one
    /// of the cloud-init installed on the host, if any.
    pub schema: Option<PathBuf>,
}

/// A `[<id>-repo]` section: a remote repository reached over SSH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRepo {
    /// The repository id (the section name without `-repo`).
    pub id: String,
    /// `remote_path`: the directory on the server.
    pub remote_path: String,
    /// `ssh_priv_key_file`: the private key (not checked here).
    pub ssh_priv_key_file: PathBuf,
    /// `ssh_remote_host`.
    pub ssh_remote_host: String,
    /// `ssh_remote_port`.
    pub ssh_remote_port: u16,
    /// `ssh_remote_user`.
    pub ssh_remote_user: String,
}

/// The loaded configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct B9Config {
    /// `build_dir_root`: the project root; build dirs go inside it.
    pub build_dir_root: Option<PathBuf>,
    /// `keep_temp_dirs`: keep build directories.
    pub keep_temp_dirs: bool,
    /// `log_file`: append log messages to this file.
    pub log_file: Option<PathBuf>,
    /// `max_cached_shared_images`: revisions kept per shared image.
    pub max_cached_shared_images: Option<i64>,
    /// `repository`: the selected remote repository id.
    pub repository: Option<String>,
    /// `repository_cache`: the local cache root.
    pub repository_cache: Option<SystemPath>,
    /// `unique_build_dirs`: build dirs named with a unique id.
    pub unique_build_dirs: bool,
    /// `verbosity`: the console log level.
    pub verbosity: Option<LogLevel>,
    /// `default_timeout_seconds`: for commands without a timeout; `None` = none.
    pub default_timeout_seconds: Option<u64>,
    /// `timeout_factor`: multiplier for all timeouts; `None` = 1.
    pub timeout_factor: Option<u64>,
    /// `ext4_attributes`: `mkfs.ext4 -O` features; missing key = `["^64bit"]`,
    /// an empty list = the default feature set.
    pub ext4_attributes: Vec<String>,
    /// `trusted_image_dirs`: directories whose files any image may name as
    /// its backing file or extent (images are otherwise confined to their
    /// own directory); missing key = none.
    pub trusted_image_dirs: Vec<PathBuf>,
    /// `[vm]`.
    pub vm: VmConfig,
    /// `[libvirt]`.
    pub libvirt: LibvirtConfig,
    /// `[cloud-init]`.
    pub cloud_init: CloudInitConfig,
    /// The `[<id>-repo]` sections, sorted by id.
    pub repos: Vec<RemoteRepo>,
    /// Sections of backends this b9 does not have that were present, in file
    /// order (see [`UNUSED_BACKEND_SECTIONS`]).
    pub unused_sections: Vec<String>,
}

impl Default for B9Config {
    /// The values of [`render_default`].
    fn default() -> B9Config {
        B9Config {
            build_dir_root: None,
            keep_temp_dirs: false,
            log_file: None,
            max_cached_shared_images: Some(2),
            repository: None,
            repository_cache: Some(SystemPath::InB9UserDir("repo-cache".into())),
            unique_build_dirs: true,
            verbosity: Some(LogLevel::Info),
            default_timeout_seconds: Some(3600),
            timeout_factor: None,
            ext4_attributes: default_ext4_attributes(),
            trusted_image_dirs: Vec::new(),
            vm: VmConfig::default(),
            libvirt: LibvirtConfig::default(),
            cloud_init: CloudInitConfig::default(),
            repos: Vec::new(),
            unused_sections: Vec::new(),
        }
    }
}

pub(super) fn default_ext4_attributes() -> Vec<String> {
    vec!["^64bit".to_string()]
}

/// CLI flags that override the configuration; each applies only when given
/// (docs/COMPATIBILITY.md#differences: "a flag overrides the configuration only when given").
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `-v` (`Trace`) / `-q` (`Error`).
    pub verbosity: Option<LogLevel>,
    /// `-l FILE`.
    pub log_file: Option<PathBuf>,
    /// `-b DIR`.
    pub build_dir_root: Option<PathBuf>,
    /// `-k` given: keep build directories.
    pub keep_temp_dirs: bool,
    /// `-u` given: predictable (non-unique) build directories.
    pub predictable_build_dir: bool,
    /// `--repo-cache DIR`.
    pub repository_cache: Option<PathBuf>,
    /// `-r ID`.
    pub repository: Option<String>,
    /// `--network ID`; `host` clears the libvirt network.
    pub network: Option<String>,
    /// Acceleration override.
    pub accel: Option<Accel>,
    /// Backend override.
    pub backend: Option<Backend>,
}

impl B9Config {
    /// Applies the flags that were given; everything else keeps the value
    /// from the config file.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.verbosity {
            self.verbosity = Some(v);
        }
        if let Some(p) = &o.log_file {
            self.log_file = Some(p.clone());
        }
        if let Some(p) = &o.build_dir_root {
            self.build_dir_root = Some(p.clone());
        }
        if o.keep_temp_dirs {
            self.keep_temp_dirs = true;
        }
        if o.predictable_build_dir {
            self.unique_build_dirs = false;
        }
        if let Some(p) = &o.repository_cache {
            self.repository_cache = Some(SystemPath::Path(p.to_string_lossy().into_owned()));
        }
        if let Some(r) = &o.repository {
            self.repository = Some(r.clone());
        }
        if let Some(n) = &o.network {
            self.libvirt.network = (n != "host").then(|| n.clone());
        }
        if let Some(a) = o.accel {
            self.vm.accel = a;
        }
        if let Some(b) = o.backend {
            self.vm.backend = b;
        }
    }

    /// The remote repository with this id.
    pub fn repo(&self, id: &str) -> Option<&RemoteRepo> {
        self.repos.iter().find(|r| r.id == id)
    }
}
