//! Reading `b9.conf` files into a [`B9Config`], with every malformed value
//! reported as a located diagnostic.

use std::path::PathBuf;

use crate::diag::source::{Source, SourceRef};
use crate::diag::{did_you_mean, Diagnostic};

use super::ini::{Entry, Ini};
use super::literal::{
    read_bool, read_capabilities, read_choice, read_int, read_maybe_int, read_maybe_log_level,
    read_maybe_string, read_maybe_system_path, read_non_negative, read_plain, read_ram_size,
    read_string_list, LitError,
};
use super::locate::Located;
use super::model::default_ext4_attributes;
use super::{
    Accel, B9Config, Backend, RemoteRepo, CLOUD_INIT, GLOBAL, LIBVIRT, REPO_SUFFIX,
    UNUSED_BACKEND_SECTIONS, VM,
};

/// A loaded configuration with its warnings and the merged document.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The typed configuration.
    pub config: B9Config,
    /// Unknown sections and keys, unused backend sections, lenient fallbacks.
    pub warnings: Vec<Diagnostic>,
    /// The merged INI document of all files read.
    pub document: Ini,
}

impl Loaded {
    /// The text to write back after changing the configuration (`add-repo`):
    /// `config` rendered and merged over the document read, so sections and
    /// keys this b9 does not know survive (docs/COMPATIBILITY.md#config-write).
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

const VM_KEYS: [&str; 9] = [
    "accel",
    "backend",
    "cpus",
    "kernel",
    "memory_mb",
    "modules_dir",
    "qemu_binary",
    "step_cache",
    "step_cache_max_gb",
];
const LIBVIRT_KEYS: [&str; 5] = ["connection", "network", "hosts", "pool", "vms_per_host"];
const CLOUD_INIT_KEYS: [&str; 1] = ["schema"];
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

/// `connection` of `[libvirt]`.
fn connection_uri(text: &str) -> Result<String, LitError> {
    non_empty_plain(text, "a libvirt connection URI, e.g. qemu:///system")
}

/// `pool` of `[libvirt]`.
fn pool_name(text: &str) -> Result<String, LitError> {
    non_empty_plain(
        text,
        "the name of a storage pool on each libvirt host, e.g. b9",
    )
}

/// A plain value that is not empty, described as `expected`.
fn non_empty_plain(text: &str, expected: &str) -> Result<String, LitError> {
    let s = read_plain(text)?;
    if s.is_empty() {
        return Err(LitError {
            expected: expected.into(),
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
        if let Some(v) = r.get(VM, "step_cache", read_bool) {
            vm.step_cache = v;
        }
        if let Some(v) = r.get(VM, "step_cache_max_gb", positive_u32) {
            vm.step_cache_max_gb = v;
        }
        r.unknown_keys(VM, &VM_KEYS);
    }

    if doc.has_section(LIBVIRT) {
        if let Some(v) = r.get(LIBVIRT, "connection", connection_uri) {
            c.libvirt.connection = v;
        }
        if let Some(v) = r.get(LIBVIRT, "network", network) {
            c.libvirt.network = v;
        }
        if let Some(v) = r.get(LIBVIRT, "hosts", read_plain) {
            c.libvirt.hosts = v.split_whitespace().map(String::from).collect();
        }
        if let Some(v) = r.get(LIBVIRT, "pool", pool_name) {
            c.libvirt.pool = v;
        }
        if let Some(v) = r.get(LIBVIRT, "vms_per_host", positive_u32) {
            c.libvirt.vms_per_host = v;
        }
        r.unknown_keys(LIBVIRT, &LIBVIRT_KEYS);
    }

    if doc.has_section(CLOUD_INIT) {
        if let Some(v) = r.get(CLOUD_INIT, "schema", optional_path) {
            c.cloud_init.schema = v;
        }
        r.unknown_keys(CLOUD_INIT, &CLOUD_INIT_KEYS);
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
        } else if ![GLOBAL, VM, LIBVIRT, CLOUD_INIT].contains(&name) {
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
    let mut known = vec![GLOBAL, VM, LIBVIRT, CLOUD_INIT];
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
