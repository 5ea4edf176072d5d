//! The appliance: a kernel and
//! an initramfs that b9 writes itself, holding `b9-agent` as `/init`, the
//! kernel modules the agent loads (dependencies resolved from the modules'
//! own `.modinfo`), and the shared libraries the agent needs.
//!
//! The initramfs is an uncompressed newc cpio (every kernel accepts it and
//! the guest spends no time decompressing it):
//!
//! ```text
//! /init                       the agent (0755)
//! /b9/modules/<name>.ko       each module, decompressed
//! /b9/modules.order           one module per line, dependencies first:
//!                             `<name>.ko[: <dep>.ko ...]`, naming those it
//!                             must be loaded after (the agent loads the
//!                             others in parallel)
//! /lib64/ld-linux-x86-64.so.2 the agent's interpreter and libraries, at the
//! /lib/x86_64-linux-gnu/...   paths the dynamic linker asks for
//! /dev/console                char 5,1
//! /dev /proc /sys /sysroot /tmp /run
//! ```
//!
//! The agent goes in without its debug information (release builds carry
//! line tables: 85 of its 87 MB), which the guest would otherwise load and
//! unpack on every boot.
//!
//! It is cached in `cache_dir` as `appliance-<hash>.img`, the hash taken
//! over everything that goes into it, and written through a temporary file
//! and a rename, so concurrent b9 processes never see a partial file. The
//! kernel to boot is, where possible, the bzImage's uncompressed kernel,
//! cached there too (see [`vmlinux`]).

mod cpio;
mod elf;
mod kernel;
mod libs;
mod modules;
mod vmlinux;
mod xz;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The modules the agent loads (their dependencies are added). `9p` and
/// `9pnet_virtio` for shares; `vfat` with its default code pages and
/// `isofs` for cloud-init media; `loop` for file systems in files;
/// `crc32c_generic` provides the `crc32c` crypto algorithm that ext4 asks
/// for (through an alias, which a soft dependency cannot name) at mount.
pub const MODULES: [&str; 14] = [
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_net",
    "9p",
    "9pnet_virtio",
    "ext4",
    "crc32c_generic",
    "vfat",
    "nls_cp437",
    "nls_iso8859-1",
    "isofs",
    "loop",
    "pvpanic_mmio",
];

/// Changes whenever the initramfs layout changes, so old cached
/// appliances are not reused.
const FORMAT_VERSION: &str = "b9-appliance-2";

/// Inputs of the appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplianceSource {
    /// The kernel image (bzImage).
    pub kernel: PathBuf,
    /// The kernel's modules directory (`/lib/modules/<release>`).
    pub modules_dir: PathBuf,
    /// The `b9-agent` executable.
    pub agent: PathBuf,
}

/// A ready appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appliance {
    /// The kernel to boot: the configured bzImage's uncompressed kernel
    /// (in the cache directory) when it has a PVH entry point, else the
    /// configured kernel itself.
    pub kernel: PathBuf,
    /// The initramfs (in the cache directory).
    pub initrd: PathBuf,
    /// The kernel release (`6.1.0-56-amd64`).
    pub kernel_release: String,
}

/// Errors building the appliance.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    /// The kernel image does not exist.
    #[error("kernel {} not found; set [vm] kernel in b9.conf or run fixtures/guest-kernel", .path.display())]
    KernelNotFound {
        /// The kernel path looked at.
        path: PathBuf,
    },
    /// The modules directory does not exist.
    #[error("kernel modules directory {} not found; set [vm] modules_dir in b9.conf or run fixtures/guest-kernel", .path.display())]
    ModulesDirNotFound {
        /// The directory looked at.
        path: PathBuf,
    },
    /// Neither the kernel image nor the modules directory tells the release.
    #[error("cannot tell the kernel release: {} is not a bzImage with a version string and the modules directory {} has no name", .kernel.display(), .modules_dir.display())]
    NoRelease {
        /// The kernel image.
        kernel: PathBuf,
        /// The modules directory.
        modules_dir: PathBuf,
    },
    /// A needed module is neither built in nor present.
    #[error("kernel module {name} is neither built into the kernel (modules.builtin) nor found under {}/kernel", .dir.display())]
    ModuleNotFound {
        /// The module's name.
        name: String,
        /// The modules directory searched.
        dir: PathBuf,
    },
    /// A module was built for another kernel release.
    #[error("kernel module {} is built for kernel {built_for}, but the kernel is {release}; set [vm] modules_dir to the kernel's own modules", .path.display())]
    ModuleRelease {
        /// The module file.
        path: PathBuf,
        /// The release in its vermagic.
        built_for: String,
        /// The kernel's release.
        release: String,
    },
    /// A module file is not a readable kernel module.
    #[error("kernel module {}: {what}", .path.display())]
    BadModule {
        /// The module file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A compressed module could not be decompressed.
    #[error("cannot decompress kernel module {}: {what}", .path.display())]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// The decoder's complaint.
        what: String,
    },
    /// `$B9_AGENT` or [`ApplianceSource::agent`] names a missing file.
    #[error("agent {} not found; build it with `cargo build -p b9-agent` or set B9_AGENT", .path.display())]
    AgentNotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// No `b9-agent` next to the running executable.
    #[error("{0}; build the workspace (`cargo build`) or set B9_AGENT")]
    AgentNotLocated(#[source] crate::vm::sibling::SiblingError),
    /// The agent or one of its libraries is not a readable ELF file.
    #[error("{}: {what}", .path.display())]
    BadElf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A shared library the agent needs is not found.
    #[error("shared library {name} needed by {} not found in {dirs}; or link b9-agent statically", .needed_by.display())]
    LibraryNotFound {
        /// The library's name.
        name: String,
        /// The executable or library that needs it.
        needed_by: PathBuf,
        /// The directories searched.
        dirs: String,
    },
    /// Reading an input failed.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the cached initramfs failed.
    #[error("cannot write the appliance to {}", .path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Builds (or finds in `cache_dir`) the initramfs for `src`.
pub fn prepare(src: &ApplianceSource, cache_dir: &Path) -> Result<Appliance, ApplianceError> {
    if !src.kernel.is_file() {
        return Err(ApplianceError::KernelNotFound {
            path: src.kernel.clone(),
        });
    }
    if !src.modules_dir.is_dir() {
        return Err(ApplianceError::ModulesDirNotFound {
            path: src.modules_dir.clone(),
        });
    }
    let image_release = kernel::release(&src.kernel)?;
    let kernel_release = match (&image_release, src.modules_dir.file_name()) {
        (Some(r), _) => r.clone(),
        (None, Some(name)) => name.to_string_lossy().into_owned(),
        (None, None) => {
            return Err(ApplianceError::NoRelease {
                kernel: src.kernel.clone(),
                modules_dir: src.modules_dir.clone(),
            })
        }
    };
    let agent = std::fs::read(&src.agent).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ApplianceError::AgentNotFound {
                path: src.agent.clone(),
            }
        } else {
            ApplianceError::Read {
                path: src.agent.clone(),
                source,
            }
        }
    })?;
    let libraries = libs::needed(&src.agent, &agent)?;
    let agent = match elf::strip_debug(&agent) {
        Ok(Some(stripped)) => stripped,
        Ok(None) => agent,
        Err(e) => {
            return Err(ApplianceError::BadElf {
                path: src.agent.clone(),
                what: e.to_string(),
            })
        }
    };
    let modules =
        modules::Index::scan(&src.modules_dir)?.resolve(&MODULES, image_release.as_deref())?;
    let contents = Contents {
        release: &kernel_release,
        agent: &agent,
        libraries: &libraries,
        modules: &modules,
    };

    let initrd = cache_dir.join(format!("appliance-{}.img", contents.key()));
    if !initrd.is_file() {
        let started = std::time::Instant::now();
        write_atomically(cache_dir, &initrd, |out| contents.write(out))?;
        tracing::debug!(
            initrd = %initrd.display(),
            modules = modules.len(),
            libraries = libraries.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "built the appliance"
        );
    }
    Ok(Appliance {
        kernel: vmlinux::bootable(&src.kernel, cache_dir)?,
        initrd,
        kernel_release,
    })
}

/// The b9-agent binary: `$B9_AGENT` if set, else the companion program
/// `b9-agent` next to b9 (`vm/sibling.rs`).
pub fn agent_binary() -> Result<PathBuf, ApplianceError> {
    if let Some(path) = std::env::var_os("B9_AGENT") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ApplianceError::AgentNotFound { path })
        };
    }
    crate::vm::sibling::program("b9-agent").map_err(ApplianceError::AgentNotLocated)
}

/// Everything that goes into the initramfs.
struct Contents<'a> {
    release: &'a str,
    agent: &'a [u8],
    libraries: &'a [libs::Library],
    modules: &'a [modules::Module],
}

impl Contents<'_> {
    /// The cache key: a hash of every input, each length-prefixed.
    fn key(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(FORMAT_VERSION.as_bytes());
        field(self.release.as_bytes());
        field(self.agent);
        for l in self.libraries {
            field(l.path.as_bytes());
            field(&l.data);
        }
        for m in self.modules {
            field(m.name.as_bytes());
            field(&m.data);
        }
        let digest = h.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Writes the cpio archive.
    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut w = cpio::Writer::new(out);
        for dir in [
            "/dev",
            "/proc",
            "/sys",
            "/sysroot",
            "/run",
            "/b9",
            "/b9/modules",
        ] {
            w.dir(dir, 0o755)?;
        }
        w.dir("/tmp", 0o1777)?;
        w.char_dev("/dev/console", 0o600, 5, 1)?;
        w.file("/init", 0o755, self.agent)?;
        for l in self.libraries {
            w.file(&l.path, 0o755, &l.data)?;
        }
        let files: std::collections::HashMap<String, String> = self
            .modules
            .iter()
            .map(|m| (modules::normalize(&m.name), format!("{}.ko", m.name)))
            .collect();
        let mut order = String::new();
        for m in self.modules {
            let file = format!("{}.ko", m.name);
            w.file(&format!("/b9/modules/{file}"), 0o644, &m.data)?;
            order.push_str(&file);
            let after: Vec<&str> = m
                .after
                .iter()
                .filter_map(|d| files.get(d).map(String::as_str))
                .collect();
            if !after.is_empty() {
                order.push_str(": ");
                order.push_str(&after.join(" "));
            }
            order.push('\n');
        }
        w.file("/b9/modules.order", 0o644, order.as_bytes())?;
        w.finish()?;
        Ok(())
    }
}

/// Writes `target` (in `dir`) through a temporary file in `dir` that is
/// synced and renamed over it: readers see no file or the whole file.
fn write_atomically(
    dir: &Path,
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), ApplianceError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ApplianceError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let guard = RemoveOnDrop(&tmp);
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(werr(&tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    fill(&mut out).map_err(werr(&tmp))?;
    let file = out.into_inner().map_err(|e| werr(&tmp)(e.into_error()))?;
    file.sync_all().map_err(werr(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, target).map_err(werr(target))?;
    std::mem::forget(guard);
    Ok(())
}

/// Removes a temporary file unless forgotten.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
