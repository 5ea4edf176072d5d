//! `b9.conf`: INI sections with Haskell-literal values (docs/COMPATIBILITY.md#config).
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
mod model;
mod probe;
mod read;
mod write;

pub use literal::{LogLevel, SystemPath};
pub use locate::{default_b9_dir, locate, versioned_candidates};
pub use model::{Accel, B9Config, Backend, Overrides, RemoteRepo, VmConfig};
pub use read::{load, parse_str, Loaded};
pub use write::render_default;

/// The version of the original b9 this b9 is compatible with; it names the
/// version-suffixed config files (`b9.conf.4.0.0`, ...).
pub const COMPAT_VERSION: &str = "4.0.0";

/// The section of the general options.
pub const GLOBAL: &str = "global";
/// The section of the VM options (new in this b9).
pub const VM: &str = "vm";
/// The section of the libvirt options (new in this b9).
pub const LIBVIRT: &str = "libvirt";
/// The section of the cloud-config checks (new in this b9).
pub const CLOUD_INIT: &str = "cloud-init";
/// The suffix of remote repository sections (`[<id>-repo]`).
pub const REPO_SUFFIX: &str = "-repo";
/// Sections of container backends of the original that this b9 does not
/// have: read, reported as unused, never an error.
pub const UNUSED_BACKEND_SECTIONS: [&str; 4] = ["libvirt-lxc", "systemdNspawn", "docker", "podman"];

#[cfg(test)]
mod tests;
