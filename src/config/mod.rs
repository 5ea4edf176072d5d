//! `b9.conf`: INI sections with Haskell-literal values (SPEC Part B §10).
//!
//! * [`locate`] finds the file(s) to load (with version suffixes, several
//!   `-c`, and creation of `~/.b9/b9.conf` from the defaults).
//! * [`load`] / [`load_files`] / [`parse_str`] read them into a typed
//!   [`B9Config`]; every malformed value is reported as a [`Diagnostic`] that
//!   names the file, line, key and the expected form. Unknown keys and
//!   sections, and the sections of container backends this b9 does not have
//!   (`[libvirt-lxc]`, `[systemdNspawn]`, `[docker]`, `[podman]`), are
//!   warnings, never errors.
//! * [`B9Config::apply`] lays the CLI flags over the file (only flags given).
//! * [`render_default`] and [`B9Config::to_ini`] write a config back.
//!
//! Decisions beyond the original:
//! * The optional `[global]` keys that the original reads leniently
//!   (`max_cached_shared_images`, `default_timeout_seconds`, `timeout_factor`,
//!   `ext4_attributes`) fall back to their "missing" value with a warning
//!   when unparsable; the required keys and the new `[vm]` / `[libvirt]`
//!   sections give errors.
//! * In `[vm]` and `[libvirt]` an empty value of an optional key means "not
//!   set" (the default); values may be written plain or as a quoted string.

pub mod ini;
pub mod literal;
mod locate;

use std::path::PathBuf;

use crate::diag::source::{Source, SourceRef};
use crate::diag::{did_you_mean, Diagnostic};
use crate::lang::print::show_string;

use ini::{Entry, Ini};
use literal::{
    read_bool, read_capabilities, read_choice, read_int, read_maybe_int, read_maybe_log_level,
    read_maybe_string, read_maybe_system_path, read_non_negative, read_plain, read_ram_size,
    read_string_list, show_bool, show_maybe_string, show_string_list, LitError,
};
pub use literal::{LogLevel, RamSize, SizeUnit, SystemPath};
pub use locate::{default_b9_dir, locate, versioned_candidates, Located};

/// The version of the original b9 this b9 is compatible with; it names the
/// version-suffixed config files (`b9.conf.4.0.0`, ...).
pub const COMPAT_VERSION: &str = "4.0.0";

/// The section of the general options.
pub const GLOBAL: &str = "global";
/// The section of the VM options (new in this b9).
pub const VM: &str = "vm";
/// The section of the libvirt options (new in this b9).
pub const LIBVIRT: &str = "libvirt";
/// The suffix of remote repository sections (`[<id>-repo]`).
pub const REPO_SUFFIX: &str = "-repo";
/// Sections of container backends of the original that this b9 does not
/// have: read, reported as unused, never an error.
pub const UNUSED_BACKEND_SECTIONS: [&str; 4] = ["libvirt-lxc", "systemdNspawn", "docker", "podman"];

/// How the VM that runs build scripts is started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The embedded QEMU backend (no root needed).
    #[default]
    Qemu,
    /// A libvirt domain (see [`LibvirtConfig`]).
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
        }
    }
}

/// The kernel and modules directory of the guest, defaults resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmPaths {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The modules directory matching the kernel.
    pub modules_dir: PathBuf,
}

/// Where the running kernel's release is read from.
pub const OSRELEASE_PATH: &str = "/proc/sys/kernel/osrelease";

/// The running kernel's release (`uname -r`), read from [`OSRELEASE_PATH`].
#[allow(clippy::result_large_err)]
pub fn running_kernel_release() -> Result<String, Diagnostic> {
    std::fs::read_to_string(OSRELEASE_PATH)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            Diagnostic::error(format!(
                "cannot read the running kernel release from {OSRELEASE_PATH}: {e}"
            ))
            .with_hint("set `kernel` and `modules_dir` in the [vm] section of b9.conf")
        })
}

impl VmConfig {
    /// The kernel and modules directory, with the defaults for the kernel
    /// `release`: `/boot/vmlinuz-<release>` and `/lib/modules/<release>`.
    pub fn resolve_paths_for_release(&self, release: &str) -> VmPaths {
        VmPaths {
            kernel: self
                .kernel
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/boot/vmlinuz-{release}"))),
            modules_dir: self
                .modules_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/lib/modules/{release}"))),
        }
    }

    /// The kernel and modules directory; the running kernel's release is read
    /// (from `/proc`, no process is started) only when a default is needed.
    #[allow(clippy::result_large_err)]
    pub fn resolve_paths(&self) -> Result<VmPaths, Diagnostic> {
        match (&self.kernel, &self.modules_dir) {
            (Some(k), Some(m)) => Ok(VmPaths {
                kernel: k.clone(),
                modules_dir: m.clone(),
            }),
            _ => Ok(self.resolve_paths_for_release(&running_kernel_release()?)),
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
}

impl Default for LibvirtConfig {
    fn default() -> LibvirtConfig {
        LibvirtConfig {
            connection: "qemu:///system".into(),
            network: None,
        }
    }
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
            repos: Vec::new(),
            unused_sections: Vec::new(),
        }
    }
}

fn default_ext4_attributes() -> Vec<String> {
    vec!["^64bit".to_string()]
}

/// CLI flags that override the configuration; each applies only when given
/// (SPEC Part A: "a flag overrides the config only when given").
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

    /// The configuration as an INI document (sections `[global]`, `[vm]`,
    /// `[libvirt]` and the repositories; not the unused backend sections).
    pub fn to_ini_document(&self) -> Ini {
        let mut ini = Ini::new();
        let path = |p: &Option<PathBuf>| {
            show_maybe_string(p.as_ref().map(|p| p.to_string_lossy()).as_deref())
        };
        let g = GLOBAL;
        ini.set(g, "build_dir_root", path(&self.build_dir_root));
        ini.set(g, "keep_temp_dirs", show_bool(self.keep_temp_dirs));
        ini.set(g, "log_file", path(&self.log_file));
        ini.set(
            g,
            "max_cached_shared_images",
            match self.max_cached_shared_images {
                Some(n) => format!("Just {}", show_int(n)),
                None => "Nothing".into(),
            },
        );
        ini.set(
            g,
            "repository",
            show_maybe_string(self.repository.as_deref()),
        );
        ini.set(
            g,
            "repository_cache",
            match &self.repository_cache {
                Some(sp) => format!("Just ({})", sp.to_haskell()),
                None => "Nothing".into(),
            },
        );
        ini.set(g, "unique_build_dirs", show_bool(self.unique_build_dirs));
        ini.set(
            g,
            "verbosity",
            match self.verbosity {
                Some(l) => format!("Just {}", l.haskell_name()),
                None => "Nothing".into(),
            },
        );
        if let Some(t) = self.default_timeout_seconds {
            ini.set(g, "default_timeout_seconds", t.to_string());
        }
        if let Some(t) = self.timeout_factor {
            ini.set(g, "timeout_factor", t.to_string());
        }
        ini.set(
            g,
            "ext4_attributes",
            show_string_list(&self.ext4_attributes),
        );
        // Only when set: the rendered configuration feeds the build id.
        if !self.trusted_image_dirs.is_empty() {
            let dirs: Vec<String> = self
                .trusted_image_dirs
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            ini.set(g, "trusted_image_dirs", show_string_list(&dirs));
        }

        let opt_path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(String::new, |p| show_plain(&p.to_string_lossy()))
        };
        ini.set(VM, "backend", self.vm.backend.as_str());
        ini.set(VM, "accel", self.vm.accel.as_str());
        ini.set(VM, "kernel", opt_path(&self.vm.kernel));
        ini.set(VM, "modules_dir", opt_path(&self.vm.modules_dir));
        ini.set(VM, "memory_mb", self.vm.memory_mb.to_string());
        ini.set(VM, "cpus", self.vm.cpus.to_string());
        ini.set(VM, "qemu_binary", opt_path(&self.vm.qemu_binary));

        ini.set(LIBVIRT, "connection", show_plain(&self.libvirt.connection));
        ini.set(
            LIBVIRT,
            "network",
            self.libvirt
                .network
                .as_deref()
                .map_or_else(String::new, show_plain),
        );

        for r in &self.repos {
            let s = format!("{}{REPO_SUFFIX}", r.id);
            ini.set(&s, "remote_path", r.remote_path.clone());
            ini.set(
                &s,
                "ssh_priv_key_file",
                r.ssh_priv_key_file.to_string_lossy(),
            );
            ini.set(&s, "ssh_remote_host", r.ssh_remote_host.clone());
            ini.set(&s, "ssh_remote_port", r.ssh_remote_port.to_string());
            ini.set(&s, "ssh_remote_user", r.ssh_remote_user.clone());
        }
        ini
    }

    /// The configuration as `b9.conf` text, sections and keys alphabetical.
    /// Loading it gives this configuration back (except
    /// [`B9Config::unused_sections`], which are not written; merge over the
    /// original document with [`Loaded::render_updated`] to keep them).
    pub fn to_ini(&self) -> String {
        self.to_ini_document().render()
    }
}

/// An integer as Haskell's `show` writes it inside `Just`: negative numbers
/// in parentheses.
fn show_int(n: i64) -> String {
    if n < 0 {
        format!("({n})")
    } else {
        n.to_string()
    }
}

/// A plain value, quoted when the raw form would not read back the same.
fn show_plain(s: &str) -> String {
    let raw_ok = !s.is_empty()
        && !s.starts_with('"')
        && s.trim() == s
        && !s.contains(['\n', '\r'])
        && !s.contains(|c: char| c.is_control());
    if raw_ok {
        s.to_string()
    } else {
        show_string(s)
    }
}

/// The default `b9.conf` text (SPEC §10.3 plus `[vm]` and `[libvirt]`),
/// sections and keys in alphabetical order. Loading it gives
/// [`B9Config::default`].
pub fn render_default() -> String {
    B9Config::default().to_ini()
}

/// A loaded configuration with its warnings and the merged document.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The typed configuration.
    pub config: B9Config,
    /// Unknown sections and keys, unused backend sections, lenient fallbacks.
    pub warnings: Vec<Diagnostic>,
    /// The merged INI document of all files read.
    pub document: Ini,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl Loaded {
    /// The text to write back after changing the configuration (`add-repo`):
    /// `config` rendered and merged over the document read, so sections and
    /// keys this b9 does not know survive (SPEC §10.6).
    pub fn render_updated(&self, config: &B9Config) -> String {
        let mut doc = self.document.clone();
        doc.merge(config.to_ini_document());
        doc.render()
    }
}

/// Loads the files found by [`locate`].
pub fn load(located: &Located) -> Result<Loaded, Vec<Diagnostic>> {
    load_files(&located.files)
}

/// Reads and loads `paths`, merged in order (later keys override earlier).
pub fn load_files(paths: &[PathBuf]) -> Result<Loaded, Vec<Diagnostic>> {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match crate::diag::read_source(p, "the configuration file") {
            Ok(source) => sources.push(source),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    load_sources(&sources)
}

/// Loads one config text; `name` is used in messages.
pub fn parse_str(name: impl Into<PathBuf>, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    load_sources(&[Source::new(name, text)])
}

/// Loads config texts, merged in order (later keys override earlier).
/// `Err` holds every error found; warnings are in [`Loaded::warnings`].
pub fn load_sources(sources: &[SourceRef]) -> Result<Loaded, Vec<Diagnostic>> {
    let mut document = Ini::new();
    let mut errors = Vec::new();
    let mut duplicates = Vec::new();
    for s in sources {
        match Ini::parse(s) {
            Ok((ini, mut repeated)) => {
                document.merge(ini);
                duplicates.append(&mut repeated);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let files: Vec<PathBuf> = sources.iter().map(|s| s.name().to_path_buf()).collect();
    let (config, mut warnings) = match from_document(&document, &files) {
        Ok(loaded) => loaded,
        Err(mut errors) => {
            // A repeated section may be why a key is missing: say so too.
            errors.splice(0..0, duplicates);
            return Err(errors);
        }
    };
    warnings.splice(0..0, duplicates);
    Ok(Loaded {
        config,
        warnings,
        document,
        files,
    })
}

/// The `[global]` keys: name, default as written, required.
const GLOBAL_KEYS: [(&str, &str, bool); 12] = [
    ("build_dir_root", "Nothing", true),
    ("default_timeout_seconds", "3600", false),
    ("ext4_attributes", "[\"^64bit\"]", false),
    ("keep_temp_dirs", "False", true),
    ("log_file", "Nothing", true),
    ("max_cached_shared_images", "Just 2", false),
    ("repository", "Nothing", true),
    (
        "repository_cache",
        "Just (InB9UserDir \"repo-cache\")",
        true,
    ),
    ("timeout_factor", "1", false),
    ("trusted_image_dirs", "[]", false),
    ("unique_build_dirs", "True", true),
    ("verbosity", "Just LogInfo", true),
];

/// `[global]` keys of older versions of the original, no longer read.
const LEGACY_GLOBAL_KEYS: [&str; 4] = [
    "exec_env",
    "profile_file",
    "environment_vars",
    "interactive",
];

const VM_KEYS: [&str; 7] = [
    "accel",
    "backend",
    "cpus",
    "kernel",
    "memory_mb",
    "modules_dir",
    "qemu_binary",
];
const LIBVIRT_KEYS: [&str; 2] = ["connection", "network"];
const REPO_KEYS: [&str; 5] = [
    "remote_path",
    "ssh_priv_key_file",
    "ssh_remote_host",
    "ssh_remote_port",
    "ssh_remote_user",
];

struct Reader<'a> {
    doc: &'a Ini,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Reader<'_> {
    /// A diagnostic for a value of `key` in `[section]` that `read` rejected.
    fn value_diag(&self, section: &str, entry: &Entry, e: LitError, warn: bool) -> Diagnostic {
        let msg = format!("key `{}` in [{section}]: {e}", entry.key);
        let mut d = if warn {
            Diagnostic::warning(msg)
        } else {
            Diagnostic::error(msg)
        };
        if let Some(src) = &entry.source {
            d = d.at(src, entry.file_span(e.span));
        }
        for n in e.notes {
            d = d.with_note(n);
        }
        if let Some(h) = e.hint {
            d = d.with_hint(h);
        }
        d
    }

    /// Reads `key` of `section` (with `[DEFAULT]` inheritance). `None` when
    /// the key is missing or its value is wrong (an error is recorded).
    fn get<T>(
        &mut self,
        section: &str,
        key: &str,
        read: impl Fn(&str) -> Result<T, LitError>,
    ) -> Option<T> {
        let entry = self.doc.get(section, key)?;
        match read(&entry.value) {
            Ok(v) => Some(v),
            Err(e) => {
                let d = self.value_diag(section, entry, e, false);
                self.errors.push(d);
                None
            }
        }
    }

    /// Like [`Reader::get`], but a wrong value is a warning and gives `None`.
    fn get_lenient<T>(
        &mut self,
        section: &str,
        key: &str,
        read: impl Fn(&str) -> Result<T, LitError>,
        fallback: &str,
    ) -> Option<T> {
        let entry = self.doc.get(section, key)?;
        match read(&entry.value) {
            Ok(v) => Some(v),
            Err(e) => {
                let d = self.value_diag(section, entry, e, true).with_note(format!(
                    "the original b9 ignores this value; using {fallback}"
                ));
                self.warnings.push(d);
                None
            }
        }
    }

    /// A required `[global]` key; a missing one is an error.
    fn required<T>(&mut self, key: &str, read: impl Fn(&str) -> Result<T, LitError>) -> Option<T> {
        if self.doc.get(GLOBAL, key).is_none() {
            let default = GLOBAL_KEYS
                .iter()
                .find(|(k, _, _)| *k == key)
                .map_or("", |(_, d, _)| *d);
            let mut d = Diagnostic::error(format!("required key `{key}` missing in [{GLOBAL}]"));
            if let Some(sec) = self.doc.section(GLOBAL) {
                if let Some(src) = &sec.source {
                    d = d.at(src, sec.span);
                }
            }
            self.errors
                .push(d.with_hint(format!("add `{key}: {default}` (the default)")));
            return None;
        }
        self.get(GLOBAL, key, read)
    }

    /// Warnings for keys of `section` (its own, not inherited) not in `known`.
    fn unknown_keys(&mut self, section: &str, known: &[&str]) {
        let Some(sec) = self.doc.section(section) else {
            return;
        };
        for e in &sec.entries {
            if known.contains(&e.key.as_str()) {
                continue;
            }
            let mut d =
                Diagnostic::warning(format!("unknown key `{}` in [{section}], ignored", e.key));
            if let Some(src) = &e.source {
                d = d.at(src, e.key_span);
            }
            if section == GLOBAL && LEGACY_GLOBAL_KEYS.contains(&e.key.as_str()) {
                d = d.with_note("this key was read by older versions of the original b9; this b9 does not use it");
            } else if let Some(g) = did_you_mean(&e.key, known.iter().copied()) {
                d = d.with_hint(format!("did you mean `{g}`?"));
            }
            self.warnings.push(d);
        }
    }
}

fn path_of(s: String) -> PathBuf {
    PathBuf::from(s)
}

fn optional_path(text: &str) -> Result<Option<PathBuf>, LitError> {
    let s = read_plain(text)?;
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

fn positive_u32(text: &str) -> Result<u32, LitError> {
    let n = read_int(text).ok();
    n.and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| LitError {
            expected: "a positive integer".into(),
            found: format!("{text:?}"),
            span: crate::diag::source::Span::new(0, text.len()),
            notes: Vec::new(),
            hint: None,
        })
}

fn port(text: &str) -> Result<u16, LitError> {
    let n = read_int(text)?;
    u16::try_from(n).map_err(|_| LitError {
        expected: "a port number (0-65535)".into(),
        found: format!("{text:?}"),
        span: crate::diag::source::Span::new(0, text.len()),
        notes: Vec::new(),
        hint: None,
    })
}

fn non_empty_plain(text: &str) -> Result<String, LitError> {
    let s = read_plain(text)?;
    if s.is_empty() {
        return Err(LitError {
            expected: "a libvirt connection URI, e.g. qemu:///system".into(),
            found: "an empty value".into(),
            span: crate::diag::source::Span::new(0, text.len()),
            notes: Vec::new(),
            hint: None,
        });
    }
    Ok(s)
}

/// `network` of `[libvirt]`: plain, empty = none; `Nothing` / `Just "x"`
/// (the form of the original's container sections) are accepted too.
fn network(text: &str) -> Result<Option<String>, LitError> {
    if text == "Nothing" || text.starts_with("Just ") || text.starts_with("Just(") {
        return read_maybe_string(text, "network");
    }
    let s = read_plain(text)?;
    Ok((!s.is_empty()).then_some(s))
}

/// Builds the typed configuration from a merged document. `files` names the
/// files in the error for a missing `[global]`.
pub fn from_document(
    doc: &Ini,
    files: &[PathBuf],
) -> Result<(B9Config, Vec<Diagnostic>), Vec<Diagnostic>> {
    if !doc.has_section(GLOBAL) {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let names = if names.is_empty() {
            "the configuration".to_string()
        } else {
            names.join(", ")
        };
        return Err(vec![Diagnostic::error(format!(
            "{names}: no [global] section; the configuration is unusable"
        ))
        .with_note("the original b9 requires [global] with the keys build_dir_root, keep_temp_dirs, log_file, repository, repository_cache, unique_build_dirs and verbosity")
        .with_hint("move the file away and run b9 without `-c` to get a complete default ~/.b9/b9.conf")]);
    }
    let mut r = Reader {
        doc,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut c = B9Config::default();
    let maybe_path = |t: &str| read_maybe_string(t, "path").map(|p| p.map(path_of));

    if let Some(v) = r.required("build_dir_root", maybe_path) {
        c.build_dir_root = v;
    }
    if let Some(v) = r.required("keep_temp_dirs", read_bool) {
        c.keep_temp_dirs = v;
    }
    if let Some(v) = r.required("log_file", maybe_path) {
        c.log_file = v;
    }
    c.max_cached_shared_images = r
        .get_lenient(
            GLOBAL,
            "max_cached_shared_images",
            read_maybe_int,
            "Nothing (no limit)",
        )
        .flatten();
    if let Some(v) = r.required("repository", |t| read_maybe_string(t, "repository id")) {
        c.repository = v;
    }
    if let Some(v) = r.required("repository_cache", read_maybe_system_path) {
        c.repository_cache = v;
    }
    if let Some(v) = r.required("unique_build_dirs", read_bool) {
        c.unique_build_dirs = v;
    }
    if let Some(v) = r.required("verbosity", read_maybe_log_level) {
        c.verbosity = v;
    }
    c.default_timeout_seconds = r.get_lenient(
        GLOBAL,
        "default_timeout_seconds",
        read_non_negative,
        "no timeout",
    );
    c.timeout_factor = r.get_lenient(GLOBAL, "timeout_factor", read_non_negative, "1");
    c.ext4_attributes = r
        .get_lenient(GLOBAL, "ext4_attributes", read_string_list, "[\"^64bit\"]")
        .unwrap_or_else(default_ext4_attributes);
    c.trusted_image_dirs = r
        .get_lenient(GLOBAL, "trusted_image_dirs", read_string_list, "[]")
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let global_known: Vec<&str> = GLOBAL_KEYS.iter().map(|(k, _, _)| *k).collect();
    r.unknown_keys(GLOBAL, &global_known);

    if doc.has_section(VM) {
        let vm = &mut c.vm;
        if let Some(v) = r.get(VM, "backend", |t| read_choice(t, &["qemu", "libvirt"])) {
            vm.backend = if v == "libvirt" {
                Backend::Libvirt
            } else {
                Backend::Qemu
            };
        }
        if let Some(v) = r.get(VM, "accel", |t| read_choice(t, &["auto", "kvm", "tcg"])) {
            vm.accel = match v {
                "kvm" => Accel::Kvm,
                "tcg" => Accel::Tcg,
                _ => Accel::Auto,
            };
        }
        if let Some(v) = r.get(VM, "kernel", optional_path) {
            vm.kernel = v;
        }
        if let Some(v) = r.get(VM, "modules_dir", optional_path) {
            vm.modules_dir = v;
        }
        if let Some(v) = r.get(VM, "memory_mb", positive_u32) {
            vm.memory_mb = v;
        }
        if let Some(v) = r.get(VM, "cpus", positive_u32) {
            vm.cpus = v;
        }
        if let Some(v) = r.get(VM, "qemu_binary", optional_path) {
            vm.qemu_binary = v;
        }
        r.unknown_keys(VM, &VM_KEYS);
    }

    if doc.has_section(LIBVIRT) {
        if let Some(v) = r.get(LIBVIRT, "connection", non_empty_plain) {
            c.libvirt.connection = v;
        }
        if let Some(v) = r.get(LIBVIRT, "network", network) {
            c.libvirt.network = v;
        }
        r.unknown_keys(LIBVIRT, &LIBVIRT_KEYS);
    }

    for name in doc.section_names() {
        if let Some(id) = name.strip_suffix(REPO_SUFFIX) {
            if let Some(repo) = read_repo(&mut r, name, id) {
                c.repos.push(repo);
            }
            r.unknown_keys(name, &REPO_KEYS);
        } else if UNUSED_BACKEND_SECTIONS.contains(&name) {
            c.unused_sections.push(name.to_string());
            let w = unused_section_warning(doc, name);
            r.warnings.push(w);
        } else if ![GLOBAL, VM, LIBVIRT].contains(&name) {
            r.warnings.push(unknown_section_warning(doc, name));
        }
    }
    c.repos.sort_by(|a, b| a.id.cmp(&b.id));

    if r.errors.is_empty() {
        Ok((c, r.warnings))
    } else {
        Err(r.errors)
    }
}

fn read_repo(r: &mut Reader<'_>, section: &str, id: &str) -> Option<RemoteRepo> {
    let mut missing = Vec::new();
    for key in REPO_KEYS {
        if r.doc.get(section, key).is_none() {
            missing.push(key);
        }
    }
    for key in &missing {
        let mut d = Diagnostic::error(format!("required key `{key}` missing in [{section}]"));
        if let Some(sec) = r.doc.section(section) {
            if let Some(src) = &sec.source {
                d = d.at(src, sec.span);
            }
        }
        r.errors.push(d.with_note(format!(
            "a repository section needs all of: {}",
            REPO_KEYS.join(", ")
        )));
    }
    let raw = |t: &str| Ok::<_, LitError>(t.to_string());
    let remote_path = r.get(section, "remote_path", raw);
    let key_file = r.get(section, "ssh_priv_key_file", raw);
    let host = r.get(section, "ssh_remote_host", raw);
    let port = r.get(section, "ssh_remote_port", port);
    let user = r.get(section, "ssh_remote_user", raw);
    Some(RemoteRepo {
        id: id.to_string(),
        remote_path: remote_path?,
        ssh_priv_key_file: PathBuf::from(key_file?),
        ssh_remote_host: host?,
        ssh_remote_port: port?,
        ssh_remote_user: user?,
    })
}

fn section_located(doc: &Ini, name: &str, d: Diagnostic) -> Diagnostic {
    match doc.section(name) {
        Some(sec) => match &sec.source {
            Some(src) => d.at(src, sec.span),
            None => d,
        },
        None => d,
    }
}

fn unknown_section_warning(doc: &Ini, name: &str) -> Diagnostic {
    let mut d = section_located(
        doc,
        name,
        Diagnostic::warning(format!("unknown section [{name}], ignored")),
    );
    let mut known = vec![GLOBAL, VM, LIBVIRT];
    known.extend(UNUSED_BACKEND_SECTIONS);
    if let Some(g) = did_you_mean(name, known) {
        d = d.with_hint(format!("did you mean [{g}]?"));
    } else {
        d = d.with_hint(format!(
            "remote repository sections are named [<id>{REPO_SUFFIX}]"
        ));
    }
    d
}

/// The keys of an unused backend section with the reader of the original,
/// to note values the original would not have accepted.
type KeyCheck = (&'static str, fn(&str) -> Result<(), LitError>);

fn legacy_checks(section: &str) -> Vec<KeyCheck> {
    fn bool_(t: &str) -> Result<(), LitError> {
        read_bool(t).map(|_| ())
    }
    fn mpath(t: &str) -> Result<(), LitError> {
        read_maybe_string(t, "path").map(|_| ())
    }
    fn mstr(t: &str) -> Result<(), LitError> {
        read_maybe_string(t, "text").map(|_| ())
    }
    fn caps(t: &str) -> Result<(), LitError> {
        read_capabilities(t).map(|_| ())
    }
    fn ram(t: &str) -> Result<(), LitError> {
        read_ram_size(t).map(|_| ())
    }
    fn mint(t: &str) -> Result<(), LitError> {
        read_maybe_int(t).map(|_| ())
    }
    fn raw(_: &str) -> Result<(), LitError> {
        Ok(())
    }
    fn console(t: &str) -> Result<(), LitError> {
        read_choice(t, &["interactive", "read-only", "passive", "pipe"]).map(|_| ())
    }
    match section {
        "libvirt-lxc" => vec![
            ("use_sudo", bool_),
            ("emulator_path", mpath),
            ("connection", raw),
            ("network", mstr),
            ("guest_capabilities", caps),
            ("guest_ram_size", ram),
            ("image_file_names_shortener_base_path", mpath),
        ],
        "systemdNspawn" => vec![
            ("guest_capabilities", caps),
            ("use_sudo", bool_),
            ("max_lifetime_seconds", mint),
            ("extra_args", mstr),
            ("executable", mpath),
            ("console", console),
        ],
        _ => vec![("network", mstr), ("guest_capabilities", caps)],
    }
}

fn unused_section_warning(doc: &Ini, name: &str) -> Diagnostic {
    let mut d = section_located(
        doc,
        name,
        Diagnostic::warning(format!(
            "section [{name}] configures a container backend this b9 does not have; it is ignored"
        )),
    )
    .with_note("this b9 runs build scripts in a QEMU guest, configured in [vm]");
    if let Some(sec) = doc.section(name) {
        for (key, check) in legacy_checks(name) {
            if let Some(e) = sec.entry(key) {
                if let Err(err) = check(&e.value) {
                    d = d.with_note(format!(
                        "line {}: the original b9 would not accept `{key}` here either ({err})",
                        e.line
                    ));
                }
            }
        }
    }
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    const MINIMAL: &str = "[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Just (InB9UserDir \"repo-cache\")\nunique_build_dirs: True\nverbosity: Just LogInfo\n";

    fn load_ok(text: &str) -> Loaded {
        match parse_str("b9.conf", text) {
            Ok(l) => l,
            Err(e) => panic!("{}", e.iter().map(|d| d.to_string()).collect::<String>()),
        }
    }

    fn load_err(text: &str) -> Vec<Diagnostic> {
        match parse_str("b9.conf", text) {
            Ok(l) => panic!("expected errors, got {:?}", l.config),
            Err(e) => e,
        }
    }

    fn line_of(d: &Diagnostic) -> usize {
        d.location.as_ref().map_or(0, |l| l.line_col().line)
    }

    #[test]
    fn default_file_loads_as_the_default_config() {
        let text = render_default();
        let loaded = load_ok(&text);
        assert_eq!(loaded.config, B9Config::default());
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(
            text,
            "[global]\n\
             build_dir_root: Nothing\n\
             default_timeout_seconds: 3600\n\
             ext4_attributes: [\"^64bit\"]\n\
             keep_temp_dirs: False\n\
             log_file: Nothing\n\
             max_cached_shared_images: Just 2\n\
             repository: Nothing\n\
             repository_cache: Just (InB9UserDir \"repo-cache\")\n\
             unique_build_dirs: True\n\
             verbosity: Just LogInfo\n\
             \n\
             [libvirt]\n\
             connection: qemu:///system\n\
             network:\n\
             \n\
             [vm]\n\
             accel: auto\n\
             backend: qemu\n\
             cpus: 2\n\
             kernel:\n\
             memory_mb: 1024\n\
             modules_dir:\n\
             qemu_binary:\n"
        );
    }

    #[test]
    fn minimal_global_gives_the_missing_key_values() {
        let c = load_ok(MINIMAL).config;
        assert_eq!(c.max_cached_shared_images, None);
        assert_eq!(c.default_timeout_seconds, None);
        assert_eq!(c.timeout_factor, None);
        assert_eq!(c.ext4_attributes, ["^64bit"]);
        assert_eq!(c.vm, VmConfig::default());
        assert_eq!(c.libvirt, LibvirtConfig::default());
        let c = load_ok(&format!(
            "{MINIMAL}ext4_attributes: []\ntimeout_factor: 3\n"
        ))
        .config;
        assert!(c.ext4_attributes.is_empty());
        assert_eq!(c.timeout_factor, Some(3));
    }

    #[test]
    fn trusted_image_dirs_are_read_and_written_back() {
        assert!(load_ok(MINIMAL).config.trusted_image_dirs.is_empty());
        let text = format!("{MINIMAL}trusted_image_dirs: [\"/srv/images\", \"rel\"]\n");
        let c = load_ok(&text).config;
        assert_eq!(
            c.trusted_image_dirs,
            [PathBuf::from("/srv/images"), "rel".into()]
        );
        assert_eq!(load_ok(&c.to_ini()).config, c);
    }

    const README: &str = "[global]
build_dir_root: Just \"/home/sven/tmp\"
environment_vars: []
exec_env: LibVirtLXC
keep_temp_dirs: False
log_file: Nothing
profile_file: Nothing
unique_build_dirs: True
verbosity: Just LogDebug
repository_cache: Just (InB9UserDir \"repo-cache\")
repository: Nothing
max_cached_shared_images: Just 2

[libvirt-lxc]
connection: lxc:///
emulator_path: /usr/lib/libvirt/libvirt_lxc
network: Nothing
use_sudo: True
guest_capabilities: [CAP_MKNOD,CAP_SYS_ADMIN]
guest_ram_size: RamSize 1 GB

[systemdNspawn]
console: read-only
";

    #[test]
    fn readme_example_loads_with_warnings() {
        let l = load_ok(README);
        let c = &l.config;
        assert_eq!(c.build_dir_root, Some(PathBuf::from("/home/sven/tmp")));
        assert_eq!(c.verbosity, Some(LogLevel::Debug));
        assert_eq!(c.unused_sections, ["libvirt-lxc", "systemdNspawn"]);
        let msgs: Vec<&str> = l.warnings.iter().map(|d| d.message.as_str()).collect();
        for key in ["environment_vars", "exec_env", "profile_file"] {
            assert!(
                msgs.contains(&format!("unknown key `{key}` in [global], ignored").as_str()),
                "{msgs:?}"
            );
        }
        assert!(l.warnings.iter().all(|d| !d.is_error()));
        let lxc = l
            .warnings
            .iter()
            .find(|d| d.message.contains("[libvirt-lxc]"))
            .unwrap();
        assert_eq!(line_of(lxc), 14);
        // emulator_path is not a `Maybe FilePath` literal: noted, not an error.
        assert_eq!(lxc.notes.len(), 2, "{:?}", lxc.notes);
        assert!(lxc.notes[1].starts_with("line 16: "), "{:?}", lxc.notes);
        let nspawn = l
            .warnings
            .iter()
            .find(|d| d.message.contains("[systemdNspawn]"))
            .unwrap();
        assert_eq!(nspawn.notes.len(), 1, "console: read-only is valid");
    }

    #[test]
    fn unused_sections_take_any_keys() {
        let l = load_ok(&format!(
            "{MINIMAL}[docker]\nnetwork: whatever\nbanana: 1\n[podman]\nguest_capabilities: [CAP_NOPE]\n"
        ));
        assert_eq!(l.config.unused_sections, ["docker", "podman"]);
        assert_eq!(l.warnings.len(), 2);
        assert!(l.warnings[1].notes.iter().any(|n| n.contains("CAP_NOPE")));
    }

    #[test]
    fn bad_bool_names_file_line_key_and_form() {
        let text = "# my config\n[global]\nbuild_dir_root: Nothing\nkeep_temp_dirs: maybe\nlog_file: Nothing\nrepository: Nothing\nrepository_cache: Nothing\nunique_build_dirs: True\nverbosity: Nothing\n";
        let errs = load_err(text);
        assert_eq!(errs.len(), 1);
        let d = &errs[0];
        assert_eq!(
            d.message,
            "key `keep_temp_dirs` in [global]: expected a boolean (True/False, yes/no, on/off, 1/0), found \"maybe\""
        );
        assert_eq!(d.position().as_deref(), Some("b9.conf:4:17"));
        let shown = d.to_string();
        assert!(shown.contains("--> b9.conf:4:17"), "{shown}");
        assert!(shown.contains("4 | keep_temp_dirs: maybe"), "{shown}");
        assert!(shown.contains("|                 ^^^^^"), "{shown}");
    }

    #[test]
    fn every_error_is_reported() {
        let text = "[global]\nbuild_dir_root: \"/x\"\nkeep_temp_dirs: False\nlog_file: Nothing\nrepository: tilia\nrepository_cache: Just (InB9UsrDir \"c\")\nverbosity: Just LogInfo\n[vm]\nmemory_mb: lots\naccel: kmv\n";
        let errs = load_err(text);
        let got: Vec<(usize, &str)> = errs
            .iter()
            .map(|d| (line_of(d), d.message.as_str()))
            .collect();
        assert_eq!(got.len(), 6, "{got:#?}");
        assert_eq!(got[0].0, 2);
        assert!(got[0]
            .1
            .starts_with("key `build_dir_root` in [global]: expected Nothing or Just \"<path>\""));
        assert_eq!(got[1], (5, "key `repository` in [global]: expected Nothing or Just \"<repository id>\", found \"tilia\""));
        assert_eq!(got[2].0, 6);
        assert_eq!(errs[2].hints, ["did you mean `InB9UserDir`?"]);
        assert_eq!(
            got[3],
            (1, "required key `unique_build_dirs` missing in [global]")
        );
        assert_eq!(
            errs[3].hints,
            ["add `unique_build_dirs: True` (the default)"]
        );
        assert_eq!(got[4].0, 10);
        assert_eq!(
            got[4].1,
            "key `accel` in [vm]: expected one of auto, kvm, tcg, found \"kmv\""
        );
        assert_eq!(
            got[5],
            (
                9,
                "key `memory_mb` in [vm]: expected a positive integer, found \"lots\""
            )
        );
    }

    #[test]
    fn value_errors_point_into_the_value() {
        let text = format!("{MINIMAL}ext4_attributes: [\"64bit\",\n    Oops]\n");
        let l = load_ok(&text);
        // ext4_attributes is lenient: a warning at the bad element, line 10.
        assert_eq!(l.config.ext4_attributes, ["^64bit"]);
        let w = &l.warnings[0];
        assert_eq!(w.position().as_deref(), Some("b9.conf:10:5"));
        assert!(
            w.message.contains("expected a string, found `Oops`"),
            "{}",
            w.message
        );
    }

    #[test]
    fn missing_global_section_is_an_error_naming_the_file() {
        let errs = load_err("[vm]\ncpus: 4\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.starts_with("b9.conf: no [global] section"),
            "{}",
            errs[0].message
        );
        // [DEFAULT] keys alone do not make a [global] section.
        let errs = load_err(&MINIMAL.replace("[global]", "[DEFAULT]"));
        assert!(errs[0].message.contains("no [global] section"));
    }

    #[test]
    fn missing_required_keys_point_at_the_header() {
        let errs = load_err("\n[global]\nkeep_temp_dirs: yes\n");
        let keys: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert!(errs.iter().all(|d| line_of(d) == 2));
        assert!(keys.contains(&"required key `verbosity` missing in [global]"));
    }

    #[test]
    fn ini_syntax_errors_are_reported_with_lines() {
        let errs = load_err("[global\nkeep_temp_dirs yes\n");
        assert_eq!(errs.iter().map(line_of).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn default_section_case_and_continuations() {
        let text = "[DEFAULT]\nkeep_temp_dirs: On\n[global]\nBUILD_DIR_ROOT: Just\n  \"/a/b\"\nLog_File = Nothing\nrepository: Nothing\n; comment\nrepository_cache: Nothing\nunique_build_dirs: DISABLED\nverbosity: Just LogTrace\n";
        let c = load_ok(text).config;
        assert!(c.keep_temp_dirs);
        assert_eq!(c.build_dir_root, Some(PathBuf::from("/a/b")));
        assert!(!c.unique_build_dirs);
        assert_eq!(c.repository_cache, None);
        assert_eq!(c.verbosity, Some(LogLevel::Trace));
    }

    #[test]
    fn lenient_optional_keys_warn() {
        let l = load_ok(&format!(
            "{MINIMAL}max_cached_shared_images: 2\ndefault_timeout_seconds: -3\n"
        ));
        assert_eq!(l.config.max_cached_shared_images, None);
        assert_eq!(l.config.default_timeout_seconds, None);
        assert_eq!(l.warnings.len(), 2);
        assert_eq!(line_of(&l.warnings[0]), 9);
        assert!(l.warnings[0].message.starts_with(
            "key `max_cached_shared_images` in [global]: expected Nothing or Just <integer>"
        ));
    }

    #[test]
    fn unknown_keys_and_sections_warn() {
        let l = load_ok(&format!(
            "{MINIMAL}verbosty: x\n[vm]\ncpu: 4\n[globl]\n[stuff]\n"
        ));
        let msgs: Vec<(&str, Vec<String>)> = l
            .warnings
            .iter()
            .map(|d| (d.message.as_str(), d.hints.clone()))
            .collect();
        assert_eq!(msgs[0].0, "unknown key `verbosty` in [global], ignored");
        assert_eq!(msgs[0].1, ["did you mean `verbosity`?"]);
        assert_eq!(msgs[1].0, "unknown key `cpu` in [vm], ignored");
        assert_eq!(msgs[1].1, ["did you mean `cpus`?"]);
        assert_eq!(msgs[2].0, "unknown section [globl], ignored");
        assert_eq!(msgs[2].1, ["did you mean [global]?"]);
        assert_eq!(msgs[3].0, "unknown section [stuff], ignored");
        assert_eq!(line_of(&l.warnings[3]), 13);
    }

    #[test]
    fn vm_and_libvirt_sections() {
        let text = format!(
            "{MINIMAL}[vm]\nbackend: Libvirt\naccel: tcg\nkernel: /boot/k\nmodules_dir: \"/lib/m x\"\nmemory_mb: 2048\ncpus: 8\nqemu_binary: /opt/qemu\n[libvirt]\nconnection: qemu:///session\nnetwork: default\n"
        );
        let c = load_ok(&text).config;
        assert_eq!(
            c.vm,
            VmConfig {
                backend: Backend::Libvirt,
                accel: Accel::Tcg,
                kernel: Some("/boot/k".into()),
                modules_dir: Some("/lib/m x".into()),
                memory_mb: 2048,
                cpus: 8,
                qemu_binary: Some("/opt/qemu".into()),
            }
        );
        assert_eq!(c.libvirt.connection, "qemu:///session");
        assert_eq!(c.libvirt.network.as_deref(), Some("default"));
        for (net, want) in [("Nothing", None), ("Just \"br0\"", Some("br0")), ("", None)] {
            let c = load_ok(&format!("{MINIMAL}[libvirt]\nnetwork: {net}\n")).config;
            assert_eq!(c.libvirt.network.as_deref(), want, "{net}");
        }
        let errs = load_err(&format!(
            "{MINIMAL}[vm]\ncpus: 0\nbackend: lxc\n[libvirt]\nconnection:\n"
        ));
        let got: Vec<(usize, &str)> = errs
            .iter()
            .map(|d| (line_of(d), d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (11, "key `backend` in [vm]: expected one of qemu, libvirt, found \"lxc\""),
                (10, "key `cpus` in [vm]: expected a positive integer, found \"0\""),
                (13, "key `connection` in [libvirt]: expected a libvirt connection URI, e.g. qemu:///system, found an empty value"),
            ]
        );
    }

    #[test]
    fn kernel_defaults_follow_the_release() {
        let vm = VmConfig::default();
        assert_eq!(
            vm.resolve_paths_for_release("6.1.0-13-amd64"),
            VmPaths {
                kernel: "/boot/vmlinuz-6.1.0-13-amd64".into(),
                modules_dir: "/lib/modules/6.1.0-13-amd64".into(),
            }
        );
        let vm = VmConfig {
            kernel: Some("/k".into()),
            modules_dir: Some("/m".into()),
            ..VmConfig::default()
        };
        assert_eq!(vm.resolve_paths().unwrap().kernel, PathBuf::from("/k"));
        if Path::new(OSRELEASE_PATH).exists() {
            let p = VmConfig::default().resolve_paths().unwrap();
            assert!(p.kernel.to_string_lossy().starts_with("/boot/vmlinuz-"));
        }
    }

    const REPOS: &str = "[zeta-repo]\nremote_path: /srv/b9\nssh_priv_key_file: /home/u/.ssh/id\nssh_remote_host: z.example.org\nssh_remote_port: 2222\nssh_remote_user: b9\n[alpha-repo]\nremote_path: /r\nssh_priv_key_file: /does/not/exist\nssh_remote_host: a\nssh_remote_port: 22\nssh_remote_user: u\n";

    #[test]
    fn repo_sections() {
        let c = load_ok(&format!("{MINIMAL}{REPOS}")).config;
        let ids: Vec<&str> = c.repos.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["alpha", "zeta"]);
        let z = c.repo("zeta").unwrap();
        assert_eq!(z.ssh_remote_port, 2222);
        assert_eq!(z.remote_path, "/srv/b9");
        assert_eq!(z.ssh_priv_key_file, PathBuf::from("/home/u/.ssh/id"));
        let errs = load_err(&format!(
            "{MINIMAL}[x-repo]\nremote_path: /r\nssh_remote_port: twenty\n"
        ));
        let got: Vec<(usize, &str)> = errs
            .iter()
            .map(|d| (line_of(d), d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (9, "required key `ssh_priv_key_file` missing in [x-repo]"),
                (9, "required key `ssh_remote_host` missing in [x-repo]"),
                (9, "required key `ssh_remote_user` missing in [x-repo]"),
                (11, "key `ssh_remote_port` in [x-repo]: expected an integer, e.g. 3600, found \"twenty\""),
            ]
        );
        let errs = load_err(&format!("{MINIMAL}{}", REPOS.replace("2222", "70000")));
        assert_eq!(errs[0].message, "key `ssh_remote_port` in [zeta-repo]: expected a port number (0-65535), found \"70000\"");
    }

    #[test]
    fn overrides_apply_only_when_given() {
        let text = format!("{MINIMAL}[libvirt]\nnetwork: default\n")
            .replace("keep_temp_dirs: False", "keep_temp_dirs: True")
            .replace("unique_build_dirs: True", "unique_build_dirs: False")
            .replace("verbosity: Just LogInfo", "verbosity: Just LogDebug");
        let base = load_ok(&text).config;
        let mut c = base.clone();
        c.apply(&Overrides::default());
        assert_eq!(
            c, base,
            "no flag given: nothing changes (unlike the original)"
        );
        assert!(c.keep_temp_dirs && !c.unique_build_dirs);
        assert_eq!(c.verbosity, Some(LogLevel::Debug));

        let mut c = B9Config::default();
        c.apply(&Overrides {
            verbosity: Some(LogLevel::Trace),
            log_file: Some("/l".into()),
            build_dir_root: Some("/b".into()),
            keep_temp_dirs: true,
            predictable_build_dir: true,
            repository_cache: Some("/cache".into()),
            repository: Some("r".into()),
            network: Some("br0".into()),
            accel: Some(Accel::Kvm),
            backend: Some(Backend::Libvirt),
        });
        assert_eq!(c.verbosity, Some(LogLevel::Trace));
        assert_eq!(c.log_file, Some("/l".into()));
        assert_eq!(c.build_dir_root, Some("/b".into()));
        assert!(c.keep_temp_dirs);
        assert!(!c.unique_build_dirs);
        assert_eq!(c.repository_cache, Some(SystemPath::Path("/cache".into())));
        assert_eq!(c.repository.as_deref(), Some("r"));
        assert_eq!(c.libvirt.network.as_deref(), Some("br0"));
        assert_eq!(c.vm.accel, Accel::Kvm);
        assert_eq!(c.vm.backend, Backend::Libvirt);
        c.apply(&Overrides {
            network: Some("host".into()),
            ..Overrides::default()
        });
        assert_eq!(c.libvirt.network, None);
        assert_eq!(c.repository.as_deref(), Some("r"));
    }

    #[test]
    fn several_files_merge_in_order() {
        let a = Source::new(
            "a.conf",
            format!("{MINIMAL}max_cached_shared_images: Just 5\n"),
        );
        let b = Source::new(
            "b.conf",
            "[global]\nverbosity: Just LogError\n[vm]\ncpus: 4\n",
        );
        let l = load_sources(&[a.clone(), b]).unwrap();
        assert_eq!(l.config.verbosity, Some(LogLevel::Error));
        assert_eq!(l.config.max_cached_shared_images, Some(5));
        assert_eq!(l.config.vm.cpus, 4);
        let bad = Source::new("b.conf", "[global]\nkeep_temp_dirs: perhaps\n");
        let errs = load_sources(&[a, bad]).unwrap_err();
        assert_eq!(errs[0].position().as_deref(), Some("b.conf:2:17"));
    }

    #[test]
    fn load_from_disk_via_locate() {
        let dir = tempfile::tempdir().unwrap();
        let b9 = dir.path().join(".b9");
        let located = locate(&[], &b9).unwrap();
        assert!(located.created);
        let l = load(&located).unwrap();
        assert_eq!(l.config, B9Config::default());
        let other = dir.path().join("more.conf");
        std::fs::write(&other, "[global]\nkeep_temp_dirs: yes\n").unwrap();
        let located = locate(&[b9.join("b9.conf"), other], &b9).unwrap();
        let l = load(&located).unwrap();
        assert!(l.config.keep_temp_dirs);
        assert_eq!(l.files.len(), 2);
    }

    #[test]
    fn render_updated_keeps_unknown_sections_and_keys() {
        let l = load_ok(README);
        let mut c = l.config.clone();
        c.repos.push(RemoteRepo {
            id: "new".into(),
            remote_path: "/r".into(),
            ssh_priv_key_file: "/k".into(),
            ssh_remote_host: "h".into(),
            ssh_remote_port: 22,
            ssh_remote_user: "u".into(),
        });
        let text = l.render_updated(&c);
        assert!(
            text.contains("[libvirt-lxc]\nconnection: lxc:///\n"),
            "{text}"
        );
        assert!(text.contains("exec_env: LibVirtLXC\n"), "{text}");
        assert!(text.contains("[new-repo]\n"), "{text}");
        let again = load_ok(&text);
        assert_eq!(again.config.repos, c.repos);
        assert_eq!(
            again.config.unused_sections,
            ["libvirt-lxc", "systemdNspawn"]
        );
    }

    #[test]
    fn round_trip_of_a_full_config() {
        let c = B9Config {
            build_dir_root: Some("/tmp/b 9".into()),
            keep_temp_dirs: true,
            log_file: Some("/var/log/\"b9\".log".into()),
            max_cached_shared_images: Some(-1),
            repository: Some("zeta".into()),
            repository_cache: Some(SystemPath::InTempDir("c".into())),
            unique_build_dirs: false,
            verbosity: None,
            default_timeout_seconds: None,
            timeout_factor: Some(u64::MAX),
            ext4_attributes: vec![],
            trusted_image_dirs: vec![],
            vm: VmConfig {
                backend: Backend::Libvirt,
                accel: Accel::Kvm,
                kernel: Some(" /k ".into()),
                modules_dir: Some("\"quoted\"".into()),
                memory_mb: 4096,
                cpus: 1,
                qemu_binary: None,
            },
            libvirt: LibvirtConfig {
                connection: "qemu+ssh://h/system".into(),
                network: Some("default".into()),
            },
            repos: vec![RemoteRepo {
                id: "zeta".into(),
                remote_path: "/srv/b9".into(),
                ssh_priv_key_file: "/k".into(),
                ssh_remote_host: "h".into(),
                ssh_remote_port: 2222,
                ssh_remote_user: "u".into(),
            }],
            unused_sections: vec![],
        };
        let back = load_ok(&c.to_ini());
        assert_eq!(back.config, c);
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    }

    fn text_value() -> impl Strategy<Value = String> {
        // Raw (unquoted) INI strings are trimmed and may not span lines.
        "[a-zA-Z0-9_./:@+-]([a-zA-Z0-9_ ./:@+\"\\\\-]{0,12}[a-zA-Z0-9_./:@+-])?"
    }

    fn any_text() -> impl Strategy<Value = String> {
        "[ -~\\n\\tä]{0,16}"
    }

    fn system_path() -> impl Strategy<Value = SystemPath> {
        (0..4u8, any_text()).prop_map(|(k, p)| match k {
            0 => SystemPath::Path(p),
            1 => SystemPath::InHomeDir(p),
            2 => SystemPath::InB9UserDir(p),
            _ => SystemPath::InTempDir(p),
        })
    }

    fn repo() -> impl Strategy<Value = RemoteRepo> {
        (
            "[a-z][a-z0-9_]{0,8}",
            text_value(),
            text_value(),
            text_value(),
            any::<u16>(),
            text_value(),
        )
            .prop_map(|(id, remote_path, key, host, port, user)| RemoteRepo {
                id,
                remote_path,
                ssh_priv_key_file: key.into(),
                ssh_remote_host: host,
                ssh_remote_port: port,
                ssh_remote_user: user,
            })
    }

    prop_compose! {
        fn config()(
            globals in (
                proptest::option::of(any_text()),
                any::<bool>(),
                proptest::option::of(any_text()),
                proptest::option::of(any::<i64>()),
                proptest::option::of(any_text()),
                proptest::option::of(system_path()),
                any::<bool>(),
                proptest::option::of(0..5usize),
            ),
            timeouts in (proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>())),
            ext4 in proptest::collection::vec(any_text(), 0..3),
            vm in (0..2u8, 0..3u8, proptest::option::of(any_text()), proptest::option::of(any_text()),
                   1..u32::MAX, 1..u32::MAX, proptest::option::of(any_text())),
            libvirt in (any_text(), proptest::option::of(any_text())),
            repos in proptest::collection::btree_map("[a-z][a-z0-9]{0,6}", repo(), 0..3),
        ) -> B9Config {
            let (build_dir_root, keep_temp_dirs, log_file, max_cached_shared_images, repository,
                 repository_cache, unique_build_dirs, verbosity) = globals;
            let non_empty = |s: String| if s.is_empty() { "x".to_string() } else { s };
            B9Config {
                build_dir_root: build_dir_root.map(PathBuf::from),
                keep_temp_dirs,
                log_file: log_file.map(PathBuf::from),
                max_cached_shared_images,
                repository,
                repository_cache,
                unique_build_dirs,
                verbosity: verbosity.map(|i| LogLevel::ALL[i].0),
                default_timeout_seconds: timeouts.0,
                timeout_factor: timeouts.1,
                ext4_attributes: ext4,
                trusted_image_dirs: vec![],
                vm: VmConfig {
                    backend: if vm.0 == 0 { Backend::Qemu } else { Backend::Libvirt },
                    accel: [Accel::Auto, Accel::Kvm, Accel::Tcg][usize::from(vm.1)],
                    kernel: vm.2.map(non_empty).map(PathBuf::from),
                    modules_dir: vm.3.map(non_empty).map(PathBuf::from),
                    memory_mb: vm.4,
                    cpus: vm.5,
                    qemu_binary: vm.6.map(non_empty).map(PathBuf::from),
                },
                libvirt: LibvirtConfig {
                    connection: non_empty(libvirt.0),
                    network: libvirt.1.map(non_empty),
                },
                repos: repos.into_iter().map(|(id, r)| RemoteRepo { id, ..r }).collect(),
                unused_sections: vec![],
            }
        }
    }

    proptest! {
        #[test]
        fn render_then_parse_is_identity(c in config()) {
            let text = c.to_ini();
            let back = parse_str("b9.conf", &text)
                .map_err(|e| TestCaseError::fail(format!("{text}\n{e:?}")))?;
            prop_assert_eq!(&back.config, &c, "{}", text);
            prop_assert!(back.warnings.is_empty());
        }
    }
}
