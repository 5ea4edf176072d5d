//! The guest kernel and modules: the configured paths, or those of the
//! running kernel (its release read from `/proc`).

use std::path::PathBuf;

use crate::diag::Diagnostic;

use super::VmConfig;

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
