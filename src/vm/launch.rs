//! Everything around a run that does not depend on the job: the appliance
//! (built once per kernel and cached), the backend chosen in b9.conf, the
//! accelerator (`auto` probed once per host and remembered), and short
//! socket paths.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::config::{self, B9Config};
use crate::timeouts::Timeouts;
use crate::vm::appliance::{self, Appliance, ApplianceSource};
use crate::vm::backend::{Accel, Backend, VmDisk, VmShare, VmSpec};
use crate::vm::libvirt::Libvirt;
use crate::vm::qemu::Qemu;
use crate::vm::session::{self, Events, Limits, Report, RunError};
use b9_protocol::agent::{Job, Network};

/// How long an untested KVM gets to bring the agent up before b9 falls
/// back to TCG (a KVM that only runs special guests hangs instead).
const KVM_PROBE: Duration = Duration::from_secs(20);
/// How long the agent gets to say hello once the accelerator is known.
const HELLO: Duration = Duration::from_secs(120);
/// The appliance kernel's command line. `cryptomgr.notests` skips the
/// crypto algorithms' self-tests and `no_timer_check` the IO-APIC timer
/// check, both slow under TCG (libguestfs boots with them too).
const CMDLINE: &str = "console=ttyS0 panic=-1 quiet cryptomgr.notests no_timer_check";
/// Unix socket paths must fit in `sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

/// What a caller attaches to one run.
#[derive(Debug)]
pub struct Machine {
    /// A name for the VM (unique per run; made unique per host here).
    pub name: String,
    /// Disks, in order.
    pub disks: Vec<VmDisk>,
    /// Shares, in order.
    pub shares: Vec<VmShare>,
    /// The console log file (kept in the build directory).
    pub console_log: PathBuf,
    /// Attach a network interface.
    pub network: bool,
}

/// Starts appliance runs with the configured backend.
pub struct Launcher {
    backend: Box<dyn Backend + Send>,
    appliance: Appliance,
    memory_mb: u32,
    cpus: u32,
    timeout: Option<Duration>,
    accel: Mutex<AccelChoice>,
    cache_dir: PathBuf,
    network: Option<Network>,
}

/// The accelerator, as far as it is known.
#[derive(Clone, Copy, Debug)]
enum AccelChoice {
    Fixed(Accel),
    /// `auto` and not yet probed on this host.
    Probe,
}

/// b9's own cache: the appliance and the accelerator probe result.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("B9_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("b9"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/b9"))
}

impl Launcher {
    /// Prepares the appliance and the backend of `config`; runs are
    /// limited by `timeouts`.
    pub fn new(config: &B9Config, timeouts: Timeouts) -> Result<Launcher, String> {
        let cache_dir = cache_dir().ok_or("cannot find a cache directory: $HOME is not set")?;
        let paths = config.vm.resolve_paths().map_err(|d| d.to_string())?;
        let source = ApplianceSource {
            kernel: paths.kernel,
            modules_dir: paths.modules_dir,
            agent: appliance::agent_binary().map_err(|e| e.to_string())?,
        };
        let appliance =
            appliance::prepare(&source, &cache_dir.join("appliance")).map_err(|e| e.to_string())?;
        let backend: Box<dyn Backend + Send> = match config.vm.backend {
            config::Backend::Qemu => Box::new(Qemu {
                binary: config
                    .vm
                    .qemu_binary
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64")),
            }),
            config::Backend::Libvirt => Box::new(Libvirt {
                uri: config.libvirt.connection.clone(),
                network: config.libvirt.network.clone(),
            }),
        };
        let accel = match config.vm.accel {
            config::Accel::Kvm => AccelChoice::Fixed(Accel::Kvm),
            config::Accel::Tcg => AccelChoice::Fixed(Accel::Tcg),
            config::Accel::Auto => remembered(&cache_dir).map_or_else(
                || {
                    if kvm_usable() {
                        AccelChoice::Probe
                    } else {
                        AccelChoice::Fixed(Accel::Tcg)
                    }
                },
                AccelChoice::Fixed,
            ),
        };
        let network = config
            .libvirt
            .network
            .as_ref()
            .map(|_| match config.vm.backend {
                // QEMU's user-mode networking: fixed addresses, NAT to the host's network.
                config::Backend::Qemu => Network {
                    dhcp: false,
                    address: "10.0.2.15/24".into(),
                    gateway: "10.0.2.2".into(),
                    dns: "10.0.2.3".into(),
                },
                config::Backend::Libvirt => Network {
                    dhcp: true,
                    address: String::new(),
                    gateway: String::new(),
                    dns: String::new(),
                },
            });
        Ok(Launcher {
            backend,
            appliance,
            memory_mb: config.vm.memory_mb,
            cpus: config.vm.cpus,
            timeout: timeouts.limit,
            accel: Mutex::new(accel),
            cache_dir,
            network,
        })
    }

    /// The guest's network settings when a network is configured
    /// (`[libvirt] network` or `--network`; QEMU uses user-mode networking).
    pub fn network(&self) -> Option<Network> {
        self.network.clone()
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Boots the appliance with `machine`, runs `job` and stops the VM.
    pub fn run(
        &self,
        machine: &Machine,
        job: &Job,
        events: &mut dyn Events,
    ) -> Result<Report, RunError> {
        let runtime = RuntimeDir::create().map_err(|e| RunError::Start(e.into()))?;
        let choice = *self.accel.lock().unwrap_or_else(|p| p.into_inner());
        let (accel, hello) = match choice {
            AccelChoice::Fixed(a) => (a, HELLO),
            AccelChoice::Probe => (Accel::Kvm, KVM_PROBE),
        };
        let (result, booted) = self.attempt(machine, job, events, &runtime.0, accel, hello);
        match choice {
            AccelChoice::Probe if booted => {
                self.remember(Accel::Kvm);
                result
            }
            AccelChoice::Probe if !matches!(result, Err(RunError::Interrupted)) => {
                self.fall_back(result, machine, job, events, &runtime.0)
            }
            _ => result,
        }
    }

    /// One boot with `accel`; also tells whether the agent said hello.
    fn attempt(
        &self,
        machine: &Machine,
        job: &Job,
        events: &mut dyn Events,
        runtime: &Path,
        accel: Accel,
        hello: Duration,
    ) -> (Result<Report, RunError>, bool) {
        let spec = self.spec(machine, runtime, accel);
        let limits = Limits {
            timeout: self.timeout,
            hello,
        };
        let mut booted = false;
        let result = session::run(
            self.backend.as_ref(),
            &spec,
            job,
            &limits,
            events,
            &mut booted,
        );
        (result, booted)
    }

    /// KVM did not bring the appliance up (it hung, or QEMU refused it):
    /// reruns under TCG, and remembers TCG for this host once TCG boots.
    fn fall_back(
        &self,
        failed: Result<Report, RunError>,
        machine: &Machine,
        job: &Job,
        events: &mut dyn Events,
        runtime: &Path,
    ) -> Result<Report, RunError> {
        if let Err(e) = &failed {
            tracing::warn!("KVM did not bring the appliance up ({e}); trying TCG");
        }
        let (result, booted) = self.attempt(machine, job, events, runtime, Accel::Tcg, HELLO);
        if booted {
            tracing::warn!(
                "using TCG on this host from now on (remembered in {})",
                self.cache_dir.display()
            );
            self.remember(Accel::Tcg);
        }
        result
    }

    fn remember(&self, accel: Accel) {
        *self.accel.lock().unwrap_or_else(|p| p.into_inner()) = AccelChoice::Fixed(accel);
        let word = match accel {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        };
        let _ = std::fs::create_dir_all(&self.cache_dir);
        if let Err(e) = std::fs::write(self.cache_dir.join("accel"), word) {
            tracing::warn!("cannot remember the accelerator: {e}");
        }
    }

    fn spec(&self, m: &Machine, runtime: &Path, accel: Accel) -> VmSpec {
        VmSpec {
            name: format!(
                "b9-{}-{}",
                sanitize(&m.name),
                runtime.file_name().map_or_else(String::new, |n| n
                    .to_string_lossy()
                    .trim_start_matches("b9.")
                    .to_string())
            ),
            kernel: self.appliance.kernel.clone(),
            initrd: self.appliance.initrd.clone(),
            cmdline: CMDLINE.into(),
            memory_mb: self.memory_mb,
            cpus: self.cpus,
            accel,
            disks: m.disks.clone(),
            shares: m.shares.clone(),
            agent_socket: runtime.join("agent.sock"),
            runtime_dir: runtime.to_path_buf(),
            console_log: m.console_log.clone(),
            network: m.network,
        }
    }
}

/// A [`Launcher`] made on first use (building the appliance only when an
/// artifact needs it).
pub struct LazyLauncher {
    config: B9Config,
    timeouts: Timeouts,
    cell: OnceLock<Result<Launcher, String>>,
}

impl LazyLauncher {
    /// Remembers the configuration and the time limits.
    pub fn new(config: B9Config, timeouts: Timeouts) -> LazyLauncher {
        LazyLauncher {
            config,
            timeouts,
            cell: OnceLock::new(),
        }
    }

    /// The launcher, prepared the first time.
    pub fn get(&self) -> Result<&Launcher, String> {
        self.cell
            .get_or_init(|| Launcher::new(&self.config, self.timeouts))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl std::fmt::Debug for LazyLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LazyLauncher")
    }
}

/// The accelerator a previous probe chose on this host.
fn remembered(cache_dir: &Path) -> Option<Accel> {
    match std::fs::read_to_string(cache_dir.join("accel"))
        .ok()?
        .trim()
    {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

/// `/dev/kvm` opens read-write (necessary, not sufficient: see the probe).
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Letters, digits and `-` of a name, for domain names.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect()
}

/// A private directory with a short path for the run's sockets; removed
/// when dropped.
struct RuntimeDir(PathBuf);

impl RuntimeDir {
    fn create() -> Result<RuntimeDir, String> {
        let tmp = std::env::temp_dir();
        let base = if tmp.as_os_str().len() + 32 > MAX_SOCKET_PATH {
            PathBuf::from("/tmp")
        } else {
            tmp
        };
        // Those of killed b9 processes.
        crate::stale::sweep(&base, |name| crate::stale::pid_after(name, "b9.", "b9."));
        for attempt in 0..100u32 {
            let dir = base.join(format!("b9.{}.{attempt}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(RuntimeDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
            }
        }
        Err(format!(
            "cannot create a run directory in {}",
            base.display()
        ))
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl From<String> for crate::vm::backend::VmError {
    fn from(s: String) -> Self {
        crate::vm::backend::VmError::Start(s)
    }
}
