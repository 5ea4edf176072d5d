//! The VM settings of one b9 run, computed once by the CLI from the
//! configuration and the flags, and passed down to the launcher.

use std::path::PathBuf;

use crate::diag::Diagnostic;
use crate::timeouts::Timeouts;
use crate::vm::backend::Accelerator;

/// Which hypervisor runs the appliance, with its own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HypervisorSettings {
    /// The embedded QEMU backend.
    Qemu {
        /// The QEMU binary (`qemu-system-x86_64` from `PATH` by default).
        binary: PathBuf,
    },
    /// A libvirt domain through the `b9-libvirt` helper.
    Libvirt {
        /// The libvirt connection URI.
        connection: String,
        /// A farm's connection URIs; when any, `connection` is unused.
        hosts: Vec<String>,
        /// The storage pool on each remote host.
        pool: String,
        /// VMs at once per host.
        vms_per_host: u32,
    },
}

/// The guest kernel and its modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPaths {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The modules directory matching the kernel.
    pub modules_dir: PathBuf,
}

/// Everything the launcher needs to know about VMs.
#[derive(Clone, Debug)]
pub struct VmSettings {
    /// The hypervisor.
    pub hypervisor: HypervisorSettings,
    /// The accelerator; `None` = `auto` (probed once per host, remembered).
    pub accel: Option<Accelerator>,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// The guest kernel, or why it was not found (reported only when a VM
    /// is needed).
    pub kernel: Result<KernelPaths, Diagnostic>,
    /// The network to attach: a libvirt network name (QEMU uses user-mode
    /// networking whatever the name); `None` = no network interface.
    pub network: Option<String>,
    /// b9's own cache (appliance, accelerator probe); `None` when no cache
    /// directory can be found.
    pub cache_dir: Option<PathBuf>,
    /// The time limits of the run.
    pub timeouts: Timeouts,
}

/// b9's own cache: `$B9_CACHE_DIR`, else `$XDG_CACHE_HOME/b9`, else
/// `~/.cache/b9`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("B9_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("b9"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/b9"))
}
