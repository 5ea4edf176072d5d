//! Writing a configuration back as `b9.conf` text.

use std::path::PathBuf;

use crate::lang::print::show_string;

use super::ini::Ini;
use super::literal::{show_bool, show_maybe_string, show_string_list};
use super::{B9Config, VmConfig, CLOUD_INIT, GLOBAL, LIBVIRT, REPO_SUFFIX, VM};

impl B9Config {
    /// The configuration as an INI document (sections `[global]`, `[vm]`,
    /// `[libvirt]`, `[cloud-init]` when set, and the repositories; not the
    /// unused backend sections).
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
        // Only when not the default: the rendered configuration feeds the build id.
        let default = VmConfig::default();
        if self.vm.step_cache != default.step_cache {
            ini.set(VM, "step_cache", show_bool(self.vm.step_cache));
        }
        if self.vm.step_cache_max_gb != default.step_cache_max_gb {
            ini.set(
                VM,
                "step_cache_max_gb",
                self.vm.step_cache_max_gb.to_string(),
            );
        }

        ini.set(LIBVIRT, "connection", show_plain(&self.libvirt.connection));
        ini.set(
            LIBVIRT,
            "network",
            self.libvirt
                .network
                .as_deref()
                .map_or_else(String::new, show_plain),
        );
        // Only when set: the rendered configuration feeds the build id.
        if !self.libvirt.hosts.is_empty() {
            ini.set(LIBVIRT, "hosts", show_plain(&self.libvirt.hosts.join(" ")));
        }
        if self.libvirt.pool != "b9" {
            ini.set(LIBVIRT, "pool", show_plain(&self.libvirt.pool));
        }
        if self.libvirt.vms_per_host != 1 {
            ini.set(
                LIBVIRT,
                "vms_per_host",
                self.libvirt.vms_per_host.to_string(),
            );
        }

        // Only when set: the rendered configuration feeds the build id.
        if let Some(schema) = &self.cloud_init.schema {
            ini.set(CLOUD_INIT, "schema", show_plain(&schema.to_string_lossy()));
        }

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

/// The default `b9.conf` text (docs/COMPATIBILITY.md#config-global plus `[vm]` and `[libvirt]`),
/// sections and keys in alphabetical order. Loading it gives
/// [`B9Config::default`].
pub fn render_default() -> String {
    B9Config::default().to_ini()
}
